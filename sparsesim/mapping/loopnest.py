"""A layer's mapping as a loop nest over the storage levels, and the tiles and reuse it makes.

Above the PE array, a convolution's loops over filters (``K``; Timeloop calls them ``M``), input channels
(``C``) and output rows (``P``) are tiled at two levels:

- ``dram`` loops: each iteration is one **buffer tile**, the slices of the tensors the global buffer holds;
- ``global_buffer`` loops: each iteration is one **PE tile**, the work the PE array takes at once;
- the PE tile's **extents**: the PE array's mechanism walks a PE tile in its own order and spreads it over
  its lanes as the mapping's dataflow says: output stationary (filters over columns x filter lanes,
  channels over activation lanes, output positions over rows), row stationary (filter rows over PE rows,
  output rows over columns: :mod:`sparsesim.sparse.row_stationary`) or planar (SCNN). Output columns
  (``Q``), the kernel (``R``, ``S``) and the batch (``N`` = 1) are always whole inside a PE tile.

Factors are loop bounds, as in Timeloop, except that the last block of a dimension may be partial
("imperfect factorisation": ``F`` blocks of extent ``E`` cover ``D`` when ``(F - 1) E < D <= F E``), so a
mapping can say "blocks of 37 rows" for 224 rows. Loop orders are written outer to inner here
(:class:`Loops.order`); Timeloop's ``permutation`` strings are inner to outer.

What moves, as Timeloop counts reuse:

- **global buffer**: a kept tensor's slice is fetched from DRAM when a PE tile first needs it in the current
  buffer tile, unless the previous buffer tile held the very same slice (it then stays: stationarity across
  the DRAM loops). Input rows already in the buffer (the halo shared by consecutive row blocks of the same
  buffer tile) are not fetched again. A tensor the buffer does not keep streams through it: every PE tile
  brings its own slice from DRAM and it leaves with the tile.
- **PEs**: a PE keeps the weights of its last tile (its weight scratchpad is sized for one tile's), so a PE
  tile sends weights only when they differ from the previous tile's; inputs are sent with every tile, and
  the partial sums of an output slice go back to the PEs for every channel block after the first (the
  input and partial-sum scratchpads hold a few words, not a tile).
- **partial sums**: an output slice stays in the buffer between the channel blocks that update it while the
  buffer tile (or the next, when it covers the same outputs) holds it; when it leaves the buffer before its
  last channel block, its partial sums spill to DRAM, uncompressed, and come back when the next channel
  block starts. Finished outputs are written to DRAM when they leave the buffer.

Pure: no numpy, no timing; :mod:`sparsesim.mapping.traffic` sizes the slices on the real data.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

from sparsesim.sparse.geometry import ConvGeometry

#: The dimensions tiled above the PE array, in the order factors are stored.
DIMS = ("K", "C", "P")
#: The tensors, in Timeloop's names, and the dimensions that index each.
TENSORS = ("Weights", "Inputs", "Outputs")
RELEVANT = {"Weights": ("K", "C"), "Inputs": ("C", "P"), "Outputs": ("K", "P")}


@dataclass(frozen=True)
class Loops:
    """One level's temporal loops: a factor per dimension of :data:`DIMS` and their order, outer to inner."""

    factors: tuple[int, int, int]
    order: str = "KPC"

    def __post_init__(self) -> None:
        if sorted(self.order) != sorted(DIMS):
            raise ValueError(f"a loop order must be a permutation of {''.join(DIMS)}, got {self.order!r}")
        if len(self.factors) != len(DIMS) or any(int(f) < 1 for f in self.factors):
            raise ValueError(f"loop factors must be {len(DIMS)} ints >= 1, got {self.factors!r}")

    def factor(self, dim: str) -> int:
        return self.factors[DIMS.index(dim)]


def _ones() -> Loops:
    return Loops((1, 1, 1))


