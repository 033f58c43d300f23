"""Most-significant-bits-first ReLU prediction (PredictiveNet, Lin et al., ISCAS 2017), pure numpy.

Modelled: a PE computes one output (filter ``k``, window ``p``) of a layer whose input activations are
signed ``bits``-bit fixed point (:func:`sparsesim.sparse.deltas.to_fixed_point`: ``a = x * 2**-frac_bits``)
and whose weights are kept as they are (float64 here). Each activation integer is split into its top
``msb_bits`` bits and the rest (:func:`split_msb_lsb`, ``L = bits - msb_bits`` low bits)::

    x = m + l,   m = floor(x / 2**L) * 2**L   (the MSB part, low bits cleared; two's complement),
                 l = x - m                    (the LSB part: 0 <= l <= 2**L - 1, whatever the sign of x).

The dot product splits the same way, ``y = bias + sum_i w_i (m_i + l_i) 2**-f = y_msb + y_lsb``. The PE first
performs the *MSB pass* (one reduced-precision MAC ``w_i * m_i`` per issued position, summed onto the bias
in index order), then decides from ``y_msb`` whether the output is going to be negative; if so it skips the
*LSB pass* and the ReLU output is 0, else it performs the LSB pass (one MAC ``w_i * l_i`` per issued
position, added in index order onto ``y_msb``) and outputs ``relu(y)``, exactly.

Decisions (``decision``):

- ``predictive`` (PredictiveNet, lossy): skip the LSB pass when ``y_msb <= threshold``. The LSB part is
  ignored, so an output that would have been positive can be zeroed: a *misprediction* (``y > 0``).
  ``threshold = -inf`` never skips.
- ``exact`` (lossless): skip only when the LSB pass provably cannot make the output positive. Since
  ``0 <= l_i <= 2**L - 1``, ``y_lsb <= B_k = (2**L - 1) * 2**-f * sum_{w_i > 0} w_i`` (the positive weights
  summed in index order), so the PE skips when ``y_msb + B_k + guard <= 0``. ``guard = 1e-9 * S`` keeps the
  decision clear of float rounding, ``S = |bias| + sum_i |w_i| (|m_i| + l_i) 2**-f + B_k`` (the magnitude
  of every term involved, summed in index order): then a skipped output is never positive, whatever the
  order of the float additions. No misprediction, by construction (the tests check it). Sound for negative
  activations too (``l_i >= 0`` holds for every sign), unlike SnaPEA's sign-ordered exact termination.

No ReLU (``relu=False``: the layer's activation is ``none``): a negative output is a real value, so there
is no decision to make: every LSB pass is performed, nothing is skipped or mispredicted, and the output is
the pre-activation ``y`` (the same as ``threshold = -inf``, without the ReLU).

Issued positions: every nonzero weight (zero weights are never issued); with ``skip_zero_activations``
(Cnvlutin-style) only those whose activation is nonzero (zero activations have zero MSB and LSB parts). Both
passes issue the same positions: the LSB pass does not skip a position whose LSB part alone is zero.

Counted per output: ``msb_macs`` (MSB-pass MACs), ``lsb_macs`` (LSB-pass MACs: 0 when skipped),
``terminated`` (the LSB pass was skipped), ``mispredicted`` (skipped although ``y > 0``; never for
``exact``), and ``output`` (0 when skipped, else ``relu(y)``). Ignored: the cost of the decision (a
comparator per output) and how the split operands are stored (a caller charges them if it wants).

Arithmetic, and how it is computed fast with the same results: the rules above are defined on float64
sums in index order (the cycle-stepped reference adds one term per MAC). The fast model computes every sum
with matrix products; an output whose decision value (``y_msb - threshold``, ``y_msb + B_k + guard``, or
``y`` for a misprediction) lies within ``1e-10 * S`` of 0, where a matrix product and a sequential sum might
disagree, is replayed sequentially in index order. The output values of computed outputs come from the
matrix product: equal to the sequential sum up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sparsesim.sparse.checks import OperandBands, finite_matrix, operand_bands
from sparsesim.sparse.early_termination import check_layer_inputs

MSB_FIRST_DECISIONS = ("predictive", "exact")

#: Exact decision's margin, as a fraction of the magnitude ``S`` of the terms: far above the rounding of a
#: float64 sum of <= 2**16 terms (about ``2**16 * 2**-53 = 7e-12``), far below any real output.
EXACT_GUARD = 1e-9
#: Decision values within this fraction of ``S`` of 0 are replayed sequentially (matrix products and
#: sequential sums of <= 2**16 terms differ by far less).
_RELATIVE_TOLERANCE = 1e-10
#: Operands of the windows processed together by default.
CHUNK_OPERANDS = 1 << 17
#: Fixed-point word lengths accepted.
_SMALLEST_BITS, _LARGEST_BITS = 2, 32


@dataclass(frozen=True)
class MsbFirstResult:
    """What MSB-first prediction did to every output ``(filter k, window p)`` of a layer; all arrays (K, P).

    ``msb_macs`` int64: MSB-pass MACs. ``lsb_macs`` int64: LSB-pass MACs (0 where the pass was skipped).
    ``terminated`` bool: the LSB pass was skipped. ``output`` float64: what the PE produces (ReLU applied,
    unless ``relu`` is False).
    ``mispredicted`` bool: skipped, yet the full pre-activation is > 0. ``sound`` is always True (kept for
    the simulator's early-termination summary: the exact bound holds for activations of any sign).
    ``relu``: False if no ReLU follows the layer, so that no LSB pass was skipped.
    """

    msb_macs: NDArray[np.int64]
    lsb_macs: NDArray[np.int64]
    terminated: NDArray[np.bool_]
    output: NDArray[np.float64]
    mispredicted: NDArray[np.bool_]
    sound: bool = True
    relu: bool = True

    @property
    def macs_performed(self) -> NDArray[np.int64]:
        """MACs of either pass, per output."""
        return self.msb_macs + self.lsb_macs


def _check_bits(bits: int, msb_bits: int) -> None:
    for name, value in (("bits", bits), ("msb_bits", msb_bits)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not _SMALLEST_BITS <= bits <= _LARGEST_BITS:
        raise ValueError(f"bits must be in [{_SMALLEST_BITS}, {_LARGEST_BITS}], got {bits}")
    if not 1 <= msb_bits <= bits - 1:
        raise ValueError(f"msb_bits must be in [1, bits - 1] = [1, {bits - 1}], got {msb_bits}")


def _fixed_point_operands(values: object, name: str, bits: int) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{name} must hold fixed-point integers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must have 2 dimension(s), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or (array != np.rint(array)).any():
            raise ValueError(f"{name} must hold fixed-point integers; it holds non-integral values")
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(f"{name} must hold signed {bits}-bit integers in [{low}, {high}]")
    return np.ascontiguousarray(array, dtype=np.int64)


def split_msb_lsb(
    ints: np.ndarray, msb_bits: int, bits: int = 16
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split signed ``bits``-bit integers into ``(msb, lsb)``: ``msb`` keeps the top ``msb_bits`` bits (the
    low ``bits - msb_bits`` cleared, i.e. rounded towards -inf), ``lsb = ints - msb`` in ``[0, 2**L - 1]``."""
    _check_bits(bits, msb_bits)
    values = np.asarray(ints)
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"ints must hold integers (fixed-point values), got dtype {values.dtype}")
    values = values.astype(np.int64)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"ints must be signed {bits}-bit integers in [{low}, {high}]")
    lsb_bits = bits - msb_bits
    msb = (values >> lsb_bits) << lsb_bits  # arithmetic shift: floor division by 2**L
    return msb, values - msb


