"""A dense systolic array, layer by layer, in closed form: SCALE-Sim 3.0.0's model, reproduced exactly.

**What is modelled.** An ``R x C`` array of MAC units fed by three SRAMs (ifmap, filter, ofmap), running
one convolution as the matrix product ``ofmap[M, N] = ifmap_windows[M, K] @ filters[K, N]``
(:class:`~sparsesim.workload.topology.ConvShape`). A dataflow pins one operand in the PEs and streams the
other through, store-and-forward, one hop per cycle:

============  ==========================  ==========================  ======================
dataflow      spatial rows ``Sr``         spatial columns ``Sc``      temporal ``T``
============  ==========================  ==========================  ======================
``ws``        window ``K``                filters ``N``               ofmap pixels ``M``
``os``        ofmap pixels ``M``          filters ``N``               window ``K``
``is``        window ``K``                ofmap pixels ``M``          filters ``N``
============  ==========================  ==========================  ======================

The work is cut into ``ceil(Sr / R) * ceil(Sc / C)`` folds, run one after the other (column folds outer,
row folds inner). A fold takes ``2R + C + T - 2`` cycles in ``ws`` and ``is`` (load the stationary
operand, fill, stream ``T``, drain) and ``R + C + T - 2`` in ``os``.

**Conventions (read before comparing with a paper).** These follow SCALE-Sim 3.0.0's code, not its papers,
so that the numbers are identical to what its users get:

* ``os`` fold fill. The SCALE-Sim paper's ``os`` fold is ``2R + C + T - 2``; 3.0.0's code omits the first
  ``R`` (scale-sim-v3 issue 4, acknowledged, not fixed in 3.0.0). We follow the code: ``R + C + T - 2``.
* Off by one. SCALE-Sim reports a layer's cycles as the index of the last cycle, one less than the number
  of cycles of its own schedule (SCALE-Sim issue 125: a 4x4 ``os`` example gives 9 where 10 are drawn).
  ``compute_cycles`` here is SCALE-Sim's value, ``folds * fold_cycles - 1``; ``schedule_cycles`` is the
  count, ``folds * fold_cycles``.
* ``os`` ofmap SRAM writes. 3.0.0 adds ``R + C`` per fold to its ofmap SRAM write count on top of the
  ``M * N`` outputs (a slip in its code); ``ofmap_sram_writes`` includes it to match, ``ofmap_values`` does
  not.

**Counts (what one action means).** ``*_sram_reads`` / ``ofmap_sram_writes``: words the array reads from /
writes to an SRAM (a word is one byte-wide operand; the padding lanes of a partial fold are not counted,
but a window position past the input edge is). ``*_dram_reads`` / ``ofmap_dram_writes``: words moved
between the SRAM and DRAM (:mod:`sparsesim.systolic.buffers`). ``stall_cycles``: cycles the array waits
for the ofmap SRAM to drain (reads never stall in CALC mode). ``total_cycles = compute_cycles +
stall_cycles`` is SCALE-Sim's "Total Cycles"; its "incl. prefetch" column depends on DRAM trace timing and
is not reproduced.

**Cost, and the work budget.** Cycles, SRAM counts and distinct addresses are closed forms. The ofmap
buffer jumps from drain to drain over the schedule's cumulative writes, which :class:`FoldedWriteProfile`
computes in closed form from the folds (a few integer operations per query, no per-cycle array). DRAM
reads are a closed form when the operand's distinct addresses fit the SRAM's epoch (and always for the
filters in ``ws``: each is demanded exactly once), and otherwise one ordered pass of numpy over the
operand's demand stream, generated in chunks of 65,536 addresses straight from the fold geometry
(:func:`demand_stream`). Memory is bounded by the SRAM sizes and fixed chunk sizes (see
:mod:`sparsesim.systolic.buffers`), never by the layer; nothing loops per cycle, per fold or per MAC.

Two costs still grow with the layer, and a run is refused before any layer runs
(:class:`~sparsesim.errors.SimulationError` naming the layer, its file and line) if, over all its layers
(each distinct shape counted once), they exceed a budget of a minute or two:

* the ordered DRAM-read passes may take at most :data:`MAX_ORDERED_WORK` = 2**31 address steps; an
  address streamed costs 1 step when the operand's address space is at most 2**24 words, 2 up to 2**26
  and 5 beyond (:func:`~sparsesim.systolic.buffers.read_cost_per_address`; measured at about 21, 11 and
  5 million addresses a second);
* the ofmap buffers may take at most :data:`MAX_WRITE_STEPS` = 2**24 steps (drains and waits, bounded
  before the run by :func:`~sparsesim.systolic.buffers.write_buffer_steps`; about 300,000 a second).

Real networks on real SRAMs stay below: on a 32x32 array with SCALE-Sim's default 64 KiB SRAMs, ResNet-18
takes at most 1/18 of the read budget and 1/4000 of the write budget, VGG16 (224x224) at most 0.7 and
1/500 of them. The error says which SRAM size would make a read count a closed form, or drain in fewer
steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sparsesim.errors import SimulationError
from sparsesim.systolic.buffers import (
    EpochReadCounter,
    read_cost_per_address,
    read_epoch_capacity,
    simulate_write_buffer,
    write_buffer_steps,
)
from sparsesim.systolic.config import MAX_SRAM_KIB, SystolicArrayConfig
from sparsesim.workload.topology import ConvShape

__all__ = [
    "MAX_ORDERED_WORK",
    "MAX_WRITE_STEPS",
    "FoldPlan",
    "FoldedWriteProfile",
    "LayerWork",
    "SystolicLayerResult",
    "fold_plan",
    "layer_work",
    "simulate_systolic_layer",
]

#: The most address steps the ordered DRAM-read counts of one run may take, all layers together (an
#: address streamed is 1 to 5 steps, :func:`~sparsesim.systolic.buffers.read_cost_per_address`).
MAX_ORDERED_WORK = 1 << 31
#: The most steps (drains and waits) the ofmap buffers of one run may take (all layers together).
MAX_WRITE_STEPS = 1 << 24
# Addresses generated at once by the demand stream (its memory: a few arrays of this many int64).
_CHUNK_WORDS = 1 << 16
# Block walks up to this many elements are computed once per layer and looked up (two int32 arrays: 2 MiB;
# at most four block shapes per layer).
_WALK_CACHE_WORDS = 1 << 18


@dataclass(frozen=True)
class FoldPlan:
    """How a layer is cut into folds on the array (see the module docstring's table)."""

    dataflow: str
    spatial_rows: int
    spatial_cols: int
    temporal: int
    row_folds: int
    col_folds: int
    fold_cycles: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds


@dataclass(frozen=True, slots=True)
class SystolicLayerResult:
    """One layer on one systolic array: SCALE-Sim's per-layer report, field for field."""

    layer: str
    dataflow: str
    folds: int
    fold_cycles: int
    schedule_cycles: int
    compute_cycles: int
    stall_cycles: int
    total_cycles: int
    macs: int
    ofmap_values: int
    utilization: float
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


def fold_plan(config: SystolicArrayConfig, layer: ConvShape) -> FoldPlan:
    """The fold geometry of ``layer`` on ``config``'s array and dataflow."""
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    rows, cols = config.array_rows, config.array_cols
    sr, sc, t = {"ws": (k, n, m), "os": (m, n, k), "is": (k, m, n)}[config.dataflow]
    fill = rows if config.dataflow == "os" else 2 * rows  # os: SCALE-Sim 3.0.0's code (v3 issue 4)
    return FoldPlan(config.dataflow, sr, sc, t, -(-sr // rows), -(-sc // cols), fill + cols + t - 2)


# -- A skewed block ------------------------------------------------------------------------------------
# An h x w block streamed skewed (lane j takes element (i, j) at cycle i + j) demands min(t + 1, h, w,
# h + w - 1 - t) elements at cycle t: a ramp up, a plateau, a ramp down. The same trapezoid is the number
# of outputs a fold writes per cycle (h cycles of outputs, w columns each one cycle later than the last).


def _skew_before(h: int, w: int, t: int) -> int:
    """Elements of a skewed ``h x w`` block demanded in cycles ``0 .. t - 1``."""
    a, b = min(h, w), max(h, w)
    if t <= 0:
        return 0
    if t >= h + w - 1:
        return h * w
    if t <= a - 1:
        return t * (t + 1) // 2
    if t <= b:
        return (a - 1) * a // 2 + (t - a + 1) * a
    rest = h + w - 1 - t
    return h * w - rest * (rest + 1) // 2


def _triangular_floor(x: np.ndarray) -> np.ndarray:
    """The largest ``t >= 0`` with ``t (t + 1) / 2 <= x``, elementwise (exact for ``x < 2**50``)."""
    t = ((np.sqrt(8.0 * x + 1.0) - 1.0) // 2).astype(np.int64)
    t += (t + 1) * (t + 2) // 2 <= x
    t -= t * (t + 1) // 2 > x
    return t


def _walk(order: str, h: int, w: int, element: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` of elements ``element`` (0-based, in demand order) of an ``h x w`` block walked in
    ``order``: "skewed" (cycle ``i + j`` by cycle, lanes ``j`` in order within a cycle) or "flipped" (rows
    from the last, each in order)."""
    if order == "flipped":
        return h - 1 - element // w, element % w
    a, b = min(h, w), max(h, w)
    ramp = (a - 1) * a // 2
    plateau_end = ramp + (b - a + 1) * a
    t = (a - 1) + (element - ramp) // a  # the plateau: a lanes per cycle
    before = ramp + (t - a + 1) * a
    rising = element < ramp
    if rising.any():
        t_rising = _triangular_floor(element[rising])
        t[rising], before[rising] = t_rising, t_rising * (t_rising + 1) // 2
    falling = element >= plateau_end
    if falling.any():
        left = h * w - element[falling]  # elements from this one's cycle on: the smallest n(n+1)/2 >= left
        rest = _triangular_floor(left)
        rest += rest * (rest + 1) // 2 < left
        t[falling], before[falling] = h + w - 1 - rest, h * w - rest * (rest + 1) // 2
    j = np.maximum(0, t - h + 1) + element - before
    return t - j, j


# -- The ofmap write profile ----------------------------------------------------------------------------


class FoldedWriteProfile:
    """The outputs a layer writes to the ofmap SRAM per stall-free cycle, in closed form from its folds.

    In each fold the written values form a block of ``h`` cycles by ``w`` array columns, column ``c``
    delayed by ``c`` cycles (the skew of a systolic array), starting ``a`` cycles into the fold: per cycle
    that is a trapezoid (the convolution of a length-``h`` and a length-``w`` box). Folds differ only in the
    columns used (the last column fold may be narrower) and, in ``os``, the rows used (the last row fold
    may be shorter), so cumulative writes and their inverse are a few integer operations on four fold
    shapes computed once: a :class:`~sparsesim.systolic.buffers.WriteProfile` that holds no per-cycle array.
    """

    def __init__(self, config: SystolicArrayConfig, plan: FoldPlan):
        rows, cols = config.array_rows, config.array_cols
        last_rows = plan.spatial_rows - rows * (plan.row_folds - 1)
        last_cols = plan.spatial_cols - cols * (plan.col_folds - 1)
        self._fold_cycles, self._row_folds, self._col_folds = plan.fold_cycles, plan.row_folds, plan.col_folds
        # (in the last row fold?, in the last column fold?) -> (start, h, w, min(h, w), ramp, plateau end)
        self._shapes = {}
        for last_row in (False, True):
            for last_col in (False, True):
                rows_used, cols_used = (last_rows if last_row else rows), (last_cols if last_col else cols)
                if plan.dataflow == "os":
                    start, h = plan.temporal - 1 + rows - rows_used, rows_used
                else:
                    start, h = 2 * rows - 1, plan.temporal
                a, b = min(h, cols_used), max(h, cols_used)
                ramp = (a - 1) * a // 2
                self._shapes[last_row, last_col] = (start, h, cols_used, a, ramp, ramp + (b - a + 1) * a)
        # Words of a fold that is not the last of its column fold, and of whole column folds.
        self._fold_words = {
            lc: self._shapes[False, lc][1] * self._shapes[False, lc][2] for lc in (False, True)
        }
        self._col_fold_words = {
            lc: (plan.row_folds - 1) * self._fold_words[lc]
            + self._shapes[True, lc][1] * self._shapes[True, lc][2]
            for lc in (False, True)
        }
        self.cycles = plan.folds * plan.fold_cycles
        self.total = self._col_fold_words[False] * (plan.col_folds - 1) + self._col_fold_words[True]

    def written_by(self, cycle: int) -> int:
        """Words written in cycles ``0 .. cycle - 1`` of the schedule."""
        if cycle >= self.cycles:
            return self.total
        if cycle <= 0:
            return 0
        fold, offset = divmod(cycle, self._fold_cycles)
        col_fold, row_fold = divmod(fold, self._row_folds)
        last_col = col_fold == self._col_folds - 1
        before = col_fold * self._col_fold_words[False] + row_fold * self._fold_words[last_col]
        start, h, w, _, _, _ = self._shapes[row_fold == self._row_folds - 1, last_col]
        return before + _skew_before(h, w, offset - start)

    def cycle_of(self, word: int) -> int:
        """The schedule cycle in which word ``word`` (0-based) is written; ``cycles`` past the end."""
        if word >= self.total:
            return self.cycles
        col_fold = 0
        if self._col_folds > 1:
            col_fold = min(word // self._col_fold_words[False], self._col_folds - 1)
            word -= col_fold * self._col_fold_words[False]
        last_col = col_fold == self._col_folds - 1
        row_fold = min(word // self._fold_words[last_col], self._row_folds - 1)
        word -= row_fold * self._fold_words[last_col]
        start, h, w, a, ramp, plateau_end = self._shapes[row_fold == self._row_folds - 1, last_col]
        # The cycle t of element ``word`` of the fold's trapezoid: on the rising ramp the largest t with
        # t (t + 1) / 2 <= word; on the plateau ``a`` per cycle; on the falling ramp, counted from the end.
        if word < ramp:
            t = (math.isqrt(8 * word + 1) - 1) // 2
        elif word < plateau_end:
            t = a - 1 + (word - ramp) // a
        else:
            left = h * w - word
            rest = (math.isqrt(8 * left + 1) - 1) // 2
            t = h + w - 1 - rest - (rest * (rest + 1) // 2 < left)
        return (col_fold * self._row_folds + row_fold) * self._fold_cycles + start + t


# -- Read buffers: distinct addresses and the demand stream --------------------------------------------


def distinct_ifmap_addresses(layer: ConvShape) -> int:
    """Ifmap words the layer touches: covered rows x covered columns x channels (closed form).

    Along one axis the windows start at ``0, s, 2s, ...``: with ``kernel >= stride`` they cover one
    interval from 0, otherwise they are disjoint and only the last may run past the edge.
    """

    def covered(size: int, kernel: int, outputs: int) -> int:
        last_start = (outputs - 1) * layer.stride
        if kernel >= layer.stride:
            return min(size, last_start + kernel)
        return (outputs - 1) * kernel + max(0, min(kernel, size - last_start))

    return (
        covered(layer.ifmap_height, layer.filter_height, layer.ofmap_height)
        * covered(layer.ifmap_width, layer.filter_width, layer.ofmap_width)
        * layer.channels
    )


def ifmap_addresses(layer: ConvShape, pixel: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Offset-free ifmap address of window ``position`` (0..K-1) of output ``pixel`` (0..M-1); -1 past
    the input edge. Layout: row-major pixels, channels innermost; window order (filter row, col, channel).
    """
    out_row, out_col = np.divmod(pixel, layer.ofmap_width)
    kernel_row, rest = np.divmod(position, layer.filter_width * layer.channels)
    kernel_col, channel = np.divmod(rest, layer.channels)
    row = out_row * layer.stride + kernel_row
    col = out_col * layer.stride + kernel_col
    inside = (row < layer.ifmap_height) & (col < layer.ifmap_width)
    return np.where(inside, (row * layer.ifmap_width + col) * layer.channels + channel, -1)


# How each buffer's demand stream walks a fold's block: (order, block height and width from the rows and
# columns the fold uses). "skewed": lane j takes element (i, j) at cycle i + j (an operand streaming
# through the array); "flipped": the block is pushed in bottom row first, one row per cycle (a stationary
# operand's load). Within a cycle, lanes in order.
_STREAMS = {
    ("ws", "ifmap"): "skewed",  # pixels i stream in time, window positions r0 + j across the rows
    ("ws", "filter"): "flipped",  # the (window positions r0 + i x filters c0 + j) block is loaded
    ("os", "ifmap"): "skewed",  # window positions i stream in time, pixels r0 + j across the rows
    ("os", "filter"): "skewed",  # window positions i stream in time, filters c0 + j across the columns
    ("is", "ifmap"): "flipped",  # the (window positions r0 + i x pixels c0 + j) block is loaded
    ("is", "filter"): "skewed",  # filters i stream in time, window positions r0 + j across the rows
}


def _block_shape(dataflow: str, operand: str, layer: ConvShape, rows_used, cols_used):
    """Height and width of a fold's block of the operand (ints or arrays)."""
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    if _STREAMS[dataflow, operand] == "flipped":
        return rows_used, cols_used
    if dataflow == "ws":
        return m, rows_used
    if dataflow == "is":
        return n, rows_used
    return k, rows_used if operand == "ifmap" else cols_used


def demand_stream_length(config: SystolicArrayConfig, layer: ConvShape, operand: str) -> int:
    """Words the ifmap or filter buffer is asked for over the layer (its SRAM reads)."""
    plan = fold_plan(config, layer)
    rows, cols = config.array_rows, config.array_cols
    last_rows = plan.spatial_rows - rows * (plan.row_folds - 1)
    last_cols = plan.spatial_cols - cols * (plan.col_folds - 1)

    def column_fold(cols_used: int) -> int:
        h, w = _block_shape(plan.dataflow, operand, layer, rows, cols_used)
        last_h, last_w = _block_shape(plan.dataflow, operand, layer, last_rows, cols_used)
        return (plan.row_folds - 1) * h * w + last_h * last_w

    return (plan.col_folds - 1) * column_fold(cols) + column_fold(last_cols)


def _flags(flags: np.ndarray) -> tuple[bool, ...]:
    """The values present in a boolean array."""
    first, last = bool(flags[0]), bool(flags[-1])
    return (first,) if first == last and (flags == first).all() else (False, True)


def demand_stream(config: SystolicArrayConfig, layer: ConvShape, operand: str) -> Iterator[np.ndarray]:
    """The offset-free addresses the ifmap or filter buffer is asked for, in demand order, in chunks of at
    most 65,536 (-1: a window position past the input edge; a filter word's address is ``n * K + k``).

    Folds run column fold outer, row fold inner; within a fold the block is walked in its order
    (``_STREAMS``). A stream position is mapped to its fold and its place in the fold's block by integer
    arithmetic, so a chunk may span many folds and nothing is held beyond it. Folds come in at most four
    block shapes (the last row or column fold may be smaller); the walk of each shape of up to 2**18
    elements is computed once and looked up, larger ones are computed chunk by chunk. Meant for layers
    within the work budget (:func:`layer_work`): their streams are shorter than 2**31 addresses, so every
    index fits a 64-bit integer.
    """
    plan = fold_plan(config, layer)
    rows, cols = config.array_rows, config.array_cols
    last_rows = plan.spatial_rows - rows * (plan.row_folds - 1)
    last_cols = plan.spatial_cols - cols * (plan.col_folds - 1)
    order = _STREAMS[plan.dataflow, operand]
    total = demand_stream_length(config, layer, operand)
    # Block shapes by (in the last row fold?, in the last column fold?).
    shapes = {
        (last_row, last_col): _block_shape(
            plan.dataflow, operand, layer, last_rows if last_row else rows, last_cols if last_col else cols
        )
        for last_row in (False, True)
        for last_col in (False, True)
    }
    walks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    fold_words = {key: h * w for key, (h, w) in shapes.items()}
    column_fold_words = (plan.row_folds - 1) * fold_words[False, False] + fold_words[True, False]
    for chunk_start in range(0, total, _CHUNK_WORDS):
        element = np.arange(chunk_start, min(total, chunk_start + _CHUNK_WORDS), dtype=np.int64)
        if plan.col_folds > 1:
            col_fold = np.minimum(element // column_fold_words, plan.col_folds - 1)
            element -= col_fold * column_fold_words
        else:
            col_fold = np.zeros_like(element)
        last_col = col_fold == plan.col_folds - 1
        if plan.row_folds > 1:
            full_fold_words = np.where(last_col, fold_words[False, True], fold_words[False, False])
            row_fold = np.minimum(element // full_fold_words, plan.row_folds - 1)
            element -= row_fold * full_fold_words
        else:
            row_fold = np.zeros_like(element)
        last_row = row_fold == plan.row_folds - 1

        def walk(h: int, w: int, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if h * w > _WALK_CACHE_WORDS:
                return _walk(order, h, w, part)
            if (h, w) not in walks:
                i, j = _walk(order, h, w, np.arange(h * w, dtype=np.int64))
                walks[h, w] = i.astype(np.int32), j.astype(np.int32)
            return walks[h, w][0][part], walks[h, w][1][part]

        row_flags, col_flags = _flags(last_row), _flags(last_col)
        if len(row_flags) == 1 and len(col_flags) == 1:  # the whole chunk in folds of one shape
            i, j = walk(*shapes[row_flags[0], col_flags[0]], element)
        else:
            i, j = np.empty_like(element), np.empty_like(element)
            for in_last_row in row_flags:
                for in_last_col in col_flags:
                    mask = (last_row == in_last_row) & (last_col == in_last_col)
                    i[mask], j[mask] = walk(*shapes[in_last_row, in_last_col], element[mask])
        r0, c0 = row_fold * rows, col_fold * cols
        if operand == "filter":
            if plan.dataflow == "ws":
                filters, window = c0 + j, r0 + i
            elif plan.dataflow == "os":
                filters, window = c0 + j, i
            else:
                filters, window = i, r0 + j
            yield filters * layer.window_size + window
        else:
            if plan.dataflow == "ws":
                pixel, window = i, r0 + j
            elif plan.dataflow == "os":
                pixel, window = r0 + j, i
            else:
                pixel, window = c0 + j, r0 + i
            yield ifmap_addresses(layer, pixel, window)


def _dram_reads_in_order(config: SystolicArrayConfig, layer: ConvShape, operand: str) -> int:
    """DRAM reads of the ifmap or filter buffer, fed its demand stream in order, chunk by chunk."""
    words = config.ifmap_sram_bytes if operand == "ifmap" else config.filter_sram_bytes
    counter = EpochReadCounter(read_epoch_capacity(words), _address_space(layer, operand))
    for addresses in demand_stream(config, layer, operand):
        counter.feed(addresses[addresses >= 0] if operand == "ifmap" else addresses)
    return counter.dram_reads


# -- Work budget ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerWork:
    """What simulating a layer costs beyond closed forms (see the module docstring's "Cost").

    ``ordered_reads``: per operand, the addresses its ordered DRAM-read count streams (0: a closed form);
    ``ordered_work``: the same weighted by the read counter's cost per address
    (:func:`~sparsesim.systolic.buffers.read_cost_per_address`); ``write_steps``: a bound on the ofmap
    buffer's steps; ``distinct``: per operand, the distinct words it reads.
    """

    ordered_reads: dict[str, int]
    ordered_work: int
    write_steps: int
    distinct: dict[str, int]


def _sram_counts(plan: FoldPlan, layer: ConvShape, rows: int, cols: int) -> tuple[int, int, int]:
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    if plan.dataflow == "ws":
        return m * k * plan.col_folds, k * n, m * n * plan.row_folds
    if plan.dataflow == "os":
        return m * k * plan.col_folds, k * n * plan.row_folds, m * n + plan.folds * (rows + cols)
    return m * k, k * n * plan.col_folds, m * n * plan.row_folds


def _address_space(layer: ConvShape, operand: str) -> int:
    if operand == "ifmap":
        return layer.ifmap_height * layer.ifmap_width * layer.channels
    return layer.window_size * layer.num_filters


def layer_work(config: SystolicArrayConfig, layer: ConvShape) -> LayerWork:
    """The work of simulating ``layer`` on ``config`` that grows with the layer (closed forms only)."""
    plan = fold_plan(config, layer)
    ifmap_reads, filter_reads, _ = _sram_counts(plan, layer, config.array_rows, config.array_cols)
    sram_reads = {"ifmap": ifmap_reads, "filter": filter_reads}
    distinct = {"ifmap": distinct_ifmap_addresses(layer), "filter": layer.window_size * layer.num_filters}
    words = {"ifmap": config.ifmap_sram_bytes, "filter": config.filter_sram_bytes}
    ordered, weighted = {}, 0
    for operand in ("ifmap", "filter"):
        capacity = read_epoch_capacity(words[operand])
        fits = capacity == 0 or distinct[operand] < capacity
        once = operand == "filter" and plan.dataflow == "ws"  # each filter word demanded exactly once
        ordered[operand] = 0 if fits or once else sram_reads[operand]
        weighted += ordered[operand] * read_cost_per_address(capacity, _address_space(layer, operand))
    writes = layer.ofmap_pixels * layer.num_filters * (1 if plan.dataflow == "os" else plan.row_folds)
    steps = write_buffer_steps(writes, config.ofmap_sram_bytes, config.array_cols)
    return LayerWork(ordered, weighted, steps, distinct)


_SRAM_KEYS = {"ifmap": "IfmapSramSzkB", "filter": "FilterSramSzkB"}


def _sram_size(words: int) -> str:
    return f"{words // 1024:,} KiB" if words % 1024 == 0 else f"{words:,}-word"


def check_work(
    config: SystolicArrayConfig, layer: ConvShape, work: LayerWork, before: LayerWork | None = None
) -> None:
    """Refuse with :class:`SimulationError` if ``work`` (plus ``before``, the run's earlier layers) exceeds
    :data:`MAX_ORDERED_WORK` or :data:`MAX_WRITE_STEPS`; the message says why and what would fit."""
    over = ", with the run's earlier layers, over" if before is not None else ", over"
    if (before.ordered_work if before else 0) + work.ordered_work > MAX_ORDERED_WORK:
        operand = max(work.ordered_reads, key=lambda name: work.ordered_reads[name])
        distinct = work.distinct[operand]
        words = config.ifmap_sram_bytes if operand == "ifmap" else config.filter_sram_bytes
        need_kib = -(-100 * (distinct // 50 + 1) // 1024)  # the epoch must exceed the distinct words
        hint = (
            f"an {_SRAM_KEYS[operand]} of at least {need_kib:,} makes it a closed form"
            if need_kib <= MAX_SRAM_KIB
            else f"no SRAM of at most {MAX_SRAM_KIB:,} KiB holds it"
        )
        raise SimulationError(
            f"{layer.where}: its {distinct:,} distinct {operand} words overflow an epoch of the "
            f"{_sram_size(words)} {operand} SRAM, so its DRAM reads depend on the demand order; counting "
            f"them would stream {work.ordered_reads[operand]:,} addresses{over} the run's budget of about "
            f"two minutes ({MAX_ORDERED_WORK:,} address steps); {hint}"
        )
    if (before.write_steps if before else 0) + work.write_steps > MAX_WRITE_STEPS:
        raise SimulationError(
            f"{layer.where}: draining its outputs through the {_sram_size(config.ofmap_sram_bytes)} ofmap "
            f"SRAM may take {work.write_steps:,} steps{over} the run's budget of about a minute "
            f"({MAX_WRITE_STEPS:,} steps); a larger OfmapSramSzkB drains in fewer steps"
        )


# -- One layer -----------------------------------------------------------------------------------------


def simulate_systolic_layer(config: SystolicArrayConfig, layer: ConvShape) -> SystolicLayerResult:
    """Cycles, stalls and SRAM / DRAM traffic of one dense layer (see the module docstring).

    :class:`SimulationError` if its work exceeds the budgets (see "Cost" in the module docstring).
    """
    work = layer_work(config, layer)
    check_work(config, layer, work)
    return _simulate_layer(config, layer, work)


def _simulate_layer(config: SystolicArrayConfig, layer: ConvShape, work: LayerWork) -> SystolicLayerResult:
    plan = fold_plan(config, layer)
    m, n = layer.ofmap_pixels, layer.num_filters
    rows, cols = config.array_rows, config.array_cols
    ifmap_reads, filter_reads, ofmap_writes = _sram_counts(plan, layer, rows, cols)
    dram_reads = {
        operand: _dram_reads_in_order(config, layer, operand) if work.ordered_reads[operand] else distinct
        for operand, distinct in work.distinct.items()
    }
    profile = FoldedWriteProfile(config, plan)
    # The guard is twice the bound the budget was checked with: it only stops a runaway, never a real run.
    stall, ofmap_dram_writes = simulate_write_buffer(
        profile, config.ofmap_sram_bytes, cols, max_steps=2 * work.write_steps
    )
    schedule = plan.folds * plan.fold_cycles
    compute = schedule - 1
    return SystolicLayerResult(
        layer=layer.name,
        dataflow=plan.dataflow,
        folds=plan.folds,
        fold_cycles=plan.fold_cycles,
        schedule_cycles=schedule,
        compute_cycles=compute,
        stall_cycles=stall,
        total_cycles=compute + stall,
        macs=layer.macs,
        ofmap_values=m * n,
        utilization=layer.macs / ((compute + stall) * rows * cols),
        ifmap_sram_reads=ifmap_reads,
        filter_sram_reads=filter_reads,
        ofmap_sram_writes=ofmap_writes,
        ifmap_dram_reads=dram_reads["ifmap"],
        filter_dram_reads=dram_reads["filter"],
        ofmap_dram_writes=ofmap_dram_writes,
    )
