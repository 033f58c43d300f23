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

**Cost.** Cycles and SRAM counts are closed forms; the ofmap buffer jumps from drain to drain over a
per-cycle write profile (one numpy array per layer); DRAM reads are a closed form when the operand's
distinct addresses fit the SRAM's epoch and one ordered numpy pass otherwise. Nothing loops per cycle or
per MAC.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from sparsesim.systolic.buffers import EpochReadCounter, read_epoch_capacity, simulate_write_buffer
from sparsesim.systolic.config import SystolicArrayConfig
from sparsesim.workload.topology import ConvShape

__all__ = ["FoldPlan", "SystolicLayerResult", "fold_plan", "simulate_systolic_layer"]


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


@dataclass(frozen=True)
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
        return asdict(self)


def fold_plan(config: SystolicArrayConfig, layer: ConvShape) -> FoldPlan:
    """The fold geometry of ``layer`` on ``config``'s array and dataflow."""
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    rows, cols = config.array_rows, config.array_cols
    sr, sc, t = {"ws": (k, n, m), "os": (m, n, k), "is": (k, m, n)}[config.dataflow]
    fill = rows if config.dataflow == "os" else 2 * rows  # os: SCALE-Sim 3.0.0's code (v3 issue 4)
    return FoldPlan(
        config.dataflow, sr, sc, t, math.ceil(sr / rows), math.ceil(sc / cols), fill + cols + t - 2
    )


def _fold_spans(total: int, width: int) -> list[tuple[int, int]]:
    return [(start, min(width, total - start)) for start in range(0, total, width)]


def ofmap_writes_per_cycle(config: SystolicArrayConfig, plan: FoldPlan) -> np.ndarray:
    """Outputs written to the ofmap SRAM in each stall-free cycle of the layer's schedule.

    In each fold the written values form a block of ``h`` cycles by ``w`` array columns, column ``c``
    delayed by ``c`` cycles (the skew of a systolic array), starting ``a`` cycles into the fold: per cycle
    that is the convolution of a length-``h`` and a length-``w`` box.
    """
    rows = config.array_rows
    profile = np.zeros((plan.folds, plan.fold_cycles), dtype=np.int64)
    fold = 0
    for _, cols_used in _fold_spans(plan.spatial_cols, config.array_cols):
        for _, rows_used in _fold_spans(plan.spatial_rows, rows):
            if plan.dataflow == "os":
                start, height = plan.temporal - 1 + rows - rows_used, rows_used
            else:
                start, height = 2 * rows - 1, plan.temporal
            box = np.convolve(np.ones(height, dtype=np.int64), np.ones(cols_used, dtype=np.int64))
            profile[fold, start : start + len(box)] = box
            fold += 1
    return profile.ravel()


def distinct_ifmap_addresses(layer: ConvShape) -> int:
    """Ifmap words the layer touches: covered rows x covered columns x channels."""

    def covered(size: int, kernel: int, outputs: int) -> int:
        mask = np.zeros(size, dtype=bool)
        for start in range(0, outputs * layer.stride, layer.stride):
            mask[start : start + kernel] = True
        return int(mask.sum())

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


