"""The mapper's search space, and the fast estimate that ranks it.

A candidate is a :class:`~sparsesim.mapping.loopnest.LayerMapping`. The space of a layer, for the
output-stationary dataflow (DaDianNao, Cnvlutin and the PEs built like them):

- the **PE tile** takes as many filters as the PE array has filter lanes (``columns x filter_lanes``) and as
  many channels as the weight scratchpads hold (the mechanism's channel granule respected): fewer would
  only leave lanes or scratchpad idle. Its output rows ``r`` are searched: ``ceil(P / n)`` for ``n`` = 1, 2,
  4, ... blocks, as long as the layer stays within :data:`MAX_PE_TILES` PE tiles (or :data:`ROW_STEPS`
  times the PE tiles of the coarsest rows that fit, if more), and further until some mapping fits;
- the **buffer tile** is ``g`` PE tiles along each dimension, ``g`` = ``ceil(n / m)`` of the ``n`` PE tiles
  for ``m`` = 1, 2, 4, ... (so the DRAM loops run ``m`` times), fitting the global buffer (twice,
  double-buffered, at the real sizes of the kept slices). Only the *maximal* ones are sized: a buffer tile
  inside one that fits is taken to fit (true of every format's sizes, which do not grow when a slice
  shrinks; it spares sizing the many small slices). When the weights stream through the buffer, every
  buffer tile that fits is in the space; when the buffer keeps them, only the maximal ones, to bound the
  space (the streaming variants have the smaller tiles). A smaller buffer tile can be better: a dimension
  the buffer tile holds whole can never be a DRAM loop, so no loop order can put it outside the others (a
  192 KiB buffer ran the 2:4 tensor core's conv2_2 12 % slower than a 96 KiB one, sending every row
  block's weights again, before smaller tiles were searched), and the best tile of a smaller buffer fits
  a larger one too (predictive SnaPEA's conv5_2 took 1,290,139 cycles with 256 KiB and 1,321,153 with
  512 KiB when only the maximal tiles and those cut to one PE tile along some dimensions were searched:
  the 256 KiB buffer's best, two filter halves per buffer tile, was neither at 512 KiB). With every tile
  that fits, the space of a larger buffer holds the space of a smaller one, for the same PE tiles;
- the **DRAM loop order**: every order of the dimensions the DRAM loops split (the others do not matter);
- what the **buffer keeps**: every tensor, or all but the weights or the inputs (they then stream through
  it, tile by tile), each with its own buffer tiles; the maximal tiles of a streaming variant that are
  the keep-all variant's are dropped (they move more and save nothing);
- inside the buffer tile, the PE tiles run filters, channels, rows (rows innermost: the PEs keep a tile's
  weights for every row block, and a partial sum comes back ``g_P`` tiles after it left, not at once).

The row-stationary dataflow (Eyeriss) has the same space for each of several PE tiles' filters x channels,
those the weight scratchpads hold (:func:`sparsesim.mapper.row_stationary_tiles`).

The planar dataflow (SCNN) takes every filter and channel in a PE tile (a band of rows): the mapper gives it
the coarsest bands that fit (``max_pe_tiles=1, row_steps=1``) and searches the bands per buffer tile, with
the weights streaming.

:func:`words_moved` rates a candidate from its loop bounds alone, the way Timeloop counts accesses: the
words each port moves, walked buffer tile by buffer tile with the reuse rules of
:mod:`sparsesim.mapping.loopnest`, each tensor's scaled by its whole compression ratio in the port's format.
The mapper turns them into cycles over each port's bandwidth, against the PE array's busy cycles, to rank
the space; it does not bound it (a slice compresses unlike the whole, and the pipeline's bubbles are not
counted), so the best candidates are then simulated.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparsesim.mapping.loopnest import DIMS, LayerMapping, Loops, covering, dimension_sizes
from sparsesim.sparse.geometry import ConvGeometry

#: At most this many PE tiles per layer when the mapper splits output rows (a layer whose filter groups x
#: channel blocks are more than this keeps its coarsest rows that fit): each PE tile is a transaction of
#: the simulation.
MAX_PE_TILES = 64
#: ... or this many times the PE tiles of the coarsest rows that fit, if more (one more halving).
ROW_STEPS = 2
#: What the buffer may keep, most first; the tensors left out stream through it.
KEEPS = (
    frozenset({"Weights", "Inputs", "Outputs"}),
    frozenset({"Inputs", "Outputs"}),
    frozenset({"Weights", "Outputs"}),
)
#: The order of a buffer tile's PE tiles, outer to inner.
BUFFER_ORDER = "KCP"


def halvings(n: int) -> list[int]:
    """1, 2, 4, ... below ``n``, then ``n``: the numbers of blocks the mapper tries to cut ``n`` things in."""
    counts, m = [], 1
    while m < n:
        counts.append(m)
        m *= 2
    return [*counts, n]


def extents(size: int) -> list[int]:
    """The block extents of :func:`halvings`, largest first, without repeats."""
    return sorted({covering(size, m) for m in halvings(size)}, reverse=True)


def _orders(dram: dict[str, int], filters_first: bool = False) -> list[str]:
    """Every DRAM loop order that differs in effect: the unsplit dimensions outermost (in :data:`DIMS`'s
    order), then each permutation of the split ones (``filters_first``: those starting with K if it is
    split)."""
    unsplit = "".join(dim for dim in DIMS if dram[dim] == 1)
    split = [dim for dim in DIMS if dram[dim] > 1]
    orders = itertools.permutations(split)
    return [
        unsplit + "".join(order)
        for order in orders
        if not filters_first or "K" not in split or order[0] == "K"
    ]


def candidates(
    geometry: ConvGeometry,
    pe_tile: tuple[int, int, int | None],
    fits: Callable[[LayerMapping], bool],
    keeps_options: tuple[frozenset[str], ...] = KEEPS,
    pe_keeps: frozenset[str] = frozenset({"Weights"}),
    max_pe_tiles: int = MAX_PE_TILES,
    groups_in_turn: bool = False,
    row_steps: int = ROW_STEPS,
    dataflow: str = "output_stationary",
    every_tile: bool = True,
) -> list[LayerMapping]:
    """The space described in the module docstring, in a fixed order. ``pe_tile``: the PE tile's filters
    and channels, and its rows (None: searched). ``fits(mapping)``: whether its buffer tiles fit.
    ``groups_in_turn``: only mappings whose filter groups run in turn (:func:`filter_groups_in_turn`).
    ``every_tile``: every buffer tile that fits where the weights stream through the buffer, not only the
    maximal ones (not for weights the machine keeps on chip)."""
    sizes = dimension_sizes(geometry)
    k_pe, c_pe, p_pe = pe_tile
    found: list[LayerMapping] = []
    rows_options = extents(sizes["P"]) if p_pe is None else [p_pe]
    fewest = 0  # the PE tiles of the coarsest rows that fit
    for rows in rows_options:
        pe = {"K": k_pe, "C": c_pe, "P": rows}
        blocks = {dim: covering(sizes[dim], pe[dim]) for dim in DIMS}
        n_tiles = blocks["K"] * blocks["C"] * blocks["P"]
        if found and n_tiles > max(max_pe_tiles, row_steps * fewest):
            break
        steps = {dim: extents(blocks[dim]) for dim in DIMS}  # PE tiles per buffer tile, largest first
        kept_before: list[tuple] = []
        for keeps in keeps_options:
            if not fits(_mapping(pe, blocks, (1, 1, 1), "KCP", keeps, pe_keeps, dataflow)):
                continue  # not even one PE tile per buffer tile fits
            # Fitting depends on the buffer tile's extents, not on the order. In decreasing order, a tile
            # inside one that fits is taken to fit too (it is not even sized) and is not maximal.
            maximal: list[tuple[int, int, int]] = []
            inside: list[tuple[int, int, int]] = []
            for k, c, p in itertools.product(*(steps[dim] for dim in DIMS)):
                g = (k, c, p)
                if groups_in_turn and g[0] > 1 and (g[1], g[2]) != (steps["C"][0], steps["P"][0]):
                    continue  # several filter groups, and the DRAM loops split more than the filters
                if any(all(a <= b for a, b in zip(g, m, strict=True)) for m in maximal):
                    inside.append(g)
                elif fits(_mapping(pe, blocks, g, "KCP", keeps, pe_keeps, dataflow)):
                    maximal.append(g)
            # The same maximal tiles as a variant that keeps more: streaming moves more and saves nothing.
            chosen = [] if maximal and maximal == kept_before else maximal
            kept_before = maximal or kept_before
            if every_tile and "Weights" not in keeps:
                chosen = chosen + inside
            for g in chosen:
                dram = {dim: covering(blocks[dim], g[i]) for i, dim in enumerate(DIMS)}
                orders = _orders(dram, filters_first=groups_in_turn)
                found.extend(_mapping(pe, blocks, g, order, keeps, pe_keeps, dataflow) for order in orders)
        if found and not fewest:
            fewest = n_tiles
    return found


def filter_groups_in_turn(mapping: LayerMapping) -> bool:
    """Whether each filter group's PE tiles run one after the other: the filters are the outermost DRAM
    loop that splits the layer, and a buffer tile with several groups is the only one of its groups."""
    split = [dim for dim in mapping.dram.order if mapping.dram.factor(dim) > 1]
    if split and split[0] != "K":
        return False
    return mapping.global_buffer.factor("K") == 1 or split in ([], ["K"])


def _mapping(
    pe: dict[str, int],
    blocks: dict[str, int],
    g: tuple[int, int, int],
    order: str,
    keeps: frozenset[str],
    pe_keeps: frozenset[str],
    dataflow: str = "output_stationary",
) -> LayerMapping:
    """The mapping of PE tiles ``pe`` (extent per dimension), ``g`` of them per buffer tile."""
    k, c, p = (covering(blocks[dim], g[i]) for i, dim in enumerate(DIMS))
    return LayerMapping(
        dram=Loops((k, c, p), order=order),
        pe_tile=(pe["K"], pe["C"], pe["P"]),
        global_buffer=Loops(g, order=BUFFER_ORDER),
        buffer_keeps=keeps,
        pe_keeps=pe_keeps,
        dataflow=dataflow,
    )


_NONE = np.zeros(0, dtype=np.int64)
_NONE.setflags(write=False)


@dataclass(frozen=True)
class Words:
    """The words a candidate moves per port: its fast rating (see :func:`words_moved`)."""

    dram_read: int
    dram_write: int
    buffer_read: int  # out of the global buffer: to the PEs and to DRAM
    buffer_write: int  # into the global buffer: from DRAM and from the PEs
    noc: int  # both ways
    # PE tiles that continue the partial sums of a tile before them, as three arrays (the distance back in
    # PE tiles, the tiles, and the words of their sums; per buffer tile, its later channel blocks' and then
    # its first's): each waits for those sums to be written back and sent again, and the PEs idle meanwhile
    # unless the tiles between keep them busy.
    continuing: tuple[np.ndarray, np.ndarray, np.ndarray] = (_NONE, _NONE, _NONE)
    # Transactions: each PE tile is loaded, sent and returned once; some send partial sums back to the PEs,
    # and some write outputs or partial sums from the buffer to DRAM. (Each holds its ports for its latency.)
    tiles: int = 0
    psum_sends: int = 0
    drains: int = 0


#: Words per uncompressed word of the weights, inputs and outputs: all 1 counts uncompressed words.
UNCOMPRESSED = (1.0, 1.0, 1.0)


def words_moved(
    geometry: ConvGeometry,
    mapping: LayerMapping,
    kernel_words: int,
    dram_scale: tuple[float, float, float] = UNCOMPRESSED,
    buffer_scale: tuple[float, float, float] = UNCOMPRESSED,
) -> Words:
    """The words ``mapping`` moves per port, counted buffer tile by buffer tile with the reuse rules of
    :mod:`sparsesim.mapping.loopnest` (the order of :data:`BUFFER_ORDER` inside a buffer tile).

    ``dram_scale`` and ``buffer_scale``: the words a weight, input and finished output take in DRAM's and
    the buffer's formats per uncompressed word, the whole tensor's ratio (the mapper measures them on the
    real tensors; a slice's own ratio differs by its share of the format's metadata). Partial sums are
    uncompressed; so are the outputs the PEs return (the encoder is not modelled). The default counts
    uncompressed words, which is what :mod:`sparsesim.mapping.loopnest`'s tiles count.

    Vectorised over the buffer tiles (numpy), so that a candidate of thousands of them rates as fast as one
    of a few: the mapper rates every candidate of a layer's space."""
    sizes = dimension_sizes(geometry)
    width, out_width = geometry.width, geometry.out_width
    keeps = mapping.buffer_keeps
    pe = {dim: mapping.extent(dim) for dim in DIMS}
    # Each buffer tile's block index per dimension, in the DRAM loops' order (the last one innermost).
    grids = _grid(tuple(mapping.dram.factor(dim) for dim in mapping.dram.order))
    block = {dim: grids[i] for i, dim in enumerate(mapping.dram.order)}
    start, stop = {}, {}
    for dim in DIMS:
        extent = mapping.buffer_extent(dim)
        start[dim] = block[dim] * extent
        stop[dim] = np.minimum(sizes[dim], start[dim] + extent)

    unchanged = {d: block[d][1:] == block[d][:-1] for d in DIMS}  # from the buffer tile before

    def same_as_previous(a: str, b: str) -> np.ndarray:
        """Per buffer tile: whether the one before it covers the same ranges of dimensions ``a``, ``b``."""
        same = np.zeros(block["K"].shape, dtype=bool)
        np.logical_and(unchanged[a], unchanged[b], out=same[1:])
        return same

    same_kc, same_cp, same_kp = (
        same_as_previous("K", "C"),
        same_as_previous("C", "P"),
        same_as_previous("K", "P"),
    )
    after_kp = np.zeros(block["K"].shape, dtype=bool)  # the next tile holds the same outputs
    after_kp[:-1] = same_kp[1:]
    k, c = stop["K"] - start["K"], stop["C"] - start["C"]
    rows = stop["P"] - start["P"]
    pieces_k, pieces_c = -(-k // pe["K"]), -(-c // pe["C"])
    pieces_p = -(-rows // pe["P"])
    # Input rows each PE tile reads (halo included) and the rows of the whole buffer tile, per row block.
    halo_rows, union_rows = _row_counts(geometry, mapping.buffer_extent("P"), pe["P"])
    halo, union = halo_rows[block["P"]], union_rows[block["P"]]
    first_channels = start["C"] == 0
    weights = k * c * kernel_words
    # The PEs keep their weights while the rows run (innermost); they are sent again unless the previous
    # buffer tile ended with the same ones.
    sent_weights = np.where(same_kc & (pieces_k * pieces_c == 1), 0, weights)
    fetched_weights = np.where(same_kc, 0, weights) if "Weights" in keeps else sent_weights
    sent_inputs = halo * c * width * pieces_k
    fetched_inputs = np.where(same_cp, 0, union * c * width) if "Inputs" in keeps else sent_inputs
    outputs = k * rows * out_width
    psums_back = np.where(~first_channels & ~same_kp, outputs, 0)
    leaves = np.where(after_kp, 0, outputs)
    later_blocks = pieces_c - first_channels  # channel blocks that continue partial sums
    # Summed per tensor, then scaled by its compression (the counts are linear in the words).
    fetched_w, fetched_i, sent_w, sent_i = (
        int(a.sum()) for a in (fetched_weights, fetched_inputs, sent_weights, sent_inputs)
    )
    psums, psums_sent = int(psums_back.sum()), int((outputs * later_blocks).sum())
    returned = int((outputs * pieces_c).sum())
    finished = stop["C"] == sizes["C"]  # outputs leaving after the last channel block are finished
    leave_finished = int(leaves[finished].sum())
    leave_partial = int(leaves.sum()) - leave_finished
    (dram_w, dram_i, dram_o), (buffer_w, buffer_i, buffer_o) = dram_scale, buffer_scale
    sent = sent_w * buffer_w + sent_i * buffer_i + psums_sent
    # Rows are innermost: within a buffer tile, a tile continues the one its row blocks before it; the first
    # channel block of a buffer tile that continues the one before (same filters and rows) continues that
    # one's last channel block.
    within = pieces_k * (pieces_c - 1) * pieces_p
    across = np.where(~first_channels & same_kp, pieces_k * pieces_p, 0)
    continuing = (_NONE, _NONE, _NONE)
    if within.any() or across.any():
        per_tile = outputs // (pieces_k * pieces_p)
        continuing = (
            np.concatenate([pieces_p, pieces_k * pieces_c * pieces_p - (pieces_c - 1) * pieces_p]),
            np.concatenate([within, across]),
            np.concatenate([within * per_tile, across * per_tile]),
        )
    return Words(
        dram_read=round(fetched_w * dram_w + fetched_i * dram_i + psums),
        dram_write=round(leave_finished * dram_o + leave_partial),
        buffer_read=round(sent + leave_finished * buffer_o + leave_partial),
        buffer_write=round(fetched_w * buffer_w + fetched_i * buffer_i + psums + returned),
        noc=round(sent + returned),
        continuing=continuing,
        tiles=int((pieces_k * pieces_c * pieces_p).sum()),
        psum_sends=int((pieces_k * pieces_p * later_blocks).sum()),
        drains=int(np.where(leaves > 0, pieces_k * pieces_p, 0).sum()),
    )


@functools.lru_cache(maxsize=1024)
def _grid(factors: tuple[int, ...]) -> np.ndarray:
    """Each buffer tile's block index per DRAM loop (``(loops, tiles)``, the last loop innermost); shared."""
    grid = np.indices(factors).reshape(len(factors), -1)
    grid.setflags(write=False)
    return grid


@functools.lru_cache(maxsize=4096)
def _row_counts(geometry: ConvGeometry, extent: int, pe_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block of ``extent`` output rows: the input rows its PE tiles of ``pe_rows`` read (halos
    counted once per PE tile), and the rows the block reads (each once)."""
    halo, union = [], []
    for p0 in range(0, geometry.out_height, extent):
        p1 = min(geometry.out_height, p0 + extent)
        spans = [geometry.input_rows(p, min(p1, p + pe_rows)) for p in range(p0, p1, pe_rows)]
        halo.append(sum(stop - start for start, stop in spans))
        covered = count = 0  # spans are in increasing order: count each row once
        for start, stop in spans:
            count += max(0, stop - max(start, covered))
            covered = max(covered, stop)
        union.append(count)
    return np.array(halo, dtype=np.int64), np.array(union, dtype=np.int64)
