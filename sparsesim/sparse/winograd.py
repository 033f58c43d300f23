"""Winograd F(2x2, 3x3) convolution (Lavin & Gray, CVPR 2016): its values and its work, pure numpy.

The lecture's Gauss trick computes a complex product with 3 real multiplications instead of 4 by adding
before multiplying. Winograd's minimal filtering algorithms are the same trick generalised: F(2, 3) gives 2
outputs of a 3-tap filter with 4 multiplications instead of 6, and nested, F(2x2, 3x3) gives a 2x2 tile of
outputs of a 3x3 filter with 16 multiplications instead of 36: 2.25x fewer. Per input channel ``c``:

    Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A        (* elementwise, 4x4)

with ``g_c`` the 3x3 kernel, ``d_c`` the 4x4 input tile whose output is the 2x2 tile ``Y``, and the constant
matrices :data:`B_T`, :data:`G`, :data:`A_T` of Lavin & Gray (eq. 8). ``U = G g G^T`` is the *transformed
weight* (computed once, offline), ``V = B^T d B`` the *transformed input tile*, ``M = sum_c U * V`` the
accumulated elementwise products, and ``A^T M A`` the *output transform*. Like DNN frameworks, the
"convolution" is a cross-correlation: ``Y[i, j] = sum_{c,r,s} g[c, r, s] d[c, i + r, j + s]``.

Only stride-1 convolutions with 3x3 kernels are computed this way (:func:`unsupported_reason` says why
another layer is not: 1x1 or other kernel sizes, strides > 1, linear layers).

**Tiles and edges.** A stride-1 3x3 convolution of a ``(C, H, W)`` input with ``padding`` zeros on each side
has ``Hout = H + 2 padding - 2`` rows and ``Wout = W + 2 padding - 2`` columns of outputs, covered by
``ceil(Hout / 2) x ceil(Wout / 2)`` output tiles of 2x2; output tile ``(i, j)`` holds outputs
``(2i .. 2i+1, 2j .. 2j+1)`` and reads the 4x4 input tile at rows ``2i .. 2i+3``, columns ``2j .. 2j+3`` of
the padded input (consecutive input tiles overlap by 2). When ``Hout`` (or ``Wout``) is odd the last row
(column) of tiles is partial: its input tile reaches one row (column) past the padded input, which is read as
zeros, and its outputs past ``Hout`` (``Wout``) are computed and then discarded (cropped). A partial tile
costs as much as a full one: every count below includes it.

**Work of a Winograd PE, as counted here.** A PE lane computes one output tile of one filter ``k`` at a
time: it walks the channels ``c = 0 .. C-1`` and, in each, the 16 positions ``(xi, nu)`` in row-major order,
and *issues* the elementwise multiply ``U[k, c, xi, nu] * V[c, xi, nu]`` into the position's accumulator
(one multiply and one accumulate, a MAC). What is issued depends on ``skip`` (:data:`SKIP_MODES`):

- ``"none"``: every product, ``16 C`` per (tile, filter);
- ``"transformed_weights"``: only products whose transformed weight ``U`` is nonzero (the hardware stores
  ``U`` compressed, as sparse-Winograd accelerators do): ``sum_c nnz(U[k, c])`` per (tile, filter), the same
  for every tile;
- ``"transformed_operands"``: only products whose ``U`` and ``V`` are both nonzero.

A PE of ``lanes`` multipliers takes ``lanes`` issued products per cycle, in issue order (products of the
same position from different channels meeting in one cycle are summed by an adder tree before the
accumulator); a (tile, filter) takes ``max(1, ceil(issued / lanes))`` cycles: one with nothing issued still
takes the cycle that starts its output transform. Skipping changes no value: a skipped product is zero.

Transform costs, counted as additions of two numbers (a subtraction is an addition), with shared
subexpressions (Lavin & Gray, section 4.2):

- input transform ``B^T d B``: :data:`INPUT_TRANSFORM_ADDS` = 32 per (channel, tile): 16 for ``B^T d``
  (each row of ``B^T`` has two nonzeros of +-1), 16 for ``(B^T d) B``; shared by all ``K`` filters;
- output transform ``A^T M A``: :data:`OUTPUT_TRANSFORM_ADDS` = 24 per (filter, tile): 16 for ``A^T M``, 8
  for ``(A^T M) A``;
- weight transform ``G g G^T``: :data:`WEIGHT_TRANSFORM_ADDS` = 21 additions and
  :data:`WEIGHT_TRANSFORM_HALVINGS` = 14 multiplications by 1/2 per (filter, channel), done offline (for each
  column of ``g``: ``t = g0 + g2``, ``(t + g1) / 2``, ``(t - g1) / 2``; then the same for each row of
  ``G g``).

**Why zero weights vanish.** Each of the 16 entries of ``U`` mixes 1 (corners), 3 (edges) or 9 (the 4
middle entries) weights of ``g``: a kernel with one nonzero weight in the middle has a dense ``U``. A
magnitude-pruned layer's spatial zeros mostly do not survive the transform, so ``transformed_weights``
skipping recovers only part of what zero-skipping saves in direct convolution (Liu et al., "Efficient
Sparse-Winograd Convolutional Neural Networks", ICLR 2018, prune ``U`` itself, and retrain, for that reason).

**Exactness.** With float16-representable operands (the shipped traces) ``U`` and ``V`` are exact in
float64: they are sums of at most 9 such values scaled by powers of two. So their zeros, and all the counts
here, are exact; the outputs equal direct convolution up to float64 rounding (the sums are associated
differently). Ignored: the numeric growth of ``U`` and ``V`` (a fixed-point datapath needs a few more bits for
them), the storage of ``U`` (16 values per kernel instead of 9) and its compression metadata.

How it is computed fast: the weights are transformed with the shared subexpressions above, on rows of all
kernels at once; input tiles come from a strided window view of one band of tile rows of the padded input,
and the input and output transforms are each one matrix product with their Kronecker form (``vec(P X Q^T) =
(P kron Q) vec(X)``, entries 0, +-1: still exact); the 16 positions' channel sums are one batched matrix
product ``(16, K, C) @ (16, C, T)``, and the counts of nonzero pairs the same product of the 0/1 masks
(float32, exact below 2**24). Bands hold about :data:`BAND_ELEMENTS` values, so memory stays bounded
whatever the layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from sparsesim.sparse.checks import finite_matrix

__all__ = [
    "A_T",
    "BAND_ELEMENTS",
    "B_T",
    "G",
    "INPUT_TRANSFORM_ADDS",
    "OUTPUT_TRANSFORM_ADDS",
    "SKIP_MODES",
    "WEIGHT_TRANSFORM_ADDS",
    "WEIGHT_TRANSFORM_HALVINGS",
    "WinogradGeometry",
    "WinogradWork",
    "input_tile_bands",
    "input_tiles",
    "inverse_transform",
    "tile_row_bands",
    "transform_weights",
    "unsupported_reason",
    "winograd_geometry",
    "winograd_output",
    "winograd_output_bands",
    "winograd_work",
]

#: Input transform of F(2x2, 3x3): ``V = B_T @ d @ B_T.T`` (Lavin & Gray, eq. 8).
B_T: NDArray[np.float64] = np.array(
    [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64
)
#: Weight transform of F(2x2, 3x3): ``U = G @ g @ G.T`` (Lavin & Gray, eq. 8).
G: NDArray[np.float64] = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
#: Output transform of F(2x2, 3x3): ``Y = A_T @ M @ A_T.T`` (Lavin & Gray, eq. 8).
A_T: NDArray[np.float64] = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

#: What a Winograd PE skips (see the module docstring).
SKIP_MODES: tuple[str, ...] = ("none", "transformed_weights", "transformed_operands")

#: Additions of the input transform, per (channel, output tile).
INPUT_TRANSFORM_ADDS = 32
#: Additions of the output transform, per (filter, output tile).
OUTPUT_TRANSFORM_ADDS = 24
#: Additions of the (offline) weight transform, per (filter, channel).
WEIGHT_TRANSFORM_ADDS = 21
#: Multiplications by 1/2 of the (offline) weight transform, per (filter, channel).
WEIGHT_TRANSFORM_HALVINGS = 14
#: Elementwise products of one (channel, output tile, filter): the transformed tile is 4x4.
TILE_PRODUCTS = 16
#: Outputs of one output tile: 2x2.
TILE_OUTPUTS = 4
#: Multiplications of one output of direct 3x3 convolution, per channel.
DIRECT_PRODUCTS = 9

# The 2-D transforms as one matrix acting on a tile flattened row-major (position ``xi * 4 + nu``):
# ``vec(P X Q^T) = (P kron Q) vec(X)``. Their entries are products of the matrices' entries (0, +-1, +-1/2),
# so the transforms stay exact (see the module docstring).
_B_T_KRON = np.kron(B_T, B_T)  # (16, 16)
_A_T_KRON = np.kron(A_T, A_T)  # (4, 16)

#: Values (of the largest band temporary) a band of tile rows holds at most, unless one tile row is larger.
BAND_ELEMENTS = 1 << 21


def unsupported_reason(op: str, weight_shape: tuple[int, ...], stride: int) -> str | None:
    """Why a layer cannot run as Winograd F(2x2, 3x3), or ``None`` if it can.

    ``op``: ``"conv2d"`` or ``"linear"``; ``weight_shape``: conv2d ``(K, C, R, S)``, linear ``(K, C)``;
    ``stride``: the conv2d stride. Only stride-1 conv2d layers with 3x3 kernels are Winograd-able.
    """
    if op != "conv2d":
        return f"{op} layer: F(2x2, 3x3) needs a stride-1 3x3 convolution"
    if len(weight_shape) != 4:
        return f"conv2d weights of shape {tuple(weight_shape)} are not (K, C, R, S)"
    if tuple(weight_shape[2:]) != (3, 3):
        return f"{weight_shape[2]}x{weight_shape[3]} kernels: F(2x2, 3x3) needs 3x3 kernels"
    if stride != 1:
        return f"stride {stride}: F(2x2, 3x3) needs stride 1"
    return None


@dataclass(frozen=True)
class WinogradGeometry:
    """The output tiles of a stride-1 3x3 convolution (see "Tiles and edges" in the module docstring)."""

    channels: int
    height: int
    width: int
    padding: int
    filters: int

    @property
    def out_height(self) -> int:
        """``H + 2 padding - 2``."""
        return self.height + 2 * self.padding - 2

    @property
    def out_width(self) -> int:
        """``W + 2 padding - 2``."""
        return self.width + 2 * self.padding - 2

    @property
    def tile_rows(self) -> int:
        """``ceil(Hout / 2)``."""
        return -(-self.out_height // 2)

    @property
    def tile_cols(self) -> int:
        """``ceil(Wout / 2)``."""
        return -(-self.out_width // 2)

    @property
    def tiles(self) -> int:
        """Output tiles of one filter."""
        return self.tile_rows * self.tile_cols

    @property
    def outputs(self) -> int:
        """Outputs of one filter: ``Hout * Wout``."""
        return self.out_height * self.out_width

    @property
    def direct_multiplies(self) -> int:
        """Multiplications of dense direct convolution: ``9 C K Hout Wout``."""
        return DIRECT_PRODUCTS * self.channels * self.filters * self.outputs

    @property
    def dense_multiplies(self) -> int:
        """Multiplications of dense Winograd (skip ``"none"``): ``16 C K tiles`` (partial tiles included)."""
        return TILE_PRODUCTS * self.channels * self.filters * self.tiles

    @property
    def input_transform_adds(self) -> int:
        """Additions of all input transforms: 32 per (channel, tile), shared by the filters."""
        return INPUT_TRANSFORM_ADDS * self.channels * self.tiles

    @property
    def output_transform_adds(self) -> int:
        """Additions of all output transforms: 24 per (filter, tile)."""
        return OUTPUT_TRANSFORM_ADDS * self.filters * self.tiles

    @property
    def weight_transform_adds(self) -> int:
        """Additions of the offline weight transform: 21 per (filter, channel)."""
        return WEIGHT_TRANSFORM_ADDS * self.filters * self.channels

    @property
    def weight_transform_halvings(self) -> int:
        """Multiplications by 1/2 of the offline weight transform: 14 per (filter, channel)."""
        return WEIGHT_TRANSFORM_HALVINGS * self.filters * self.channels


def winograd_geometry(
    input_shape: tuple[int, ...], weight_shape: tuple[int, ...], padding: int
) -> WinogradGeometry:
    """The tiles of a stride-1 3x3 convolution of a ``(C, H, W)`` input by ``(K, C, 3, 3)`` weights.

    Raises ``ValueError`` if the shapes are not those, the channels differ, ``padding`` is not an int >= 0,
    or the padded input is smaller than the kernel.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input must be (C, H, W), got shape {tuple(input_shape)}")
    if len(weight_shape) != 4 or tuple(weight_shape[2:]) != (3, 3):
        raise ValueError(f"weights must be (K, C, 3, 3), got shape {tuple(weight_shape)}")
    if input_shape[0] != weight_shape[1]:
        raise ValueError(f"input has {input_shape[0]} channels but the weights have {weight_shape[1]}")
    if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    channels, height, width = (int(n) for n in input_shape)
    geometry = WinogradGeometry(channels, height, width, int(padding), int(weight_shape[0]))
    if geometry.out_height < 1 or geometry.out_width < 1:
        raise ValueError(
            f"a {height}x{width} input padded by {padding} is smaller than the 3x3 kernel: no output"
        )
    return geometry


