"""How much work the activation lanes of a PE do per output window: pure numpy, no timing.

A PE with ``L`` activation lanes splits the input channels of a channel block into ``L`` contiguous slices
(lane ``l`` owns channels ``[floor(l*n/L), floor((l+1)*n/L))`` of the block's ``n`` channels, as Cnvlutin's
neuron lanes own slices of the input depth). For one output position (a *window*: the ``R x S`` receptive
field over the block's channels) each lane works through the operands of its slice, one per cycle, and the
lanes synchronise at the end of the window:

- ``none`` and ``zero_gating``: a lane spends one cycle per operand, zero or not, so a window takes
  ``ceil(n/L) * R * S`` cycles (padding positions included). Gating saves energy, never cycles.
- ``zero_skip_activations``: a lane spends one cycle per *nonzero* operand (zeros, including padding, are
  never sent), so a window takes ``max_l nnz_l`` cycles: the busiest lane sets the pace and the others idle
  (load imbalance). A window with no nonzero operand at all still takes 1 cycle, to hand its partial sums on.

Everything here is vectorised over windows; the cycle-stepped reference in the tests walks the same rules
one cycle at a time.
"""

from __future__ import annotations

import numpy as np

from sparsesim.sparse.geometry import output_size

PE_SPARSITY_MODES = ("none", "zero_gating", "zero_skip_activations")


def window_nonzero_counts(
    input_chw: np.ndarray, kernel_r: int, kernel_s: int, stride: int, padding: int
) -> np.ndarray:
    """Nonzero input activations of each channel inside each output window.

    Returns ``(C, Hout, Wout)`` counts in the smallest unsigned integer type that holds ``R * S`` (uint8 for
    kernels up to 15x15): entry ``[c, y, x]`` counts the nonzero values of channel ``c`` in the ``R x S``
    receptive field of output ``(y, x)`` (padding counts as zero). Computed as separable box sums, ``R``
    strided row additions then ``S`` column additions, in that narrow type: a few passes over a byte mask.
    """
    channels, height, width = input_chw.shape
    nonzero = np.pad(input_chw != 0, ((0, 0), (padding, padding), (padding, padding))).view(np.uint8)
    out_h = output_size(height, kernel_r, stride, padding)
    out_w = output_size(width, kernel_s, stride, padding)
    count_type = np.min_scalar_type(kernel_r * kernel_s)
    rows = np.zeros((channels, out_h, nonzero.shape[2]), dtype=count_type)
    for r in range(kernel_r):
        rows += nonzero[:, r : r + stride * (out_h - 1) + 1 : stride]
    counts = np.zeros((channels, out_h, out_w), dtype=count_type)
    for s in range(kernel_s):
        counts += rows[:, :, s : s + stride * (out_w - 1) + 1 : stride]
    return counts


def lane_boundaries(n_channels: int, lanes: int) -> np.ndarray:
    """Start of each lane's channel slice, plus the end: ``lanes + 1`` non-decreasing offsets."""
    return (np.arange(lanes + 1) * n_channels) // lanes


def lane_operand_counts(block_counts: np.ndarray, lanes: int) -> np.ndarray:
    """Sum per-channel counts ``(n, ...)`` of a channel block into per-lane counts ``(lanes, ...)``, int64."""
    bounds = lane_boundaries(block_counts.shape[0], lanes)
    # One sum per lane: no int64 copy of the whole block (a lane with no channel sums to 0).
    return np.stack(
        [
            block_counts[lo:hi].sum(axis=0, dtype=np.int64)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    )


def window_cycles(
    block_nonzero_counts: np.ndarray, lanes: int, kernel_positions: int, sparsity: str
) -> np.ndarray:
    """Cycles one PE spends on each window of a channel block.

    ``block_nonzero_counts``: ``(n, P)`` nonzero activations per channel of the block and window.
    ``kernel_positions``: ``R * S``. Returns int64 ``(P,)``.
    """
    n_channels, n_windows = block_nonzero_counts.shape
    if sparsity in ("none", "zero_gating"):
        dense = -(-n_channels // lanes) * kernel_positions
        return np.full(n_windows, dense, dtype=np.int64)
    if sparsity == "zero_skip_activations":
        busiest_lane = lane_operand_counts(block_nonzero_counts, lanes).max(axis=0)
        return np.maximum(busiest_lane, 1)
    raise ValueError(f"unknown PE sparsity mode {sparsity!r}; known: {', '.join(PE_SPARSITY_MODES)}")


def lockstep_cycles(per_window_cycles: np.ndarray, rows: int) -> int:
    """Cycles for PE rows working in lockstep on consecutive windows.

    Windows are dealt to the ``rows`` PE rows in raster order, ``rows`` at a time; each group of windows
    takes as long as its slowest window (the rows share one operand broadcast and advance together).
    """
    n_windows = per_window_cycles.shape[0]
    if n_windows == 0:
        return 0
    padded = -(-n_windows // rows) * rows
    grouped = np.zeros(padded, dtype=np.int64)
    grouped[:n_windows] = per_window_cycles
    return int(grouped.reshape(-1, rows).max(axis=1).sum())


def effectual_macs(input_chw: np.ndarray, weights_kcrs: np.ndarray, stride: int, padding: int) -> int:
    """MACs of the layer whose two operands are both nonzero (Sparseloop's effectual computes).

    Equal to ``sum over windows, c, r, s of [a != 0] * #{k : w[k, c, r, s] != 0}``; computed as one
    single-output correlation of the activation mask with the per-position count of nonzero weights.
    """
    _, kernel_r, kernel_s = weights_kcrs.shape[1:]
    _, height, width = input_chw.shape
    nonzero_weights = np.count_nonzero(weights_kcrs, axis=0).astype(np.int64)  # (C, R, S)
    mask = np.pad(input_chw != 0, ((0, 0), (padding, padding), (padding, padding))).view(np.uint8)
    out_h = output_size(height, kernel_r, stride, padding)
    out_w = output_size(width, kernel_s, stride, padding)
    total = 0
    for r in range(kernel_r):
        for s in range(kernel_s):
            shifted = mask[
                :, r : r + stride * (out_h - 1) + 1 : stride, s : s + stride * (out_w - 1) + 1 : stride
            ]
            total += int(np.dot(nonzero_weights[:, r, s], shifted.sum(axis=(1, 2), dtype=np.int64)))
    return total
