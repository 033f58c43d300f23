"""Helpers the mechanisms share: receptive fields as im2col matrices, in bands; the dot-product datapath;
the cycles of lanes that walk whole outputs. Pure numpy, from a layer's real operands."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sparsesim.mapping import ConvGeometry

# Operand values (float64) of one band of the datapath's column matrix: 2 Mi values, 16 MiB. With one BLAS
# thread, or on an idle machine, 1 Mi-value bands already run as fast as one whole-layer product; with
# multi-threaded BLAS (numpy's default, so the CLI's) on a busy machine each call also waits for its threads
# to be scheduled, and fewer, larger calls keep that wait near numpy's own (the VGG16 convolutions with both
# cores loaded: 1.5x numpy's time at 1 Mi values, 1.05x at 2 Mi, 0.86x at 4 Mi, for 8 MiB more per doubling).
DATAPATH_BAND_VALUES = 2 * 1024 * 1024
# Operand values (float64) of one band of im2col_bands: the mechanisms that take them work through a band a
# chunk of windows at a time, so a band need not be large, and each converts it (4 MiB) again.
MECHANISM_BAND_VALUES = 512 * 1024


def band_windows(
    input_chw: np.ndarray, geometry: ConvGeometry, out_row_start: int, out_row_stop: int
) -> np.ndarray:
    """The receptive fields of output rows ``[start, stop)``: a ``(C, rows, Wout, R, S)`` float64 view of
    the band of input rows they read, zero-padded (only the band is padded and converted)."""
    p = geometry.padding
    first = out_row_start * geometry.stride - p  # in unpadded rows; may be negative
    last = (out_row_stop - 1) * geometry.stride + geometry.kernel_r - p
    band = np.zeros((geometry.channels, last - first, geometry.width + 2 * p), dtype=np.float64)
    top, bottom = max(first, 0), min(last, geometry.height)
    band[:, top - first : bottom - first, p : p + geometry.width] = input_chw[:, top:bottom]
    views = np.lib.stride_tricks.sliding_window_view(
        band, (geometry.kernel_r, geometry.kernel_s), axis=(1, 2)
    )
    return views[:, :: geometry.stride, :: geometry.stride][:, :, : geometry.out_width]


def im2col(
    input_chw: np.ndarray, geometry: ConvGeometry, out_row_start: int, out_row_stop: int
) -> np.ndarray:
    """The operands of output rows ``[start, stop)``: a ``(windows, C*R*S)`` float64 matrix."""
    views = band_windows(input_chw, geometry, out_row_start, out_row_stop)
    # (C, rows, Wout, R, S) -> (rows, Wout, C, R, S)
    return np.ascontiguousarray(views.transpose(1, 2, 0, 3, 4)).reshape(
        -1, geometry.channels * geometry.kernel_positions
    )


def im2col_bands(input_chw: np.ndarray, geometry: ConvGeometry) -> Iterator[np.ndarray]:
    """The layer's :func:`im2col` matrix in bands of whole output rows, each of about
    ``MECHANISM_BAND_VALUES`` values (at least one row)."""
    rows_per_band = max(
        1, MECHANISM_BAND_VALUES // (geometry.out_width * geometry.channels * geometry.kernel_positions)
    )
    for start in range(0, geometry.out_height, rows_per_band):
        yield im2col(input_chw, geometry, start, min(geometry.out_height, start + rows_per_band))


def window_columns(
    input_chw: np.ndarray, geometry: ConvGeometry, out_row_start: int, out_row_stop: int
) -> np.ndarray:
    """The operands of output rows ``[start, stop)`` as columns: a ``(C*R*S, windows)`` float64 matrix,
    :func:`im2col` transposed. Built with the output row as the inner dimension of the copy, and
    ``weights (K, C*R*S) @ columns`` gives the outputs in ``(K, Hout, Wout)`` order."""
    views = band_windows(input_chw, geometry, out_row_start, out_row_stop)
    # (C, rows, Wout, R, S) -> (C, R, S, rows, Wout)
    return np.ascontiguousarray(views.transpose(0, 3, 4, 1, 2)).reshape(
        geometry.channels * geometry.kernel_positions, -1
    )


def dot_products(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    bias: np.ndarray,
    geometry: ConvGeometry,
    activation: str,
    rows_per_band: int | None = None,
) -> np.ndarray:
    """The layer's output as the PEs compute it: ``(K, Hout, Wout)`` float64, computed in bands of
    ``rows_per_band`` output rows (by default as many as keep the band's operands near
    ``DATAPATH_BAND_VALUES`` values) and blocks of filters of about as many weights.

    The skipping and gating PEs (of zero activations, zero weights, both, N:M slots, pattern entries) perform
    exactly the products of the dense dot product minus some whose operand is zero: every product they leave
    out is an exact zero (0 x w = 0 in floating point), so one BLAS product over the machine's operands sums
    the products they perform, up to summation order, which the functional check's tolerance covers. (The
    literal form, a CSR matrix of the performed products, gave the same outputs at 3x the cost of the
    whole simulation.) The *operands* are the machine's: pruned, quantised or compacted as it runs them.
    """
    weights_kn = weights_kcrs.reshape(geometry.filters, -1)
    width = geometry.out_width
    out = np.empty((geometry.filters, geometry.out_height * width), dtype=np.float64)
    if rows_per_band is None:
        rows_per_band = max(1, DATAPATH_BAND_VALUES // (width * weights_kn.shape[1]))
    # Equal blocks of filters whose float64 weights hold at most about as many values as a band: the weights
    # of the large layers (VGG16's conv4 and conv5: 2.4 Mi values) are converted a block at a time.
    blocks = -(-weights_kn.size // DATAPATH_BAND_VALUES)
    filters_per_block = -(-geometry.filters // blocks)
    for start in range(0, geometry.out_height, rows_per_band):
        stop = min(geometry.out_height, start + rows_per_band)
        columns = window_columns(input_chw, geometry, start, stop)
        for first in range(0, geometry.filters, filters_per_block):
            block = slice(first, first + filters_per_block)
            # Written in place: a block of rows of ``out`` is a valid BLAS output.
            np.matmul(
                weights_kn[block].astype(np.float64), columns, out=out[block, start * width : stop * width]
            )
        del columns  # before the next band's are built
    out += bias.astype(np.float64)[:, None]
    if activation == "relu":
        np.maximum(out, 0.0, out=out)
    return out.reshape(geometry.filters, geometry.out_height, width)


def lane_cycles(per_output: np.ndarray, rows: int) -> int:
    """Cycles of a tile whose output ``(filter lane k, window p)`` takes ``per_output[k, p]`` cycles: lane
    ``(k, PE row i)`` works through windows ``i, i + rows, ...``; the slowest lane ends the tile."""
    n_filters, n_windows = per_output.shape
    if not per_output.size:
        return 0
    dealt = np.zeros((n_filters, -(-n_windows // rows) * rows), dtype=np.int64)
    dealt[:, :n_windows] = per_output
    return int(dealt.reshape(n_filters, -1, rows).sum(axis=1).max())


def two_unit_lane_cycles(msb_cycles: np.ndarray, lsb_cycles: np.ndarray, rows: int) -> int:
    """A tile's cycles when each lane (filter k, PE row i; windows i, i + rows, ...) has an MSB unit and an
    LSB unit: the slowest lane's finish time.

    ``msb_cycles``, ``lsb_cycles``: (K, P) per output. A two-stage flow shop: output j's LSB pass starts once
    its MSB pass and the previous LSB pass are over, so the lane ends at ``max_j (MSB cycles of outputs
    <= j + LSB cycles of outputs >= j)``; outputs added as padding cost nothing in either unit.
    """
    n_filters, n_windows = msb_cycles.shape
    if not msb_cycles.size:
        return 0
    padded = -(-n_windows // rows) * rows
    stages = np.zeros((2, n_filters, padded), dtype=np.int64)
    stages[0, :, :n_windows] = msb_cycles
    stages[1, :, :n_windows] = lsb_cycles
    # (K, outputs per lane, rows): a lane is one (k, row) column, walked along axis 1.
    msb_lane, lsb_lane = stages.reshape(2, n_filters, -1, rows)
    msb_done = np.cumsum(msb_lane, axis=1)
    lsb_after = np.cumsum(lsb_lane[:, ::-1], axis=1)[:, ::-1]
    return int((msb_done + lsb_after).max())


def nonzero_weight_vectors(weights_kcrs: np.ndarray, width: int) -> np.ndarray:
    """``(K,)``: per filter, the vectors of ``width`` consecutive input channels (per kernel position) that
    hold a nonzero weight: what a SIMD PE must still issue when it skips all-zero weight vectors."""
    filters, channels, kernel_r, kernel_s = weights_kcrs.shape
    padded = -(-channels // width) * width
    nonzero = np.zeros((filters, padded, kernel_r, kernel_s), dtype=bool)
    nonzero[:, :channels] = weights_kcrs != 0
    grouped = nonzero.reshape(filters, padded // width, width, kernel_r, kernel_s).any(axis=2)
    return grouped.sum(axis=(1, 2, 3)).astype(np.int64)


def nonzero_products(
    input_chw: np.ndarray, geometry: ConvGeometry, weights_kn: np.ndarray, skip_zero_activations: bool
) -> np.ndarray:
    """``(K, P)``: per output, its nonzero weights, or its pairs of nonzero weight and nonzero activation.

    ``weights_kn``: the filters' weights over the channels of ``input_chw``, in ``(c, r, s)`` order. The pairs
    are counted a band of output rows at a time, from each band's :func:`window_columns`.
    """
    n_windows = geometry.out_height * geometry.out_width
    if not skip_zero_activations:
        per_filter = np.count_nonzero(weights_kn, axis=1).astype(np.int64)
        return np.repeat(per_filter[:, None], n_windows, axis=1)
    nonzero_weights = (weights_kn != 0).astype(np.float32)
    width = geometry.out_width
    pairs = np.empty((weights_kn.shape[0], n_windows), dtype=np.int64)
    rows_per_band = max(1, DATAPATH_BAND_VALUES // (width * weights_kn.shape[1]))
    for start in range(0, geometry.out_height, rows_per_band):
        stop = min(geometry.out_height, start + rows_per_band)
        nonzero_operands = (window_columns(input_chw, geometry, start, stop) != 0).astype(np.float32)
        # Exact: float32 holds integers up to 2**24, far above C*R*S.
        pairs[:, start * width : stop * width] = np.rint(nonzero_weights @ nonzero_operands)
    return pairs


def dot_product_output(operands) -> np.ndarray:
    """:func:`dot_products` of a layer's :class:`~sparsesim.mechanisms.base.LayerOperands`."""
    geometry = operands.geometry
    weights = operands.weights_kcrs.reshape(
        geometry.filters, geometry.channels, geometry.kernel_r, geometry.kernel_s
    )
    return dot_products(operands.input_chw, weights, operands.bias, geometry, operands.activation)


def apply_activation(values: np.ndarray, activation: str) -> np.ndarray:
    """``values`` after the layer's activation function (``relu`` or ``none``), in place."""
    if activation == "relu":
        np.maximum(values, 0.0, out=values)
    return values