def lsb_bound(weights_kn: np.ndarray, lsb_bits: int, frac_bits: int) -> NDArray[np.float64]:
    """``(K,)``: the largest value the LSB pass can add to an output, ``(2**L - 1) * 2**-f * sum_{w>0} w``
    (positive weights summed in index order, as the exact rule and its reference do)."""
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    positive = np.where(weights > 0, weights, 0.0)
    positive_sums = (
        np.cumsum(positive, axis=1, out=positive)[:, -1] if weights.shape[1] else np.zeros(weights.shape[0])
    )
    return float((2**lsb_bits - 1) * 2.0 ** -int(frac_bits)) * positive_sums


def _replay(
    msb: NDArray[np.float64],
    lsb: NDArray[np.float64],
    weights: NDArray[np.float64],
    bias: NDArray[np.float64],
    bound: NDArray[np.float64],
    scale: float,
    decision: str,
    threshold: float,
    windows: NDArray[np.int64],
    filters: NDArray[np.int64],
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.float64]]:
    """Sequential sums in index order for the outputs too close to a decision: (skipped, mispredicted, y)."""
    skipped = np.zeros(windows.size, dtype=bool)
    mispredicted = np.zeros(windows.size, dtype=bool)
    full = np.zeros(windows.size)
    for i, (p, k) in enumerate(zip(windows.tolist(), filters.tolist(), strict=True)):
        w = weights[k]
        y_msb = np.cumsum(np.concatenate(([bias[k]], w * (msb[p] * scale))))[-1]
        y = np.cumsum(np.concatenate(([y_msb], w * (lsb[p] * scale))))[-1]
        if decision == "predictive":
            skip = y_msb <= threshold
        else:
            terms = np.abs(w) * ((np.abs(msb[p]) + lsb[p]) * scale)
            magnitude = np.cumsum(np.concatenate(([abs(bias[k])], terms)))[-1] + bound[k]
            skip = y_msb + bound[k] + EXACT_GUARD * magnitude <= 0
        skipped[i], mispredicted[i], full[i] = skip, skip and y > 0, y
    return skipped, mispredicted, full


