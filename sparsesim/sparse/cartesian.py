"""SCNN's Cartesian product (Parashar et al., ISCA 2017, the PT-IS-CP-sparse dataflow): pure numpy.

The machine: a grid of ``rows x columns`` PEs, each with ``F x I`` multipliers (``F`` weights times ``I``
activations per cycle) whose products go through a crossbar to ``A`` accumulator banks.

**Planar tiling.** A *band* of output rows ``[band_start, band_stop)`` (the whole output plane when it fits
on chip) is split over the PE grid: its rows into ``rows`` nearly equal parts, the output columns into
``columns`` parts (:func:`split_bounds`). PE ``(i, j)`` owns the outputs of part ``i`` x part ``j``, its
*output tile*, and holds the input activations whose *home output* lies in it, all input channels: input
row ``y`` is at home on output row ``clip((y + padding - (R - 1) // 2) // stride, band_start, band_stop - 1)``
(the output centred on it: output row ``y`` itself for a 'same' convolution of stride 1), input column ``x``
likewise on output column ``clip((x + padding - (S - 1) // 2) // stride, 0, out_width - 1)``. The band holds
the input rows its outputs need (:meth:`~sparsesim.sparse.geometry.ConvGeometry.input_rows`), halo rows
included.

**Issue order.** For each output-channel group (``Kc`` filters, weights broadcast to every PE) and each input
channel ``c`` a PE issues

- its activations of channel ``c``, row-major (``y`` then ``x``), in vectors of ``I`` (the last one may be
  short); sparse: only the nonzero ones, dense: all of them;
- the group's weights of channel ``c``, ordered by kernel row ``r``, kernel column ``s``, then filter ``k``
  (filters fastest: a vector then usually holds ``F`` filters at one kernel position, whose products meet
  ``F`` different outputs), in vectors of ``F``; sparse: only the nonzero ones, dense: all of them;
- one *step* per pair (activation vector, weight vector), activation vectors outer (input stationary, weight
  vectors streamed from the weight FIFO): the step multiplies every weight of its weight vector by every
  activation of its activation vector, up to ``F x I`` products.

**Where a product goes.** Activation ``(y, x)`` times weight ``(k, r, s)`` belongs to output
``(k, (y + padding - r) / stride, (x + padding - s) / stride)``. It is *kept* when both divisions are exact
and the output lies in the band (hence in the layer); otherwise it is *wasted*: the multiply was done, the
product is dropped (outputs beyond the layer's edges, outputs of another band, the wrong phase of a strided
convolution). A kept product whose output another PE owns is a *halo* product: it is accumulated locally and
the PE's halo partial sums are sent to their owners once the group is done.

**Accumulator banks.** A kept product of output ``(k, y, x)`` goes to the bank of its accumulator address:
``(k + F * (x' + W_r * y')) mod A`` (:func:`bank_of`), where ``(y', x')`` are the output's coordinates inside
the PE's accumulator region (see below) and ``W_r`` is the region's width. The banks interleave filters
first (the F filters of a weight vector meet F consecutive banks), then the region's outputs row-major, F
banks apart (consecutive activations of the PE's tile, hence their products with one weight, meet
different banks). The paper does not give its hash; this one is ours. A bank takes one product per cycle;
products of the same output meet in the same bank and serialise too. Two arbitrations (``ARBITRATIONS``):

- ``stall`` (the default): the crossbar has no queues, so a step whose busiest bank receives ``n``
  products takes ``max(1, n)`` cycles, ``max(0, n - 1)`` of them *conflict stalls* during which the whole
  multiplier array waits. A step with no kept product still takes its one cycle.
- ``queue``: each bank has an unbounded queue in front of it; the multipliers issue one step per cycle
  and never wait, and each bank's backlog evolves as ``W_t = max(0, W_{t-1} + n_t - 1)`` (``n_t``: its
  products of step ``t``, served from the cycle they arrive). The queues carry over from channel to
  channel; a PE is done with a group once its last step is issued and its banks have drained:
  ``steps + max_b W_b`` cycles. An optimistic bound (no queue is that deep in hardware).

**Accumulator capacity.** A PE's accumulators hold, per filter of the group, every output its products can
be kept on: its *accumulator region* (its input rows and columns widened by the kernel, inside the band and
the layer; its own tile plus a halo). ``Kc`` is the number of filters whose regions fit the banks
(:func:`output_channel_group`).

What a group costs in time is left to the caller (the PE array): the PEs synchronise at the end of a group,
then exchange halos. Everything is vectorised (:func:`group_work`): activations, and weights, that the rules
cannot tell apart share a class, a table of classes gives each product's bank, and blocks of product slots
(activation slot x weight slot x step) are formed by broadcasting, a chunk of steps at a time; the
cycle-stepped reference in the tests walks the same rules one cycle at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sparsesim.sparse.deltas import popcount
from sparsesim.sparse.geometry import ConvGeometry

#: Product slots handled at a time (a few temporaries of this many int32 / uint64 each).
_CHUNK_SLOTS = 1 << 18
#: Float64 temporaries of :func:`kept_sums` (kernel positions x filters x band input), at most (2 MiB: no
#: slower than larger ones, and the working set stays near the layer's operands).
_SUMS_VALUES = 1 << 18
#: Bytes of the table of activation classes x weight-vector classes x banks, at most.
_TABLE_BYTES = 1 << 24
#: How products that meet in an accumulator bank are arbitrated (see the module docstring).
ARBITRATIONS = ("stall", "queue")


@dataclass(frozen=True)
class PeGrid:
    """The Cartesian-product PE array: ``rows x columns`` PEs, each multiplying ``weights_per_vector`` (F)
    weights by ``activations_per_vector`` (I) activations per cycle into ``banks`` (A) accumulator banks."""

    rows: int
    columns: int
    weights_per_vector: int
    activations_per_vector: int
    banks: int

    def __post_init__(self) -> None:
        for name in ("rows", "columns", "weights_per_vector", "activations_per_vector", "banks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"PeGrid.{name} must be an int >= 1, got {value!r}")

    @property
    def pes(self) -> int:
        return self.rows * self.columns

    @property
    def multipliers(self) -> int:
        """Multipliers of the whole array."""
        return self.pes * self.weights_per_vector * self.activations_per_vector


def split_bounds(n: int, parts: int) -> NDArray[np.int64]:
    """``parts + 1`` non-decreasing bounds that split ``n`` items into parts differing by at most one."""
    return (np.arange(parts + 1, dtype=np.int64) * n) // parts


def _reach(first: int, last: int, kernel: int, shape: ConvGeometry) -> tuple[int, int]:
    """Output coordinates ``[lo, hi]`` that inputs ``[first, last]`` can reach (before clipping)."""
    lo = -((-(first + shape.padding - kernel + 1)) // shape.stride)  # ceil division
    hi = (last + shape.padding) // shape.stride
    return lo, hi


@dataclass(frozen=True)
class PlanarBand:
    """A band of output rows planar-tiled over a PE grid: who owns which outputs and holds which inputs.

    ``out_row_bounds`` ``(rows + 1,)`` and ``out_col_bounds`` ``(columns + 1,)``: the output tiles (layer
    coordinates). ``input_row_pe`` ``(H,)``: the PE row holding each input row (-1: not in the band);
    ``input_col_pe`` ``(W,)``: the PE column holding each input column. ``accumulator_rows`` /
    ``accumulator_cols``: per PE row / column, the output rows / columns of its accumulator region, which
    starts at output row ``accumulator_top`` / column ``accumulator_left``.
    ``own_rows`` / ``own_cols``: the same for its output tile inside that region.
    """

    shape: ConvGeometry
    grid: PeGrid
    band_start: int
    band_stop: int
    out_row_bounds: NDArray[np.int64]
    out_col_bounds: NDArray[np.int64]
    input_row_pe: NDArray[np.int64]
    input_col_pe: NDArray[np.int64]
    accumulator_rows: NDArray[np.int64]
    accumulator_cols: NDArray[np.int64]
    accumulator_top: NDArray[np.int64]
    accumulator_left: NDArray[np.int64]
    own_rows: NDArray[np.int64]
    own_cols: NDArray[np.int64]

    @property
    def accumulator_entries(self) -> NDArray[np.int64]:
        """``(PEs,)``: accumulators one filter needs in each PE (its region: own tile plus halo)."""
        return np.outer(self.accumulator_rows, self.accumulator_cols).ravel()

    @property
    def halo_entries(self) -> NDArray[np.int64]:
        """``(PEs,)``: per filter, the partial sums each PE holds for outputs other PEs own."""
        own = np.outer(self.own_rows, self.own_cols).ravel()
        return self.accumulator_entries - own

    @property
    def tile_shape(self) -> tuple[int, int]:
        """The largest output tile, ``(rows, columns)``."""
        return int(np.diff(self.out_row_bounds).max()), int(np.diff(self.out_col_bounds).max())


def plan_band(shape: ConvGeometry, grid: PeGrid, band_start: int, band_stop: int) -> PlanarBand:
    """Split output rows ``[band_start, band_stop)`` over ``grid`` (see the module docstring)."""
    if not 0 <= band_start < band_stop <= shape.out_height:
        raise ValueError(
            f"the band [{band_start}, {band_stop}) must be a non-empty range of the {shape.out_height} "
            "output rows"
        )
    row_bounds = band_start + split_bounds(band_stop - band_start, grid.rows)
    col_bounds = split_bounds(shape.out_width, grid.columns)

    def holders(n_inputs, kernel, lo, hi, bounds):
        home = (np.arange(n_inputs) + shape.padding - (kernel - 1) // 2) // shape.stride
        home = np.clip(home, lo, hi - 1)
        return np.searchsorted(bounds, home, side="right").astype(np.int64) - 1

    input_row_pe = holders(shape.height, shape.kernel_r, band_start, band_stop, row_bounds)
    first, stop = shape.input_rows(band_start, band_stop)
    input_row_pe[:first] = -1
    input_row_pe[stop:] = -1
    input_col_pe = holders(shape.width, shape.kernel_s, 0, shape.out_width, col_bounds)

    def region(pe_of_input, n_parts, kernel, lo, hi, bounds):
        """Per part: accumulator region size and start, and the own tile's size inside it."""
        sizes = np.zeros(n_parts, dtype=np.int64)
        starts = np.zeros(n_parts, dtype=np.int64)
        own = np.zeros(n_parts, dtype=np.int64)
        for part in range(n_parts):
            held = np.flatnonzero(pe_of_input == part)
            if held.size == 0:
                continue
            reach_lo, reach_hi = _reach(int(held[0]), int(held[-1]), kernel, shape)
            reach_lo, reach_hi = max(reach_lo, lo), min(reach_hi, hi - 1)
            sizes[part] = max(0, reach_hi - reach_lo + 1)
            starts[part] = reach_lo
            own_lo, own_hi = max(reach_lo, int(bounds[part])), min(reach_hi, int(bounds[part + 1]) - 1)
            own[part] = max(0, own_hi - own_lo + 1)
        return sizes, starts, own

    acc_rows, acc_top, own_rows = region(
        input_row_pe, grid.rows, shape.kernel_r, band_start, band_stop, row_bounds
    )
    acc_cols, acc_left, own_cols = region(
        input_col_pe, grid.columns, shape.kernel_s, 0, shape.out_width, col_bounds
    )
    return PlanarBand(
        shape=shape,
        grid=grid,
        band_start=band_start,
        band_stop=band_stop,
        out_row_bounds=row_bounds,
        out_col_bounds=col_bounds,
        input_row_pe=input_row_pe,
        input_col_pe=input_col_pe,
        accumulator_rows=acc_rows,
        accumulator_cols=acc_cols,
        accumulator_top=acc_top,
        accumulator_left=acc_left,
        own_rows=own_rows,
        own_cols=own_cols,
    )