@dataclass(frozen=True)
class LayerMapping:
    """A layer's mapping (see the module docstring): the DRAM and global-buffer loops, the PE tile's extents
    ``(K, C, P)``, the tensors the global buffer keeps (the others stream through it), those the PEs keep
    from one tile to the next (their weights, unless they are too large for the weight scratchpads and
    stream through the PEs, as SCNN's do), and the dataflow that spreads a PE tile over the PEs."""

    dram: Loops
    pe_tile: tuple[int, int, int]
    global_buffer: Loops = field(default_factory=_ones)
    buffer_keeps: frozenset[str] = frozenset(TENSORS)
    pe_keeps: frozenset[str] = frozenset({"Weights"})
    dataflow: str = "output_stationary"  # how the PE tile spreads over the PEs (``pe_array.dataflow``)

    def extent(self, dim: str) -> int:
        """A PE tile's extent along ``dim``."""
        return self.pe_tile[DIMS.index(dim)]

    def buffer_extent(self, dim: str) -> int:
        """A buffer tile's (nominal) extent along ``dim``: the global buffer's factor x the PE tile's."""
        return self.global_buffer.factor(dim) * self.extent(dim)

    def problems(self, geometry: ConvGeometry, names: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """What makes this mapping not cover ``geometry`` exactly once: ``(where, message)`` pairs, naming the
        dimensions as ``names`` says (Timeloop's files call the filters M)."""
        found = []
        for dim in DIMS:
            size = dimension_sizes(geometry)[dim]
            shown = (names or {}).get(dim, dim)
            pe, g, d = self.extent(dim), self.global_buffer.factor(dim), self.dram.factor(dim)
            if pe < 1:
                found.append((f"pe_array.{shown}", f"a PE tile's extent must be >= 1, got {pe}"))
                continue
            if pe > size:
                found.append((f"pe_array.{shown}", f"{pe} is more than the layer's {size}"))
            elif (g - 1) * pe >= size:
                found.append(
                    (
                        f"global_buffer.{shown}",
                        f"{g} blocks of {pe} leave at least one empty for {shown}={size}",
                    )
                )
            elif d * g * pe < size or (d - 1) * g * pe >= size:
                want = -(-size // (g * pe))
                found.append(
                    (
                        f"dram.{shown}",
                        f"{d} blocks of {g * pe} do not cover {shown}={size} exactly once: it takes {want}",
                    )
                )
        return found


def dimension_sizes(geometry: ConvGeometry) -> dict[str, int]:
    return {"K": geometry.filters, "C": geometry.channels, "P": geometry.out_height}


def covering(size: int, extent: int) -> int:
    """How many blocks of ``extent`` cover ``size``."""
    return -(-size // extent)


@dataclass(frozen=True)
class PeTileSlices:
    """Where one PE tile lies in the nest: its buffer tile and its ranges ``[start, stop)`` per dimension."""

    buffer_tile: int
    buffer_ranges: dict[str, tuple[int, int]]
    ranges: dict[str, tuple[int, int]]


def pe_tiles(geometry: ConvGeometry, mapping: LayerMapping) -> list[PeTileSlices]:
    """The PE tiles of ``mapping`` in execution order (DRAM loops outer, global-buffer loops inner)."""
    sizes = dimension_sizes(geometry)
    out: list[PeTileSlices] = []
    extent = {dim: mapping.extent(dim) for dim in DIMS}
    buffer_extent = {dim: mapping.buffer_extent(dim) for dim in DIMS}
    outer = [range(mapping.dram.factor(dim)) for dim in mapping.dram.order]
    inner_order = mapping.global_buffer.order
    for buffer_tile, outer_index in enumerate(itertools.product(*outer)):
        buffer_ranges = {}
        for dim, block in zip(mapping.dram.order, outer_index, strict=True):
            start = block * buffer_extent[dim]
            buffer_ranges[dim] = (start, min(sizes[dim], start + buffer_extent[dim]))
        # Each dimension's PE-tile ranges inside this buffer tile (the empty ones of a partial tile dropped).
        pieces = []
        for dim in inner_order:
            low, high = buffer_ranges[dim]
            starts = range(low, low + mapping.global_buffer.factor(dim) * extent[dim], extent[dim])
            pieces.append([(start, min(high, start + extent[dim])) for start in starts if start < high])
        for chosen in itertools.product(*pieces):
            ranges = dict(zip(inner_order, chosen, strict=True))
            out.append(PeTileSlices(buffer_tile, buffer_ranges, ranges))
    return out


def subtract_rows(needed: tuple[int, int], held: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of the row range ``needed`` that no range of ``held`` covers, in order."""
    parts = [needed] if needed[0] < needed[1] else []
    for low, high in held:
        parts = [
            piece
            for start, stop in parts
            for piece in ((start, min(stop, low)), (max(start, high), stop))
            if piece[0] < piece[1]
        ]
    return parts


@dataclass(frozen=True)
class Tile:
    """One PE tile: a filter range x an output-row range x a channel range, and what moves with it.

    Word counts are uncompressed (``word_bytes`` words); :mod:`sparsesim.mapping.traffic` sizes the same
    slices in each level's storage format on the real data.
    """

    index: int
    filter_start: int
    filter_stop: int
    out_row_start: int
    out_row_stop: int
    channel_start: int
    channel_stop: int
    is_first_channel_block: bool
    is_last_channel_block: bool
    weight_words: int  # weights fetched from DRAM into the buffer with this tile (0 when already there)
    input_words: int  # input activations fetched from DRAM with this tile (the rows of input_fetch_rows)
    psum_in_words: int  # partial sums sent back to the PEs (channel blocks after the first)
    out_words: int  # partial sums or outputs returned by the PEs to the global buffer
    dram_write_words: int  # finished outputs written to DRAM after this tile (they leave the buffer)
    buffer_tile: int = -1  # the buffer tile (iteration of the DRAM loops) the tile belongs to; -1: its own
    opens_buffer_tile: bool = True  # the first PE tile of its buffer tile
    closes_buffer_tile: bool = True  # the last PE tile of its buffer tile
    send_weights: bool | None = None  # weights sent to the PEs (None: when fetched, weight_words > 0)
    input_fetch_rows: tuple[tuple[int, int], ...] | None = None  # input rows fetched (None: all it uses)
    psum_source: int | None = None  # the tile whose partial sums this one continues (None: the previous)
    dram_psum_read_words: int = 0  # spilled partial sums read back from DRAM before this tile
    dram_psum_write_words: int = 0  # partial sums spilled to DRAM after this tile

    @property
    def sends_weights(self) -> bool:
        return self.weight_words > 0 if self.send_weights is None else self.send_weights

    @property
    def continues(self) -> int | None:
        """The tile whose partial sums this one needs first (None: the first channel block)."""
        if self.is_first_channel_block:
            return None
        return self.index - 1 if self.psum_source is None else self.psum_source


@dataclass(frozen=True)
class LayerTiling:
    """A layer's PE tiles in execution order, the PE tile's extents and the mapping that made them."""

    geometry: ConvGeometry
    filters_per_group: int
    channels_per_block: int
    out_rows_per_block: int
    tiles: tuple[Tile, ...]
    mapping: LayerMapping | None = None
    weights_resident: bool = False  # the PEs held the weights before the layer (no tile moves any)
    inputs_resident: bool = False  # the buffer held the input before the layer (no tile fetches any)
    outputs_stay: bool = False  # the outputs stay in the buffer after the layer (none leaves for DRAM)

    @property
    def n_filter_groups(self) -> int:
        return -(-self.geometry.filters // self.filters_per_group)

    @property
    def n_channel_blocks(self) -> int:
        return -(-self.geometry.channels // self.channels_per_block)

    @property
    def n_row_blocks(self) -> int:
        return -(-self.geometry.out_height // self.out_rows_per_block)


def tiles_of(
    geometry: ConvGeometry,
    mapping: LayerMapping,
    kernel_words: int | None = None,
    weights_resident: bool = False,
    inputs_resident: bool = False,
    outputs_stay: bool = False,
) -> LayerTiling:
    """The PE tiles of ``mapping`` and what each moves (see the module docstring for the reuse rules).

    ``kernel_words``: uncompressed words of one kernel in the buffer and DRAM (by default ``R x S``).
    ``weights_resident``: the PEs hold the layer's weights before it starts (see
    :mod:`sparsesim.mapping.residency`): no tile fetches or sends any. ``inputs_resident``: the global
    buffer holds the layer's whole input before it starts (the previous layer's output): no tile fetches
    any from DRAM. ``outputs_stay``: the layer's outputs stay in the buffer (as the next layer's input):
    none leaves for DRAM, and no partial sum spills.
    ``mapping`` must cover the layer (:meth:`LayerMapping.problems` empty).
    """
    kernel = kernel_words or geometry.kernel_positions
    keeps, pe_keeps = mapping.buffer_keeps, mapping.pe_keeps
    width, out_width, channels = geometry.width, geometry.out_width, geometry.channels
    input_rows = functools.lru_cache(maxsize=None)(geometry.input_rows)  # per row block, asked per tile
    slices = pe_tiles(geometry, mapping)
    # Per buffer tile: the ranges of the next one; per (buffer tile, output slice): its last PE tile.
    next_ranges: dict[int, dict[str, tuple[int, int]]] = {}
    last_update: dict[tuple[int, tuple], int] = {}
    for position, piece in enumerate(slices):
        if position and slices[position - 1].buffer_tile != piece.buffer_tile:
            next_ranges[slices[position - 1].buffer_tile] = piece.buffer_ranges
        last_update[(piece.buffer_tile, _outs(piece.ranges))] = position
    tiles: list[Tile] = []
    held_weights: set[tuple] = set()  # weight slices in the buffer
    held_rows: dict[tuple[int, int], list[tuple[int, int]]] = {}  # channel range -> input rows in the buffer
    held_outputs: set[tuple] = set()  # output slices in the buffer (partial sums or outputs)
    last_writer: dict[tuple, int] = {}  # output slice -> the last tile that updated it
    pe_weights = None  # the weight slice the PEs hold
    for position, piece in enumerate(slices):
        k0, k1 = piece.ranges["K"]
        c0, c1 = piece.ranges["C"]
        p0, p1 = piece.ranges["P"]
        opens = position == 0 or slices[position - 1].buffer_tile != piece.buffer_tile
        closes = position == len(slices) - 1 or slices[position + 1].buffer_tile != piece.buffer_tile
        if opens and position:
            previous = slices[position - 1].buffer_ranges
            # What the previous buffer tile held stays only if this one holds the very same slice of it.
            if not _same(previous, piece.buffer_ranges, "Weights"):
                held_weights.clear()
            if not _same(previous, piece.buffer_ranges, "Inputs"):
                held_rows.clear()

        weight_slice = (k0, k1, c0, c1)
        send_weights = not weights_resident and not ("Weights" in pe_keeps and weight_slice == pe_weights)
        pe_weights = weight_slice
        if "Weights" in keeps and not weights_resident:
            fetch_weights = weight_slice not in held_weights
            held_weights.add(weight_slice)
        else:
            fetch_weights = send_weights

        rows = input_rows(p0, p1)
        if inputs_resident:
            fetch_rows: tuple[tuple[int, int], ...] = ()
        elif "Inputs" in keeps:
            held = held_rows.setdefault((c0, c1), [])
            fetch_rows = tuple(subtract_rows(rows, held))
            held.extend(fetch_rows)
        else:
            fetch_rows = (rows,) if rows[0] < rows[1] else ()

        out_slice = (k0, k1, p0, p1)
        out_words = (k1 - k0) * (p1 - p0) * out_width
        first, last = c0 == 0, c1 == channels
        psum_read = out_words if not first and out_slice not in held_outputs else 0  # spilled: from DRAM
        following = next_ranges.get(piece.buffer_tile)
        stays = outputs_stay or (
            "Outputs" in keeps
            and (
                last_update[(piece.buffer_tile, out_slice)] != position
                or following is not None
                and _same(piece.buffer_ranges, following, "Outputs")
            )
        )
        if stays:
            held_outputs.add(out_slice)
        else:
            held_outputs.discard(out_slice)
        tiles.append(
            Tile(
                index=position,
                filter_start=k0,
                filter_stop=k1,
                out_row_start=p0,
                out_row_stop=p1,
                channel_start=c0,
                channel_stop=c1,
                is_first_channel_block=first,
                is_last_channel_block=last,
                weight_words=(k1 - k0) * (c1 - c0) * kernel if fetch_weights else 0,
                input_words=(c1 - c0) * sum(stop - start for start, stop in fetch_rows) * width,
                psum_in_words=0 if first else out_words,
                out_words=out_words,
                dram_write_words=out_words if last and not stays else 0,
                buffer_tile=piece.buffer_tile,
                opens_buffer_tile=opens,
                closes_buffer_tile=closes,
                send_weights=send_weights,
                input_fetch_rows=fetch_rows,
                psum_source=last_writer.get(out_slice),
                dram_psum_read_words=psum_read,
                dram_psum_write_words=out_words if not last and not stays else 0,
            )
        )
        last_writer[out_slice] = position
    return LayerTiling(
        geometry,
        mapping.extent("K"),
        mapping.extent("C"),
        mapping.extent("P"),
        tuple(tiles),
        mapping,
        weights_resident,
        inputs_resident,
        outputs_stay,
    )


def _outs(ranges: dict[str, tuple[int, int]]) -> tuple:
    return (*ranges["K"], *ranges["P"])


def _same(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]], tensor: str) -> bool:
    """Whether two buffer tiles hold the same slice of ``tensor``."""
    return all(a[dim] == b[dim] for dim in RELEVANT[tensor])