def transform_weights(weights_kcrs: np.ndarray) -> NDArray[np.float64]:
    """``U = G g G^T`` of every kernel: ``(K, C, 3, 3)`` weights -> ``(K, C, 4, 4)`` float64."""
    u16 = _transform_weights16(weights_kcrs)
    return np.moveaxis(u16, 0, -1).reshape(*u16.shape[1:], 4, 4)


def _transform_weights16(weights_kcrs: np.ndarray) -> NDArray[np.float64]:
    """``U`` position-major: ``(16, K, C)`` float64, ``U[xi * 4 + nu, k, c]``.

    Computed with the shared subexpressions of :data:`WEIGHT_TRANSFORM_ADDS` (``G g`` column by column, then
    ``(G g) G^T`` row by row: ``g0``, ``(t + g1) / 2``, ``(t - g1) / 2``, ``g2`` with ``t = g0 + g2``), on
    rows of all the kernels at once."""
    weights = np.asarray(weights_kcrs, dtype=np.float64)
    if weights.ndim != 4 or weights.shape[2:] != (3, 3):
        raise ValueError(f"weights must be (K, C, 3, 3), got shape {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError("weights must be finite; they hold NaN or infinite values")
    filters, channels = weights.shape[:2]
    g = weights.reshape(filters * channels, 9).T  # (9, K*C): row r*3 + s is g[r, s] of every kernel
    gg = np.empty((4, 3, filters * channels))  # G g
    for s in range(3):
        _f23_weights(g[s], g[3 + s], g[6 + s], gg[:, s])
    u = np.empty((TILE_PRODUCTS, filters * channels))
    for a in range(4):
        _f23_weights(gg[a, 0], gg[a, 1], gg[a, 2], u[4 * a : 4 * a + 4])
    return u.reshape(TILE_PRODUCTS, filters, channels)


def _f23_weights(g0: np.ndarray, g1: np.ndarray, g2: np.ndarray, out: np.ndarray) -> None:
    """F(2, 3)'s filter transform (the rows of ``G``) of three taps, into ``out[0:4]``."""
    t = g0 + g2
    out[0] = g0
    out[1] = (t + g1) / 2
    out[2] = (t - g1) / 2
    out[3] = g2


def _checked_input(input_chw: np.ndarray) -> NDArray[np.float64]:
    array = np.asarray(input_chw, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"input must be (C, H, W), got shape {array.shape}")
    return finite_matrix(array, "input", 3)


def tile_row_bands(geometry: WinogradGeometry, rows_per_band: int | None = None) -> Iterator[slice]:
    """Consecutive slices of tile rows covering ``0 .. tile_rows``, ``rows_per_band`` each (the last one may
    be shorter). Default: as many as keep a band's largest temporary (its transformed input tiles, or its
    accumulated products) near :data:`BAND_ELEMENTS` values, at least one row."""
    if rows_per_band is None:
        per_row = TILE_PRODUCTS * max(geometry.channels, geometry.filters) * geometry.tile_cols
        rows_per_band = max(1, BAND_ELEMENTS // max(per_row, 1))
    if (
        isinstance(rows_per_band, bool)
        or not isinstance(rows_per_band, int | np.integer)
        or rows_per_band < 1
    ):
        raise ValueError(f"rows_per_band must be an int >= 1, got {rows_per_band!r}")
    for first in range(0, geometry.tile_rows, int(rows_per_band)):
        yield slice(first, min(first + int(rows_per_band), geometry.tile_rows))


def _input_tiles16(input_chw: NDArray[np.float64], geometry: WinogradGeometry, rows: slice) -> np.ndarray:
    """``V`` of the tile rows ``rows``, position-major: ``(16, C, rows, tile_cols)`` float64 (input already
    checked); ``V[xi * 4 + nu, c, i, j]`` is entry ``(xi, nu)`` of tile ``(i, j)`` of channel ``c``."""
    n_rows = rows.stop - rows.start
    # Rows 2*first .. 2*stop + 1 and columns 0 .. 2*tile_cols + 1 of the padded input; what lies outside the
    # input (its padding, and the row / column past a partial tile) is zero.
    top = 2 * rows.start - geometry.padding
    band = np.zeros((geometry.channels, 2 * n_rows + 2, 2 * geometry.tile_cols + 2))
    y0, y1 = max(top, 0), min(top + band.shape[1], geometry.height)
    x1 = min(band.shape[2] - geometry.padding, geometry.width)
    if y1 > y0 and x1 > 0:
        band[:, y0 - top : y1 - top, geometry.padding : geometry.padding + x1] = input_chw[:, y0:y1, :x1]
    d = sliding_window_view(band, (4, 4), axis=(1, 2))[:, ::2, ::2]  # (C, rows, tile_cols, 4, 4)
    d16 = np.ascontiguousarray(d.transpose(3, 4, 0, 1, 2)).reshape(TILE_PRODUCTS, -1)
    return np.asarray(_B_T_KRON @ d16).reshape(TILE_PRODUCTS, geometry.channels, n_rows, geometry.tile_cols)


def input_tiles(input_chw: np.ndarray, padding: int, rows: slice | None = None) -> NDArray[np.float64]:
    """``V = B^T d B`` of the input tiles: ``(C, tile_rows, tile_cols, 4, 4)`` float64.

    ``input_chw``: ``(C, H, W)``, finite. ``rows``: a slice of tile rows (step 1; default all), for bands.
    Tiles as in the module docstring (padding and the row / column past a partial tile are zeros).
    """
    x = _checked_input(input_chw)
    geometry = winograd_geometry(x.shape, (1, x.shape[0], 3, 3), padding)
    start, stop, step = (rows or slice(None)).indices(geometry.tile_rows)
    if step != 1:
        raise ValueError(f"rows must be a slice of step 1, got {rows!r}")
    return _tile_major(_input_tiles16(x, geometry, slice(start, max(start, stop))))


def input_tile_bands(
    input_chw: np.ndarray, padding: int, rows_per_band: int | None = None
) -> Iterator[tuple[slice, NDArray[np.float64]]]:
    """The transformed input tiles, band by band: ``(tile rows, V of those rows)`` (see
    :func:`tile_row_bands` for the bands and :func:`input_tiles` for ``V``)."""
    x = _checked_input(input_chw)
    geometry = winograd_geometry(x.shape, (1, x.shape[0], 3, 3), padding)
    for rows in tile_row_bands(geometry, rows_per_band):
        yield rows, _tile_major(_input_tiles16(x, geometry, rows))


def _tile_major(v16: np.ndarray) -> NDArray[np.float64]:
    """``(16, C, rows, cols)`` -> ``(C, rows, cols, 4, 4)`` (a view)."""
    return np.moveaxis(v16.reshape(4, 4, *v16.shape[1:]), (0, 1), (-2, -1))


def inverse_transform(m: np.ndarray) -> NDArray[np.float64]:
    """``Y = A^T M A`` of every ``(..., 4, 4)`` accumulated tile ``M``: ``(..., 2, 2)`` float64."""
    return np.asarray(A_T @ np.asarray(m, dtype=np.float64) @ A_T.T)


def _checked_operands(
    input_chw: np.ndarray, weights_kcrs: np.ndarray, padding: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], WinogradGeometry]:
    x = _checked_input(input_chw)
    u16 = _transform_weights16(weights_kcrs)
    return x, u16, winograd_geometry(x.shape, np.shape(weights_kcrs), padding)


def winograd_output_bands(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    bias_k: np.ndarray | None,
    padding: int,
    rows_per_band: int | None = None,
) -> Iterator[tuple[int, NDArray[np.float64]]]:
    """The outputs, band by band: ``(first output row, (K, rows, Wout) float64)``, computed the Winograd way
    (``A^T [sum_c U * V] A``, cropped, plus the bias). No activation is applied."""
    x, u16, geometry = _checked_operands(input_chw, weights_kcrs, padding)
    bias = np.zeros(geometry.filters) if bias_k is None else finite_matrix(bias_k, "bias_k", 1)
    if bias.shape != (geometry.filters,):
        raise ValueError(f"bias_k has shape {bias.shape} for {geometry.filters} filters")
    for rows in tile_row_bands(geometry, rows_per_band):
        n_rows = rows.stop - rows.start
        v16 = _input_tiles16(x, geometry, rows).reshape(TILE_PRODUCTS, geometry.channels, -1)
        m = u16 @ v16  # (16, K, T): the elementwise products, summed over the channels
        y = _A_T_KRON @ m.reshape(TILE_PRODUCTS, -1)  # (4, K*T): A^T M A of every tile
        y = y.reshape(2, 2, geometry.filters, n_rows, geometry.tile_cols).transpose(2, 3, 0, 4, 1)
        y = y.reshape(geometry.filters, 2 * n_rows, 2 * geometry.tile_cols)
        first = 2 * rows.start
        y = y[:, : geometry.out_height - first, : geometry.out_width] + bias[:, None, None]
        yield first, y


def winograd_output(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    bias_k: np.ndarray | None,
    padding: int,
    rows_per_band: int | None = None,
) -> NDArray[np.float64]:
    """``(K, Hout, Wout)`` float64: the stride-1 3x3 convolution computed as F(2x2, 3x3) (cropped, plus the
    bias, no activation). Equal to direct convolution up to float64 rounding, whatever is skipped."""
    x = _checked_input(input_chw)
    geometry = winograd_geometry(x.shape, np.shape(weights_kcrs), padding)
    out = np.empty((geometry.filters, geometry.out_height, geometry.out_width))
    for first, band in winograd_output_bands(x, weights_kcrs, bias_k, padding, rows_per_band):
        out[:, first : first + band.shape[1]] = band
    return out


@dataclass(frozen=True)
class WinogradWork:
    """The work of every (filter, output tile) of a layer on a Winograd PE (rules in the module docstring).

    ``issued``: ``(K, tile_rows, tile_cols)`` int64, the elementwise MACs issued (multiplies = accumulates =
    reads of ``U`` = reads of ``V``). The other counts follow from it, the geometry and ``lanes``.
    """

    geometry: WinogradGeometry
    skip: str
    lanes: int
    issued: NDArray[np.int64]

    @property
    def multiplies(self) -> NDArray[np.int64]:
        """Elementwise multiplies performed: the issued products."""
        return self.issued

    @property
    def dense_issued(self) -> int:
        """Products of one (filter, tile) with nothing skipped: ``16 C``."""
        return TILE_PRODUCTS * self.geometry.channels

    @property
    def skipped(self) -> NDArray[np.int64]:
        """Products skipped (no cycle, no energy): ``16 C - issued``."""
        return self.dense_issued - self.issued

    @property
    def cycles(self) -> NDArray[np.int64]:
        """``max(1, ceil(issued / lanes))`` per (filter, tile)."""
        return np.maximum(-(-self.issued // self.lanes), 1)

    @property
    def total_multiplies(self) -> int:
        """All the layer's elementwise multiplies."""
        return int(self.issued.sum())

    @property
    def total_cycles(self) -> int:
        """Cycles of one lane group computing every (filter, tile) of the layer one after another."""
        return int(self.cycles.sum())

    @property
    def multiplies_per_output(self) -> float:
        """Multiplies per output of the layer (partial tiles' discarded outputs not counted as outputs)."""
        return self.total_multiplies / (self.geometry.filters * self.geometry.outputs)


def winograd_work(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    padding: int,
    *,
    skip: str = "none",
    lanes: int = 1,
    rows_per_band: int | None = None,
) -> WinogradWork:
    """Count the elementwise multiplies of every (filter, output tile) of a stride-1 3x3 convolution.

    ``input_chw``: ``(C, H, W)``; ``weights_kcrs``: ``(K, C, 3, 3)``; ``padding``: zeros on each side.
    ``skip``: one of :data:`SKIP_MODES`; ``lanes``: multipliers per PE lane group (int >= 1). Only
    ``"transformed_operands"`` reads the input (band by band); the other modes need its shape only.
    """
    if skip not in SKIP_MODES:
        raise ValueError(f"unknown skip mode {skip!r}; known: {', '.join(SKIP_MODES)}")
    if isinstance(lanes, bool) or not isinstance(lanes, int | np.integer) or lanes < 1:
        raise ValueError(f"lanes must be an int >= 1, got {lanes!r}")
    x, u16, geometry = _checked_operands(input_chw, weights_kcrs, padding)
    shape = (geometry.filters, geometry.tile_rows, geometry.tile_cols)
    if skip == "none":
        issued: NDArray[np.int64] = np.full(shape, TILE_PRODUCTS * geometry.channels, dtype=np.int64)
    elif skip == "transformed_weights":
        per_filter = np.count_nonzero(u16, axis=(0, 2)).astype(np.int64)
        issued = np.repeat(per_filter, geometry.tiles).reshape(shape)
    else:
        # Counts <= 16 C < 2**24 are exact in float32.
        nonzero_u16 = (u16 != 0).astype(np.float32)
        issued = np.empty(shape, dtype=np.int64)
        for rows in tile_row_bands(geometry, rows_per_band):
            v16 = (
                _input_tiles16(x, geometry, rows).reshape(TILE_PRODUCTS, geometry.channels, -1) != 0
            ).astype(np.float32)
            pairs = (nonzero_u16 @ v16).sum(axis=0, dtype=np.float64)  # (K, T)
            issued[:, rows] = pairs.astype(np.int64).reshape(geometry.filters, -1, geometry.tile_cols)
    return WinogradWork(geometry=geometry, skip=skip, lanes=int(lanes), issued=issued)