def output_channel_group(bands: list[PlanarBand], accumulator_entries: int) -> int:
    """``Kc`` (>= 0): the filters whose accumulator regions fit ``accumulator_entries`` in every PE."""
    largest = max(int(band.accumulator_entries.max()) for band in bands)
    return accumulator_entries // largest if largest else accumulator_entries


def bank_of(k, y, x, region_width, grid: PeGrid):
    """The accumulator bank of output ``(k, y, x)``, ``(y, x)`` inside a PE's accumulator region of
    ``region_width`` columns (region coordinates; arrays broadcast)."""
    f = grid.weights_per_vector
    return (np.asarray(k) + f * (np.asarray(x) + np.asarray(region_width) * np.asarray(y))) % grid.banks


#: Coordinate of an empty slot of a short vector: far outside any layer, so its products are never kept.
_EMPTY_SLOT = 1 << 20


@dataclass(frozen=True)
class IssuedActivations:
    """The activations a band's PEs issue, all input channels, as vectors in issue order.

    Vectors are numbered channel by channel, PE by PE. Per vector: ``channel``, ``pe``, ``size`` (``<= I``)
    and, per slot, ``y`` and ``x`` (layer coordinates) and ``value``, ``(V, I)`` arrays whose empty slots
    hold ``_EMPTY_SLOT`` coordinates and value 0. ``channels``: C. ``classes``: the slots sorted into the
    classes the band's rules cannot tell apart, for :func:`group_work` (:func:`_activation_classes`).
    """

    channels: int
    channel: NDArray[np.int64]
    pe: NDArray[np.int64]
    size: NDArray[np.int64]
    y: NDArray[np.int32]
    x: NDArray[np.int32]
    value: NDArray[np.float64]
    classes: ActivationClasses

    @property
    def vectors(self) -> int:
        return len(self.channel)


