"""Spatial delta processing (Diffy, Mahmoud et al., MICRO 2018) on an effectual-term engine, pure numpy.

Modelled: a bit-serial *effectual-term* PE (Bit-Pragmatic / Laconic style) multiplies an activation by a
full-precision weight one *effectual term* per cycle, an effectual term being a nonzero signed power of two
of the activation's digit representation. An activation therefore costs as many cycles as it has effectual
terms, and a zero costs nothing. Diffy feeds such a PE the *differences* of horizontally adjacent
activations instead of the activations: a convolution is linear, so the output of window ``(y, x)`` is the
output of window ``(y, x - 1)`` plus the convolution of the difference of the two windows' operands, and
neighbouring activations of a feature map are correlated, so the differences have fewer effectual terms. The
outputs stay exact.

The rules, in order:

1. **Fixed point** (:func:`to_fixed_point`). Such machines (Diffy, DaDianNao, Bit-Pragmatic) compute on
   16-bit fixed point. A layer's activations ``x`` are mapped to signed ``bits``-bit integers with one
   power-of-two scale per layer: ``ints = rint(x * 2**frac_bits)`` (round half to even), ``frac_bits`` the
   largest integer (possibly negative) such that ``rint(max|x| * 2**frac_bits) <= 2**(bits-1) - 1``. The
   quantisation is lossy below ``2**-frac_bits``: the error of each value is at most
   ``2**-(frac_bits+1)`` (:func:`fixed_point_error` measures it). The trace stores float16 values, whose
   own precision is relative; a layer with large activations therefore loses small ones in fixed point. An
   all-zero layer gets ``frac_bits = 0``.
2. **Effectual terms** (:func:`effectual_terms`) of an integer ``v``:

   - ``csd`` (default): the number of nonzero digits of the canonical signed-digit representation of ``v``
     (its non-adjacent form, NAF, digits in {-1, 0, 1}, no two adjacent nonzero). This is the minimal number
     of signed powers of two that sum to ``v``, and depends only on ``|v|`` (no word length enters it).
     Computed with a bit trick: the nonzero NAF digits of ``2n`` (n = |v|) are the set bits of
     ``n XOR 3n``, so the count is ``popcount(n ^ 3n)``.
   - ``positional``: ``popcount(|v|)``, the ones of the sign-magnitude representation (Bit-Pragmatic without
     signed-digit recoding).

   Supported range: ``|v| <= 2**61`` (so that ``3|v|`` fits in int64), far beyond the 17 bits deltas need.
3. **Spatial deltas** (:func:`spatial_deltas`): along a row (axis 2 of a (C, H, W) tensor) the first value
   stays raw and every other becomes ``a[x] - a[x-1]``. A delta of two ``b``-bit values needs ``b + 1`` bits
   (17 for 16-bit activations); its effectual terms are counted on the delta integer itself.
4. **Work per window** (:func:`window_terms`), for a convolution with an ``R x S`` kernel, ``stride`` and
   zero ``padding``; ``A`` is the zero-padded input, with padded coordinates. The operand at ``(c, r, s)`` of
   output window ``(y, x)``:

   - ``raw`` mode: ``A[c, y*stride + r, x*stride + s]``;
   - ``delta`` mode: the raw operand when ``x == 0`` (the first window of every output row), else
     ``A[c, y*stride + r, x*stride + s] - A[c, y*stride + r, (x-1)*stride + s]``: the difference between the
     window's operand and the one at the same kernel position of the previous window of the row.

   The window's work is the sum of the effectual terms of its operands over ``c, r, s``: the cycles of a PE
   that processes one term per cycle (padding costs 0 in both modes, as does a zero delta).
5. **Exactness** (:func:`delta_outputs`): ``out[k, y, 0]`` is the direct convolution of the first window,
   ``out[k, y, x] = out[k, y, x-1] + sum_{c,r,s} w[k,c,r,s] * delta[c, r, s; y, x]``, in float64 on the
   dequantised values. It equals the direct convolution of the dequantised activations (no bias, no ReLU:
   the linear part Diffy reconstructs) up to floating-point rounding.

Counted: effectual terms (``_terms``). Ignored: the weights' cost (bit-parallel), the synchronisation of
lanes that process different activations in lockstep (the busiest lane sets the pace in real hardware: a
caller combines per-lane counts if it wants that), the extra adder and the storage of the previous output
that delta reconstruction needs, how deltas are produced and stored in memory (Diffy computes them on the
fly), and the zero-padding positions that a real array would still have to step over.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sparsesim.sparse.geometry import output_size

TERM_ENCODINGS = ("csd", "positional", "nonzero")
WINDOW_TERM_MODES = ("raw", "delta")

#: Largest supported magnitude for effectual-term counting: ``3 * 2**61`` still fits in int64.
_LARGEST_MAGNITUDE = 1 << 61
#: Fixed-point word lengths accepted (deltas need one more bit; the term counting needs |v| <= 2**61).
_SMALLEST_BITS, _LARGEST_BITS = 2, 48

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


def _popcount_swar(values: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Set bits of each uint64 (SWAR: pairs, nibbles, bytes, then a multiply sums the bytes)."""
    v = values - ((values >> np.uint64(1)) & _M1)
    v = (v & _M2) + ((v >> np.uint64(2)) & _M2)
    v = (v + (v >> np.uint64(4))) & _M4
    counts: NDArray[np.int64] = ((v * _H01) >> np.uint64(56)).astype(np.int64)
    return counts