def msb_first(
    operands_pn: np.ndarray | OperandBands,
    weights_kn: np.ndarray,
    bias_k: np.ndarray,
    *,
    frac_bits: int,
    msb_bits: int,
    bits: int = 16,
    decision: str = "predictive",
    threshold: float = 0.0,
    skip_zero_activations: bool = False,
    chunk_windows: int | None = None,
    relu: bool = True,
) -> MsbFirstResult:
    """Run every output of a layer through MSB-first prediction (rules in the module docstring).

    ``operands_pn``: (P, N) the fixed-point activation integers of each window (im2col layout, padding as
    0), integer or integral float dtype, or a callable returning its bands of consecutive windows (see
    :func:`~sparsesim.sparse.checks.operand_bands`; called twice, so that a caller can build them a band at a
    time). ``weights_kn``: (K, N). ``bias_k``: (K,). ``frac_bits``: the activations' scale
    (``a = x * 2**-frac_bits``). ``decision``: ``predictive`` (``threshold`` used) or ``exact``.
    ``chunk_windows``: windows processed together (bounds the (chunk, N) temporaries, about ten int64 or
    float64 arrays); by default as many as hold about ``CHUNK_OPERANDS`` operands. ``relu``: whether a ReLU
    follows the layer (without one no LSB pass is skipped and the output is the pre-activation).
    """
    if decision not in MSB_FIRST_DECISIONS:
        raise ValueError(f"unknown MSB-first decision {decision!r}; known: {', '.join(MSB_FIRST_DECISIONS)}")
    _check_bits(bits, msb_bits)
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, int | np.integer):
        raise ValueError(f"frac_bits must be an int, got {type(frac_bits).__name__}")
    bands, n_windows, n_positions, _ = operand_bands(
        operands_pn, lambda band: _fixed_point_operands(band, "operands_pn", bits), weights_kn
    )
    if chunk_windows is None:
        chunk_windows = max(1, CHUNK_OPERANDS // max(n_positions, 1))
    weights, bias, threshold = check_layer_inputs(n_positions, weights_kn, bias_k, threshold, chunk_windows)
    n_filters = weights.shape[0]

    lsb_bits = bits - msb_bits
    scale = 2.0 ** -int(frac_bits)
    bound = lsb_bound(weights, lsb_bits, int(frac_bits))
    nonzero_weights = weights != 0
    # Transposed views: BLAS reads them as they are.
    weights_t = weights.T
    magnitudes_t = np.abs(weights).T
    # (K, P) results, filled a chunk of windows (columns) at a time.
    msb_macs = np.empty((n_filters, n_windows), dtype=np.int64)
    skipped = np.empty((n_filters, n_windows), dtype=bool)
    mispredicted = np.empty((n_filters, n_windows), dtype=bool)
    output = np.empty((n_filters, n_windows), dtype=np.float64)
    if not skip_zero_activations:
        msb_macs[:] = np.count_nonzero(nonzero_weights, axis=1)[:, None]
    nonzero_weights_t = nonzero_weights.T.astype(np.float32)
    start = 0
    for band in bands():
        for low in range(0, band.shape[0], int(chunk_windows)):
            ints = band[low : low + int(chunk_windows)]
            rows = slice(start + low, start + low + ints.shape[0])
            msb, lsb = split_msb_lsb(ints, msb_bits, bits)
            msb_f, lsb_f = msb.astype(np.float64), lsb.astype(np.float64)
            y_msb = bias + (msb_f @ weights_t) * scale
            y = y_msb + (lsb_f @ weights_t) * scale
            if not relu:  # no decision: every LSB pass, the pre-activation
                skipped[:, rows], mispredicted[:, rows], output[:, rows] = False, False, y.T
            else:
                magnitude = np.abs(bias) + ((np.abs(msb_f) + lsb_f) @ magnitudes_t) * scale + bound
                tolerance = _RELATIVE_TOLERANCE * magnitude
                if decision == "predictive":
                    margin = y_msb - threshold
                else:
                    margin = y_msb + bound + EXACT_GUARD * magnitude
                skip = margin <= 0
                unclear = np.abs(margin) <= tolerance
                unclear |= skip & (np.abs(y) <= tolerance)  # is it a misprediction?
                wrong = skip & (y > 0)
                windows, filters = np.nonzero(unclear)
                if windows.size:
                    replayed_skip, replayed_wrong, replayed_y = _replay(
                        msb_f, lsb_f, weights, bias, bound, scale, decision, threshold, windows, filters
                    )
                    skip[windows, filters] = replayed_skip
                    wrong[windows, filters] = replayed_wrong
                    y[windows, filters] = replayed_y
                skipped[:, rows], mispredicted[:, rows] = skip.T, wrong.T
                output[:, rows] = np.where(skip, 0.0, np.maximum(y, 0.0)).T
            if skip_zero_activations:
                # Exact: float32 holds integers up to 2**24, far above C*R*S.
                nonzero = (ints != 0).astype(np.float32)
                msb_macs[:, rows] = np.rint(nonzero @ nonzero_weights_t).T
        start += band.shape[0]
    return MsbFirstResult(
        msb_macs=msb_macs,
        lsb_macs=np.where(skipped, 0, msb_macs),
        terminated=skipped,
        output=output,
        mispredicted=mispredicted,
        relu=bool(relu),
    )