def _vector_slots(group: NDArray[np.int64], n_groups: int, width: int):
    """Cut each group's run of items (``group`` sorted) into vectors of ``width``.

    Returns per item its vector and slot, and per vector its group and size.
    """
    counts = np.bincount(group, minlength=n_groups)
    vectors = -(-counts // width)
    group_first = np.cumsum(counts) - counts
    group_first_vector = np.cumsum(vectors) - vectors
    rank = np.arange(len(group), dtype=np.int64) - group_first[group]
    vector = group_first_vector[group] + rank // width
    n_vectors = int(vectors.sum())
    vector_group = np.repeat(np.arange(n_groups, dtype=np.int64), vectors)
    size = np.bincount(vector, minlength=n_vectors).astype(np.int64)
    return vector, rank % width, vector_group, size


def _slot_table(n_vectors: int, width: int, vector, slot, values, fill, dtype) -> np.ndarray:
    table = np.full(n_vectors * width, fill, dtype=dtype)
    table[vector * width + slot] = values
    return table.reshape(n_vectors, width)


def issue_activations(input_chw: np.ndarray, band: PlanarBand, dense: bool) -> IssuedActivations:
    """The band's activations (the nonzero ones, or all when ``dense``) in issue order."""
    array = np.asarray(input_chw)
    if array.ndim != 3 or array.shape[1:] != (band.shape.height, band.shape.width):
        raise ValueError(
            f"input_chw must be (C, {band.shape.height}, {band.shape.width}), got shape {array.shape}"
        )
    first, stop = band.shape.input_rows(band.band_start, band.band_stop)
    rows = array[:, first:stop]
    if dense:
        channel, y, x = (axis.ravel() for axis in np.indices(rows.shape, dtype=np.int64))
    else:
        channel, y, x = (axis.astype(np.int64) for axis in np.nonzero(rows))
    value = rows[channel, y, x].astype(np.float64)
    if not np.isfinite(value).all():
        raise ValueError("input_chw must be finite; it holds NaN or infinite values")
    y = y + first
    pes = band.grid.pes
    group = channel * pes + band.input_row_pe[y] * band.grid.columns + band.input_col_pe[x]
    order = np.argsort(group, kind="stable")  # keeps row-major order inside each (channel, PE)
    y, x, value, group = y[order], x[order], value[order], group[order]
    width = band.grid.activations_per_vector
    vector, slot, vector_group, size = _vector_slots(group, array.shape[0] * pes, width)
    n_vectors = len(size)
    channel, pe = np.divmod(vector_group, pes)
    y_slots = _slot_table(n_vectors, width, vector, slot, y, -_EMPTY_SLOT, np.int32)
    x_slots = _slot_table(n_vectors, width, vector, slot, x, -_EMPTY_SLOT, np.int32)
    return IssuedActivations(
        channels=array.shape[0],
        channel=channel,
        pe=pe,
        size=size,
        y=y_slots,
        x=x_slots,
        value=_slot_table(n_vectors, width, vector, slot, value, 0.0, np.float64),
        classes=_activation_classes(band, array.shape[0], channel, pe, size, y_slots, x_slots),
    )


@dataclass(frozen=True)
class IssuedWeights:
    """A group's weights as vectors in issue order: channel by channel, kernel row, kernel column, filter.

    Per vector and slot: ``k`` (layer filter index), ``r``, ``s`` and ``value``, ``(NV, F)`` arrays whose
    empty slots hold ``_EMPTY_SLOT`` kernel coordinates and value 0. Per channel: ``vector_starts``
    (``C + 1`` offsets into the vectors) and ``counts`` (weights issued).
    """

    k: NDArray[np.int32]
    r: NDArray[np.int32]
    s: NDArray[np.int32]
    value: NDArray[np.float64]
    vector_starts: NDArray[np.int64]
    counts: NDArray[np.int64]

    @property
    def vectors_per_channel(self) -> NDArray[np.int64]:
        return np.diff(self.vector_starts)


def issue_weights(weights_kcrs: np.ndarray, first_filter: int, grid: PeGrid, dense: bool) -> IssuedWeights:
    """The weights of one group of filters ``(Kc, C, R, S)`` (the nonzero ones, or all when ``dense``);
    ``first_filter``: the layer index of the group's first filter."""
    array = np.asarray(weights_kcrs)
    if array.ndim != 4:
        raise ValueError(f"weights_kcrs must be (K, C, R, S), got shape {array.shape}")
    ordered = array.transpose(1, 2, 3, 0).ravel()  # (C, R, S, K): filters fastest
    where = np.arange(ordered.size) if dense else np.flatnonzero(ordered)
    value = ordered[where].astype(np.float64)
    channel, r, s, k = np.unravel_index(
        where, (array.shape[1], array.shape[2], array.shape[3], array.shape[0])
    )
    if not np.isfinite(value).all():
        raise ValueError("weights_kcrs must be finite; it holds NaN or infinite values")
    width = grid.weights_per_vector
    channels = array.shape[1]
    vector, slot, vector_channel, size = _vector_slots(channel, channels, width)
    n_vectors = len(size)  # vectors of up to F weights
    vector_starts = np.zeros(channels + 1, dtype=np.int64)
    vector_starts[1:] = np.cumsum(np.bincount(vector_channel, minlength=channels))
    return IssuedWeights(
        k=_slot_table(n_vectors, width, vector, slot, k + first_filter, 0, np.int32),
        r=_slot_table(n_vectors, width, vector, slot, r, _EMPTY_SLOT, np.int32),
        s=_slot_table(n_vectors, width, vector, slot, s, _EMPTY_SLOT, np.int32),
        value=_slot_table(n_vectors, width, vector, slot, value, 0.0, np.float64),
        vector_starts=vector_starts,
        counts=np.bincount(channel, minlength=channels).astype(np.int64),
    )


@dataclass(frozen=True)
class GroupWork:
    """What one output-channel group costs a band's PEs, over all input channels.

    Per PE (``(PEs,)`` int64): ``cycles`` (steps plus conflict stalls), ``steps`` (pairs of an activation
    vector and a weight vector). In total: ``products`` (multiplies done), ``kept_products`` (products
    accumulated: accumulator updates, crossbar transfers), ``halo_products`` (kept products of outputs other
    PEs own), ``activation_reads`` (each issued activation read once per channel of the group),
    ``weight_reads`` (each weight vector's weights read once per activation vector). ``sums``: the group's
    kept products summed per output, ``(Kc, band rows, out_width)`` float64, or ``None`` if not asked for.
    """

    cycles: NDArray[np.int64]
    steps: NDArray[np.int64]
    products: int
    kept_products: int
    halo_products: int
    activation_reads: int
    weight_reads: int
    sums: NDArray[np.float64] | None

    @property
    def conflict_stall_cycles(self) -> NDArray[np.int64]:
        """``(PEs,)``: cycles lost to bank conflicts."""
        return self.cycles - self.steps

    @property
    def wasted_products(self) -> int:
        return self.products - self.kept_products


def _padded_by_channel(weights: IssuedWeights, table: np.ndarray, fill) -> np.ndarray:
    """``(F, C, nwv_max)``: per slot, each channel's weight vectors (from a per-slot ``table``), padded
    with ``fill`` up to the channel with the most vectors."""
    per_channel = weights.vectors_per_channel
    widest = int(per_channel.max(initial=0))
    padded = np.full((table.shape[1], len(per_channel), widest), fill, dtype=table.dtype)
    channel = np.repeat(np.arange(len(per_channel)), per_channel)
    rank = np.arange(len(table)) - weights.vector_starts[channel]
    padded[:, channel, rank] = table.T
    return padded


def _destinations(band: PlanarBand, y, x, pe, k, r, s):
    """Where the products of activations ``(y, x)`` held by PE ``pe`` and weights ``(k, r, s)`` go (the rules
    of the module docstring; arrays broadcast): whether each is kept, whether it is kept on an output its PE
    owns, and its bank."""
    grid, shape = band.grid, band.shape
    out_y = np.asarray(y, dtype=np.int64) + shape.padding - r
    out_x = np.asarray(x, dtype=np.int64) + shape.padding - s
    phase = (out_y % shape.stride == 0) & (out_x % shape.stride == 0)
    out_y, out_x = out_y // shape.stride, out_x // shape.stride
    kept = phase & (band.band_start <= out_y) & (out_y < band.band_stop) & (0 <= out_x)
    kept &= out_x < shape.out_width
    pe_row, pe_col = np.divmod(pe, grid.columns)
    rows, cols = band.out_row_bounds, band.out_col_bounds
    own = kept & (rows[pe_row] <= out_y) & (out_y < rows[pe_row + 1])
    own &= (cols[pe_col] <= out_x) & (out_x < cols[pe_col + 1])
    # In layer coordinates: the region's origin only adds a constant per PE, which rotates every bank of the
    # PE alike and so changes no conflict.
    f = grid.weights_per_vector
    bank = (k + f * out_x + f * band.accumulator_cols[pe_col] * out_y) % grid.banks
    return kept, own, bank


def _compact(raw: NDArray[np.int64], size: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Number the distinct values of ``raw`` (in ``[0, size)``) ``0 .. n-1``: each item's number, and an
    item of each number."""
    if size > 4 * len(raw) + (1 << 16):  # a sparse range: sorting is cheaper than marking it
        _, example, code = np.unique(raw, return_index=True, return_inverse=True)
        return code.ravel(), example
    seen = np.zeros(size, dtype=bool)
    seen[raw] = True
    number = np.cumsum(seen) - 1
    code = number[raw]
    example = np.empty(int(seen.sum()), dtype=np.int64)
    example[code] = np.arange(len(raw))
    return code, example


@dataclass(frozen=True)
class ActivationClasses:
    """Issued activations sorted into classes that the rules cannot tell apart, whatever the weight.

    ``place``: per slot (``(V * I,)``, vector by vector), its class as to which of its products are kept and
    in which banks: its phase, its place against the band's and the layer's edges (the kernel offsets that
    land inside), its accumulator address ``F x' + W_r F y'`` modulo A and ``W_r F`` modulo A.
    ``place_at``: ``(y, x, pe)`` of one slot of each place class. ``reach_at``: the same for the classes as
    to which products are kept and which of those on outputs the slot's PE owns (its phase and its place
    against the edges and its PE's own tile); ``per_reach``: ``(C, reach classes)`` issued activations of
    each channel in each.
    """

    place: NDArray[np.int64]
    place_at: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]
    reach_at: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]
    per_reach: NDArray[np.int64]


def _activation_classes(band: PlanarBand, channels: int, channel, pe, size, y, x) -> ActivationClasses:
    """The classes of a band's issued activations (per vector ``channel``, ``pe``, ``size``; per slot ``y``,
    ``x``, ``(V, I)``)."""
    grid, shape = band.grid, band.shape
    stride = shape.stride
    offsets_y, offsets_x = -(-shape.kernel_r // stride), -(-shape.kernel_s // stride)
    y, x = y.astype(np.int64).ravel(), x.astype(np.int64).ravel()
    slot_pe = np.repeat(pe, grid.activations_per_vector)
    qy, py = np.divmod(y + shape.padding, stride)
    qx, px = np.divmod(x + shape.padding, stride)
    phase = py * stride + px

    def edge(q, lo, hi, n):
        """Where ``q`` stands against ``[lo, hi)``: the kernel offsets ``o`` in ``[0, n)`` with
        ``lo <= q - o < hi`` are those up to ``clip(q - lo)`` and above ``clip(q - hi)``; ``(n + 1) ** 2``
        cases."""
        return (np.clip(q - lo, -1, n - 1) + 1) * (n + 1) + np.clip(q - hi, -1, n - 1) + 1

    edges_y, edges_x = (offsets_y + 1) ** 2, (offsets_x + 1) ** 2
    inside = edge(qy, band.band_start, band.band_stop, offsets_y) * edges_x
    inside += edge(qx, 0, shape.out_width, offsets_x)
    pe_row, pe_col = np.divmod(slot_pe, grid.columns)
    rows, cols = band.out_row_bounds, band.out_col_bounds
    owned = edge(qy, rows[pe_row], rows[pe_row + 1], offsets_y) * edges_x
    owned += edge(qx, cols[pe_col], cols[pe_col + 1], offsets_x)
    reach, reach_examples = _compact(
        (inside * edges_y * edges_x + owned) * stride**2 + phase, (edges_y * edges_x) ** 2 * stride**2
    )
    f, banks = grid.weights_per_vector, grid.banks
    pitches, pitch = np.unique(f * band.accumulator_cols % banks, return_inverse=True)
    pitch = pitch.ravel()[pe_col]
    address = (f * qx + f * band.accumulator_cols[pe_col] * qy) % banks
    place, place_examples = _compact(
        ((address * len(pitches) + pitch) * edges_y * edges_x + inside) * stride**2 + phase,
        banks * len(pitches) * edges_y * edges_x * stride**2,
    )
    real = (np.arange(grid.activations_per_vector) < size[:, None]).ravel()
    n_reach = len(reach_examples)
    per_reach = np.bincount(
        np.repeat(channel, grid.activations_per_vector)[real] * n_reach + reach[real],
        minlength=channels * n_reach,
    ).reshape(channels, n_reach)
    return ActivationClasses(
        place=place,
        place_at=(y[place_examples], x[place_examples], slot_pe[place_examples]),
        reach_at=(y[reach_examples], x[reach_examples], slot_pe[reach_examples]),
        per_reach=per_reach,
    )


def _weight_classes(weights: IssuedWeights, shape: ConvGeometry, banks: int):
    """Weights that meet every activation alike (the same ``k mod A``, ``r`` and ``s``) share a class; the
    empty slots, and the padding vectors, form one more class. Returns each slot's class ``(NV, F)``, the
    padding's class and ``(k, r, s)`` of one slot of each class."""
    empty = banks * shape.kernel_r * shape.kernel_s
    issued = weights.r < _EMPTY_SLOT
    raw = ((weights.k % banks) * shape.kernel_r + weights.r) * shape.kernel_s + weights.s
    code, examples = _compact(np.append(np.where(issued, raw, empty), empty), empty + 1)
    at = tuple(
        np.append(table.ravel(), fill)[examples]
        for table, fill in ((weights.k, 0), (weights.r, _EMPTY_SLOT), (weights.s, _EMPTY_SLOT))
    )
    return code[:-1].reshape(raw.shape), code[-1], at


def _kept_and_halo(classes: ActivationClasses, weights: IssuedWeights, band: PlanarBand) -> tuple[int, int]:
    """The kept products, and those of them kept on outputs other PEs own. Neither depends on the vectors:
    per channel, the activations of each reach class times the weights at each kernel position."""
    shape = band.shape
    positions, channels = shape.kernel_r * shape.kernel_s, len(weights.counts)
    kernel_r, kernel_s = np.divmod(np.arange(positions), shape.kernel_s)
    reach_y, reach_x, reach_pe = (at[:, None] for at in classes.reach_at)
    kept, own, _ = _destinations(band, reach_y, reach_x, reach_pe, 0, kernel_r, kernel_s)
    issued = weights.r < _EMPTY_SLOT
    channel = np.repeat(np.arange(channels), weights.vectors_per_channel)
    channel = np.broadcast_to(channel[:, None], issued.shape)[issued]
    per_position = np.bincount(
        channel * positions + weights.r[issued] * shape.kernel_s + weights.s[issued],
        minlength=channels * positions,
    ).reshape(channels, positions)
    kept_total = int(((classes.per_reach @ kept.astype(np.int64)) * per_position).sum())
    own_total = int(((classes.per_reach @ own.astype(np.int64)) * per_position).sum())
    return kept_total, kept_total - own_total


def _row_classes(rows: NDArray[np.int64], base: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The distinct rows of ``rows`` (values in ``[0, base)``) and each row's number among them."""
    if base ** rows.shape[1] < 2**62:  # one integer per row: sorting them is much cheaper than sorting rows
        key = rows @ (base ** np.arange(rows.shape[1], dtype=np.int64))
        _, first, code = np.unique(key, return_index=True, return_inverse=True)
        return rows[first], code.ravel()
    distinct, code = np.unique(rows, axis=0, return_inverse=True)
    return distinct, code.ravel()


class _Steps:
    """A group's steps (each activation vector times each weight vector of its channel, ``widest`` per
    activation vector, padding included) and tables that give a step's bank conflicts from the place
    classes of its activation slots and its weight vector.

    A step is made of parts: the I activation slots times, when the tables stay small, the weight vector as a
    whole (weight vectors whose slots hold the same weight classes meet an activation alike: on dense weights
    a group has as many as vectors per channel), else each of its F weight slots. Per (place class, part
    class) the tables hold the products per bank (or, for weight slots, the bank: A where not kept) and a
    tally (:func:`_tallies`).
    """

    def __init__(self, activations: IssuedActivations, weights: IssuedWeights, band: PlanarBand):
        grid, shape = band.grid, band.shape
        self.activations, self.banks = activations, grid.banks
        i_width, f_width = grid.activations_per_vector, grid.weights_per_vector
        self.products_per_step = i_width * f_width
        slot_code, padding_code, weight_at = _weight_classes(weights, shape, grid.banks)
        n_weight_classes = len(weight_at[0])
        place_at = tuple(at[:, None] for at in activations.classes.place_at)
        kept, _, bank = _destinations(band, *place_at, *weight_at)  # (place classes, weight classes)
        vector_slots = np.vstack([slot_code.reshape(-1, f_width), np.full(f_width, padding_code)])
        vector_classes, vector_code = _row_classes(vector_slots, n_weight_classes)
        self.counter = np.min_scalar_type(self.products_per_step)  # products of a step in one bank
        self.per_bank = self.bank_table = None
        if len(kept) * len(vector_classes) * grid.banks * self.counter.itemsize <= _TABLE_BYTES:
            parts = vector_classes  # (part classes, F): the weight classes of each part
            part_code = _padded_by_channel(weights, vector_code[:-1, None], vector_code[-1])
            per_bank = np.zeros((*kept.shape, grid.banks + 1), dtype=self.counter)
            np.put_along_axis(per_bank, np.where(kept, bank, grid.banks)[..., None], 1, axis=2)
            per_bank = per_bank[:, parts, : grid.banks].sum(axis=2, dtype=self.counter)
            self.per_bank = per_bank.reshape(-1, grid.banks)
        else:
            parts = np.arange(n_weight_classes)[:, None]
            part_code = _padded_by_channel(weights, slot_code, padding_code)
            self.bank_table = np.where(kept, bank, grid.banks).ravel()
        index_type: type[np.signedinteger] = np.int32 if len(kept) * len(parts) < 2**31 else np.int64
        # (I, V) and (parts of a vector, C, widest): a step's look-ups are the sums of the two.
        place = activations.classes.place.reshape(-1, i_width).T * len(parts)
        self.place_index: NDArray[np.signedinteger] = place.astype(index_type)
        self.part_index: NDArray[np.signedinteger] = part_code.astype(index_type)
        self.widest = part_code.shape[2]
        self.tally, self.field = _tallies(kept, bank, self.products_per_step, grid.banks)
        if self.tally is not None:
            self.tally = self.tally[:, parts].sum(axis=2, dtype=np.uint64).ravel()
        per_chunk = max(1, _CHUNK_SLOTS // max(1, self.widest * self.products_per_step))
        n_vectors = activations.vectors if self.widest else 0  # no weight, no step
        #: Runs of activation vectors whose steps are taken at a time.
        self.chunks = [(v0, min(n_vectors, v0 + per_chunk)) for v0 in range(0, n_vectors, per_chunk)]

    def clashes(self, v0: int, v1: int) -> NDArray[np.int64]:
        """The steps (numbered ``vector * widest + rank``) of vectors ``[v0, v1)`` where products meet in a
        bank, found by their tallies; every step if there is no tally."""
        if self.tally is None:
            return np.arange(v0 * self.widest, v1 * self.widest)
        channel = self.activations.channel[v0:v1]
        index = self.place_index[:, None, v0:v1, None] + self.part_index[None, :, channel, :]
        total = np.add.reduce(self.tally.take(index).reshape(-1, (v1 - v0) * self.widest), axis=0)
        below = popcount(total & np.uint64((1 << self.field) - 1))
        return np.flatnonzero(below < (total >> np.uint64(self.field))) + v0 * self.widest

    def arrivals(self, steps: NDArray[np.int64]) -> np.ndarray:
        """``(steps, A)``: the products each step sends each bank."""
        vectors, rank = np.divmod(steps, self.widest)
        channel = self.activations.channel[vectors]
        index = self.place_index[:, None, vectors] + self.part_index[None, :, channel, rank]
        if self.per_bank is not None:
            rows = np.take(self.per_bank, index.reshape(-1, len(steps)), axis=0)
            return rows.sum(axis=0, dtype=self.counter)
        assert self.bank_table is not None  # built when the table of products per bank would be too large
        return _arrivals(self.bank_table, index.reshape(self.products_per_step, -1), self.banks).T


def _tallies(kept, bank, products_per_step: int, banks: int):
    """Per product (tables of classes), a word that sums to a step's bank conflicts: bit ``bank`` plus, if
    the product is kept, 1 in a count field from bit ``field`` up (0 if not kept). Summed over a step's
    products, the count field holds its kept products and the bits below its banks; two products that meet
    in a bank add a carry, so the bits below the field are fewer than the count exactly when products meet.
    Returns ``(tallies, field)``, tallies ``None`` when a step's sum could overflow 64 bits."""
    width = products_per_step.bit_length()
    field = banks + width  # the sum of a step's bank bits stays below 2 ** field
    if field + width > 64:
        return None, field
    words = (np.uint64(1) << bank.astype(np.uint64)) | np.uint64(1 << field)
    return np.where(kept, words, np.uint64(0)), field


def _arrivals(bank_table: np.ndarray, index: np.ndarray, banks: int) -> NDArray[np.int64]:
    """``(A, steps)``: the kept products each step sends each bank; ``index`` ``(slots, steps)`` into the
    flat ``bank_table`` (``A`` for a product that is not kept)."""
    n_steps = index.shape[1]
    key_type: type[np.signedinteger] = np.int32 if (banks + 1) * n_steps < 2**31 else np.int64
    key: NDArray[np.signedinteger] = bank_table.take(index).astype(key_type)
    key *= n_steps
    key += np.arange(n_steps, dtype=key.dtype)
    return np.bincount(key.ravel(), minlength=(banks + 1) * n_steps).reshape(banks + 1, n_steps)[:banks]


def _queue(backlog: NDArray[np.int64], arrivals: np.ndarray, vector_pe: np.ndarray, real: np.ndarray) -> None:
    """Advance every PE's bank queues (``backlog``, ``(PEs, A)``, in place) over a chunk of steps.

    ``arrivals`` ``(A, steps)``: products each step sends each bank; ``vector_pe``: the PE of each activation
    vector of the chunk (each owns ``steps / len(vector_pe)`` consecutive steps); ``real``: which steps exist
    (padding vectors do not). A PE's steps follow each other in chunk order. Per queue, with ``d = n - 1``
    and prefix sums ``S``, the backlog after the PE's steps is ``max(W0 + S_T, S_T - min_t S_t)``.
    """
    step_pe = np.repeat(vector_pe, arrivals.shape[1] // max(1, len(vector_pe)))
    order = np.flatnonzero(real)
    order = order[np.argsort(step_pe[order], kind="stable")]
    if not len(order):
        return
    pe = step_pe[order]
    starts = np.flatnonzero(np.r_[True, pe[1:] != pe[:-1]])
    prefix = np.cumsum(arrivals[:, order] - 1, axis=1)  # (A, steps of the chunk, PE by PE)
    ends = np.r_[starts[1:], len(order)] - 1
    before = np.where(starts > 0, prefix[:, starts - 1], 0)
    total = prefix[:, ends] - before
    lowest = np.minimum.reduceat(prefix, starts, axis=1) - before
    owners = pe[starts]
    backlog[owners] = np.maximum(backlog[owners] + total.T, (total - lowest).T)


def lay_back(weights: IssuedWeights, kernel: np.ndarray, first_filter: int) -> None:
    """Write the issued weights into ``kernel`` ``(filters, R, S, C)`` (in place), whose first filter is
    layer filter ``first_filter``."""
    issued = weights.r < _EMPTY_SLOT
    channel = np.repeat(np.arange(len(weights.counts)), weights.vectors_per_channel)
    channel = np.broadcast_to(channel[:, None], issued.shape)[issued]
    _, kernel_r, kernel_s, channels = kernel.shape
    where = ((weights.k[issued] - first_filter) * kernel_r + weights.r[issued]) * kernel_s + weights.s[issued]
    np.put(kernel, where * channels + channel, weights.value[issued])


def kept_sums(activations: IssuedActivations, kernel: np.ndarray, band: PlanarBand) -> NDArray[np.float64]:
    """``(filters, band rows, out_width)``: per output of the band, the sum of its kept products, for the
    issued weights laid back on ``kernel`` ``(filters, R, S, C)`` (:func:`lay_back`, zero elsewhere).

    A kept product is an issued activation times an issued weight of its channel whose output lies in the
    band; per kernel position ``(r, s)`` those are the products of the weights at ``(r, s)`` with the issued
    activations shifted onto their outputs. So the issued activations are laid back on the input plane (zero
    where nothing is issued: its products would be exact zeros), every kernel position's products are formed
    by matrix products (a few filters at a time, to bound the temporaries) and each is added on its outputs.
    The sums are associated in another order than the banks add them; float rounding aside, they are the
    same sums.
    """
    shape = band.shape
    pad, stride, channels = shape.padding, shape.stride, activations.channels
    n_filters = kernel.shape[0]
    # The input rows the band's outputs read, padded: padded row t is input row t + top - pad.
    top = band.band_start * stride
    rows = band.band_stop - band.band_start
    height = (rows - 1) * stride + shape.kernel_r
    plane = np.zeros((channels, height, shape.width + 2 * pad))
    slot = np.arange(activations.y.shape[1]) < activations.size[:, None]
    channel = np.broadcast_to(activations.channel[:, None], slot.shape)[slot]
    plane[channel, activations.y[slot] + pad - top, activations.x[slot] + pad] = activations.value[slot]
    sums = np.zeros((n_filters, rows, shape.out_width))
    per_filter = shape.kernel_r * shape.kernel_s * plane[0].size
    step = max(1, _SUMS_VALUES // per_filter)
    for first in range(0, n_filters, step):
        filters = slice(first, min(n_filters, first + step))
        # (Kc R S, C) @ (C, rows x padded width): every kernel position's products at every input position.
        products = kernel[filters].reshape(-1, channels) @ plane.reshape(channels, -1)
        products = products.reshape(-1, shape.kernel_r, shape.kernel_s, *plane.shape[1:])
        for r in range(shape.kernel_r):
            for s in range(shape.kernel_s):
                sums[filters] += products[
                    :,
                    r,
                    s,
                    r : r + (rows - 1) * stride + 1 : stride,
                    s : s + (shape.out_width - 1) * stride + 1 : stride,
                ]
    return sums


def group_work(
    activations: IssuedActivations,
    weights: IssuedWeights,
    band: PlanarBand,
    n_filters: int,
    first_filter: int,
    with_sums: bool = False,
    arbitration: str = "stall",
) -> GroupWork:
    """The work of one group of ``n_filters`` filters (layer indices from ``first_filter``) on a band.

    ``activations`` from :func:`issue_activations` on the band, ``weights`` from :func:`issue_weights` on
    the group. With ``with_sums`` also the kept products summed per output (the datapath's values,
    :func:`kept_sums`). ``arbitration``: one of ``ARBITRATIONS``.

    How: activations that no weight can tell apart (the same phase, place against the band's edges and
    accumulator address modulo A: :class:`ActivationClasses`) share a class, and so do weights of the same
    ``(k mod A, r, s)``; tables of classes, filled by the rules (:func:`_destinations`), give each step's
    products per bank with a few look-ups (:class:`_Steps`), a chunk of activation vectors at a time (each
    activation vector with every weight vector of its channel, padded to the channel with the most). With
    stalls, a step costs one cycle unless two of its products meet in a bank: those steps are found by
    their tallies (:func:`_tallies`), then their busiest bank counted. With queues, every step's arrivals
    advance the bank queues. The kept and halo products do not depend on the vectors: they are counted per
    channel, class and kernel position (:func:`_kept_and_halo`). Empty slots and padding vectors are never
    kept, and padding steps cost nothing.
    """
    grid = band.grid
    pes = grid.pes
    if len(weights.counts) != activations.channels:
        raise ValueError(
            f"the activations have {activations.channels} channels, the weights {len(weights.counts)}"
        )
    if activations.y.shape[1] != grid.activations_per_vector or weights.k.shape[1] != grid.weights_per_vector:
        raise ValueError("the activations and weights were issued for another PE grid")
    if arbitration not in ARBITRATIONS:
        raise ValueError(f"arbitration must be one of {', '.join(ARBITRATIONS)}, got {arbitration!r}")

    # Each activation is read once per channel and group, each weight of its channel once per activation
    # vector, and every activation is multiplied by every weight of its channel.
    weights_per_channel = weights.counts[activations.channel]
    steps_per_vector = weights.vectors_per_channel[activations.channel]
    steps = np.bincount(activations.pe, weights=steps_per_vector, minlength=pes).astype(np.int64)
    kept_products, halo_products = _kept_and_halo(activations.classes, weights, band)

    table = _Steps(activations, weights, band)
    widest = table.widest
    if arbitration == "queue":
        backlog = np.zeros((pes, grid.banks), dtype=np.int64)  # each PE's bank queues
        real_vector = np.arange(widest)[None, :] < weights.vectors_per_channel[:, None]  # (C, widest)
        for v0, v1 in table.chunks:
            arrivals = table.arrivals(np.arange(v0 * widest, v1 * widest)).T.astype(np.int64)
            real = real_vector[activations.channel[v0:v1]].ravel()
            _queue(backlog, arrivals, activations.pe[v0:v1], real)
        # One cycle per step, then the deepest queue drains.
        cycles = np.where(steps > 0, steps + backlog.max(axis=1), 0)
    else:
        # A step whose busiest bank gets n products stalls n - 1 cycles; under a tenth of VGG16's steps do.
        cycles = steps.copy()
        clashes = [table.clashes(v0, v1) for v0, v1 in table.chunks]
        clash = np.concatenate(clashes) if clashes else np.zeros(0, dtype=np.int64)
        batch = max(1, _CHUNK_SLOTS // table.products_per_step)
        for first in range(0, len(clash), batch):
            some = clash[first : first + batch]
            # Banks first: numpy's reduction along a short last axis is slow.
            busiest = np.ascontiguousarray(table.arrivals(some).T).max(axis=0)
            stalls = np.maximum(busiest.astype(np.int64) - 1, 0)
            cycles += np.bincount(activations.pe[some // widest], weights=stalls, minlength=pes).astype(
                np.int64
            )
    sums = None
    if with_sums:
        kernel = np.zeros((n_filters, band.shape.kernel_r, band.shape.kernel_s, activations.channels))
        lay_back(weights, kernel, first_filter)
        sums = kept_sums(activations, kernel, band)
    return GroupWork(
        cycles=cycles,
        steps=steps,
        products=int(activations.size @ weights_per_channel),
        kept_products=kept_products,
        halo_products=halo_products,
        activation_reads=int(activations.size.sum()),
        weight_reads=int(weights_per_channel.sum()),
        sums=sums,
    )