def popcount(values: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Set bits of each uint64: numpy's ``bitwise_count`` (numpy >= 2.0, 7x faster), else SWAR."""
    bitwise_count = getattr(np, "bitwise_count", None)
    if bitwise_count is None:
        return _popcount_swar(values)
    counts: NDArray[np.int64] = bitwise_count(values).astype(np.int64)
    return counts


def _integer_array(values: object, name: str, ndim: int | None = None) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers (fixed-point values), got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if array.size and np.issubdtype(array.dtype, np.unsignedinteger) and array.max() > _LARGEST_MAGNITUDE:
        raise ValueError(f"{name} holds values above 2**61, the largest supported magnitude")
    return array.astype(np.int64)


def _check_geometry(kernel_r: int, kernel_s: int, stride: int, padding: int, height: int, width: int) -> None:
    for name, value, smallest in (
        ("kernel_r", kernel_r, 1),
        ("kernel_s", kernel_s, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < smallest:
            raise ValueError(f"{name} must be an int >= {smallest}, got {value!r}")
    if height + 2 * padding < kernel_r or width + 2 * padding < kernel_s:
        raise ValueError(
            f"a {kernel_r}x{kernel_s} kernel does not fit a {height}x{width} input with padding {padding}"
        )


def to_fixed_point(x: np.ndarray, bits: int = 16) -> tuple[NDArray[np.int64], int]:
    """Signed ``bits``-bit fixed point with one power-of-two scale for the whole array (rule 1).

    Returns ``(ints, frac_bits)``: int64 integers with ``|ints| <= 2**(bits-1) - 1`` and ``x ~ ints *
    2**-frac_bits``, ``frac_bits`` the largest that keeps ``rint(max|x| * 2**frac_bits)`` in range (it may be
    negative for large values; 0 for an all-zero array). Rounding is to nearest, ties to even.
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise ValueError(f"bits must be an int, got {type(bits).__name__}")
    if not _SMALLEST_BITS <= bits <= _LARGEST_BITS:
        raise ValueError(f"bits must be in [{_SMALLEST_BITS}, {_LARGEST_BITS}], got {bits}")
    values = np.asarray(x, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("x must be finite; it holds NaN or infinite values")
    largest = float(np.abs(values).max()) if values.size else 0.0
    if largest == 0.0:
        return np.zeros(values.shape, dtype=np.int64), 0
    limit = float(2 ** (int(bits) - 1) - 1)
    _, exponent = np.frexp(largest)  # largest = m * 2**exponent, 0.5 <= m < 1
    frac_bits = int(bits) - 1 - int(exponent)  # then largest * 2**frac_bits < 2**(bits-1)
    while np.rint(np.ldexp(largest, frac_bits)) > limit:  # rounding up to 2**(bits-1)
        frac_bits -= 1
    while np.rint(np.ldexp(largest, frac_bits + 1)) <= limit:
        frac_bits += 1
    return np.rint(np.ldexp(values, frac_bits)).astype(np.int64), frac_bits


def from_fixed_point(ints: np.ndarray, frac_bits: int) -> NDArray[np.float64]:
    """The real values ``ints * 2**-frac_bits`` that fixed-point integers stand for, as float64."""
    return np.ldexp(_integer_array(ints, "ints").astype(np.float64), -int(frac_bits))


def fixed_point_error(x: np.ndarray, ints: np.ndarray, frac_bits: int) -> float:
    """Largest ``|x - ints * 2**-frac_bits|``: what the fixed-point quantisation lost (0.0 when empty)."""
    values = np.asarray(x, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return float(np.abs(values - from_fixed_point(ints, frac_bits)).max())


def effectual_terms(ints: np.ndarray, encoding: str = "csd") -> NDArray[np.int64]:
    """Effectual terms of each integer (rule 2): nonzero signed-digit (``csd``) or binary (``positional``)
    digits of ``|v|``; ``nonzero`` counts 1 per nonzero value (a bit-parallel engine that skips zeros).
    Returns int64 of the same shape; ``|v|`` must be at most ``2**61``."""
    if encoding not in TERM_ENCODINGS:
        raise ValueError(f"unknown term encoding {encoding!r}; known: {', '.join(TERM_ENCODINGS)}")
    values = _integer_array(ints, "ints")
    if values.size and (values.min() < -_LARGEST_MAGNITUDE or values.max() > _LARGEST_MAGNITUDE):
        raise ValueError("ints holds values of magnitude above 2**61, the largest supported")
    if encoding == "nonzero":
        return (values != 0).astype(np.int64)
    magnitude = np.abs(values).astype(np.uint64)
    if encoding == "positional":
        return popcount(magnitude)
    return popcount(magnitude ^ (magnitude * np.uint64(3)))


def spatial_deltas(ints_chw: np.ndarray, axis: int = 2) -> NDArray[np.int64]:
    """Differences along ``axis`` (rule 3): the first value of each line stays raw, then ``a[x] - a[x-1]``.

    ``np.cumsum(spatial_deltas(a, axis), axis=axis)`` gives ``a`` back. Returns int64 of the same shape.
    """
    values = _integer_array(ints_chw, "ints_chw")
    if not -values.ndim <= axis < values.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {values.ndim} dimension(s)")
    return np.diff(values, axis=axis, prepend=0)


def _box_sums(
    per_position: NDArray[np.int64], kernel_r: int, kernel_s: int, stride: int, out_h: int, out_w: int
) -> NDArray[np.int64]:
    """Sums of a padded (Hp, Wp) map over each window's ``R x S`` box, (out_h, out_w): a summed-area table."""
    table = np.zeros((per_position.shape[0] + 1, per_position.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(per_position, axis=0), axis=1, out=table[1:, 1:])
    top = np.arange(out_h) * stride
    left = np.arange(out_w) * stride
    bottom, right = top + kernel_r, left + kernel_s
    return (
        table[bottom[:, None], right[None, :]]
        - table[top[:, None], right[None, :]]
        - table[bottom[:, None], left[None, :]]
        + table[top[:, None], left[None, :]]
    )


#: Operand values of the band of input rows :func:`delta_outputs` converts to float64 at a time (4 MiB).
DELTA_BAND_VALUES = 1 << 19


def _row_differences(padded: NDArray[np.int64], stride: int) -> NDArray[np.int64]:
    """``padded[..., j] - padded[..., j - stride]`` where ``j >= stride``; the first ``stride`` columns: 0."""
    differences = np.zeros_like(padded)
    differences[..., stride:] = padded[..., stride:] - padded[..., : padded.shape[-1] - stride]
    return differences


def window_terms(
    ints_chw: np.ndarray,
    kernel_r: int,
    kernel_s: int,
    stride: int,
    padding: int,
    mode: str = "raw",
    encoding: str = "csd",
) -> NDArray[np.int64]:
    """Effectual terms a bit-serial PE processes for each output window of a convolution (rule 4).

    ``ints_chw``: (C, H, W) fixed-point activations. Returns int64 ``(Hout * Wout,)`` in raster order: per
    window, the terms of its ``C*R*S`` operands (raw values, or differences from the previous window of the
    row in ``delta`` mode), summed over channels and kernel positions.
    """
    if mode not in WINDOW_TERM_MODES:
        raise ValueError(f"unknown window term mode {mode!r}; known: {', '.join(WINDOW_TERM_MODES)}")
    values = _integer_array(ints_chw, "ints_chw", 3)
    _, height, width = values.shape
    _check_geometry(kernel_r, kernel_s, stride, padding, height, width)
    out_h = output_size(height, kernel_r, stride, padding)
    out_w = output_size(width, kernel_s, stride, padding)
    pads = ((0, 0), (padding, padding), (padding, padding))
    raw_terms = np.pad(effectual_terms(values, encoding).sum(axis=0), pads[1:])
    if mode == "raw":
        return _box_sums(raw_terms, kernel_r, kernel_s, stride, out_h, out_w).reshape(-1)
    # Windows x >= 1 read columns >= stride of the difference map; the first window of each row is raw.
    differences = _row_differences(np.pad(values, pads), stride)
    delta_terms = effectual_terms(differences, encoding).sum(axis=0)
    per_window = _box_sums(delta_terms, kernel_r, kernel_s, stride, out_h, out_w)
    per_window[:, 0] = _box_sums(raw_terms[:, :kernel_s], kernel_r, kernel_s, stride, out_h, 1)[:, 0]
    return per_window.reshape(-1)


def delta_outputs(
    ints_chw: np.ndarray, weights_kcrs: np.ndarray, stride: int, padding: int, frac_bits: int
) -> NDArray[np.float64]:
    """The convolution as Diffy computes it (rule 5): each output from its left neighbour plus the
    convolution of the operand differences; the first output of each row directly.

    ``ints_chw``: (C, H, W) fixed-point activations with ``frac_bits`` fractional bits; ``weights_kcrs``:
    (K, C, R, S). Returns float64 ``(K, Hout, Wout)``, without bias or ReLU. Along each row the outputs are
    accumulated left to right (a cumulative sum), as the hardware does.
    """
    values = _integer_array(ints_chw, "ints_chw", 3)
    weights = np.asarray(weights_kcrs, dtype=np.float64)
    if weights.ndim != 4:
        raise ValueError(f"weights_kcrs must have 4 dimensions, got shape {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError("weights_kcrs must be finite; it holds NaN or infinite values")
    n_filters, channels, kernel_r, kernel_s = weights.shape
    if channels != values.shape[0]:
        raise ValueError(f"ints_chw has {values.shape[0]} channels but weights_kcrs has {channels}")
    _, height, width = values.shape
    _check_geometry(kernel_r, kernel_s, stride, padding, height, width)
    out_h = output_size(height, kernel_r, stride, padding)
    out_w = output_size(width, kernel_s, stride, padding)
    padded = np.pad(values, ((0, 0), (padding, padding), (padding, padding)))
    out = np.zeros((n_filters, out_h, out_w), dtype=np.float64)
    columns_end = stride * (out_w - 1) + 1
    # A band of output rows at a time (each row reads only its own input rows): the float64 copies of the
    # operands and their differences are the band's.
    rows_per_band = max(1, DELTA_BAND_VALUES // (channels * padded.shape[2] * stride))
    for first in range(0, out_h, rows_per_band):
        last = min(out_h, first + rows_per_band)
        band = padded[:, first * stride : (last - 1) * stride + kernel_r]
        raw = np.ldexp(band.astype(np.float64), -int(frac_bits))
        deltas = np.ldexp(_row_differences(band, stride).astype(np.float64), -int(frac_bits))
        increments = out[:, first:last]
        first_column = np.zeros((n_filters, last - first), dtype=np.float64)
        rows_end = stride * (last - first - 1) + 1
        for r in range(kernel_r):
            for s in range(kernel_s):
                w = weights[:, :, r, s]
                increments += np.tensordot(
                    w, deltas[:, r : r + rows_end : stride, s : s + columns_end : stride], 1
                )
                first_column += w @ raw[:, r : r + rows_end : stride, s]
        increments[:, :, 0] = first_column
        np.cumsum(increments, axis=2, out=increments)
    return out