@functools.lru_cache(maxsize=8)
def _block_order(kind: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i, j)`` of a ``height x width`` block's elements, in the order the array demands them.

    ``skewed``: lane ``j`` takes element ``(i, j)`` at cycle ``i + j`` (an operand streaming through the
    array); ``flipped``: the block is pushed in bottom row first, one row per cycle (a stationary
    operand's load). Within a cycle, lanes in order. Blocks repeat fold after fold, hence the cache.
    """
    i, j = np.indices((height, width), dtype=np.int32)  # int32: an operand matrix has < 2**31 words
    if kind == "skewed":
        order = np.argsort(((i + j) * width + j).ravel(), kind="stable")
        i, j = i.ravel()[order], j.ravel()[order]
    else:
        i, j = i[::-1].ravel(), j[::-1].ravel()
    i.flags.writeable = j.flags.writeable = False
    return i, j


def _dram_reads_in_order(config: SystolicArrayConfig, layer: ConvShape, plan: FoldPlan, operand: str) -> int:
    """DRAM reads of the ifmap or filter buffer, feeding its demand stream fold by fold.

    Ifmap words are gathered from the layer's ``M x K`` matrix of addresses (-1 past the input edge); a
    filter word's address is its index ``n * K + k`` in the filter matrix.
    """
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    if operand == "ifmap":
        words = config.ifmap_sram_bytes
        space = layer.ifmap_height * layer.ifmap_width * layer.channels
        matrix = ifmap_addresses(layer, np.arange(m)[:, None], np.arange(k)[None, :]).ravel()
    else:
        words, space, matrix = config.filter_sram_bytes, k * n, None
    counter = EpochReadCounter(read_epoch_capacity(words), space)
    for c0, cw in _fold_spans(plan.spatial_cols, config.array_cols):
        for r0, rh in _fold_spans(plan.spatial_rows, config.array_rows):
            if plan.dataflow == "ws":
                if operand == "ifmap":  # pixels stream in time, window positions across the rows
                    t, lane = _block_order("skewed", m, rh)
                    index = t * k + r0 + lane
                else:  # the (window positions x filters) block is loaded
                    i, j = _block_order("flipped", rh, cw)
                    index = (c0 + j) * k + r0 + i
            elif plan.dataflow == "os":
                if operand == "ifmap":  # window positions stream in time, pixels across the rows
                    t, lane = _block_order("skewed", k, rh)
                    index = (r0 + lane) * k + t
                else:  # window positions stream in time, filters across the columns
                    t, lane = _block_order("skewed", k, cw)
                    index = (c0 + lane) * k + t
            elif operand == "ifmap":  # is: the (window positions x pixels) block is loaded
                i, j = _block_order("flipped", rh, cw)
                index = (c0 + j) * k + r0 + i
            else:  # is: filters stream in time, window positions across the rows
                t, lane = _block_order("skewed", n, rh)
                index = t * k + r0 + lane
            if matrix is None:
                counter.feed(index)
            else:
                addresses = matrix[index]
                counter.feed(addresses[addresses >= 0])
    return counter.dram_reads


def simulate_systolic_layer(config: SystolicArrayConfig, layer: ConvShape) -> SystolicLayerResult:
    """Cycles, stalls and SRAM / DRAM traffic of one dense layer (see the module docstring)."""
    plan = fold_plan(config, layer)
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    rows, cols = config.array_rows, config.array_cols
    if plan.dataflow == "ws":
        ifmap_reads, filter_reads = m * k * plan.col_folds, k * n
        ofmap_writes = m * n * plan.row_folds
    elif plan.dataflow == "os":
        ifmap_reads, filter_reads = m * k * plan.col_folds, k * n * plan.row_folds
        ofmap_writes = m * n + plan.folds * (rows + cols)
    else:
        ifmap_reads, filter_reads = m * k, k * n * plan.col_folds
        ofmap_writes = m * n * plan.row_folds

    distinct = {"ifmap": distinct_ifmap_addresses(layer), "filter": k * n}
    sram_words = {"ifmap": config.ifmap_sram_bytes, "filter": config.filter_sram_bytes}
    dram_reads = {}
    for operand in ("ifmap", "filter"):
        capacity = read_epoch_capacity(sram_words[operand])
        if capacity == 0 or distinct[operand] < capacity:
            dram_reads[operand] = distinct[operand]
        else:
            dram_reads[operand] = _dram_reads_in_order(config, layer, plan, operand)

    writes = ofmap_writes_per_cycle(config, plan)
    stall, ofmap_dram_writes = simulate_write_buffer(writes, config.ofmap_sram_bytes, cols)
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
