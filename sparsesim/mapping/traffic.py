"""What each tile moves, in bytes and words of the real data in each level's storage format.

The tiling (:mod:`sparsesim.mapping.tiling`) says which slices of the weights, inputs and outputs a tile
needs; this module sizes those slices in the format the hwconfig gives for each level (``formats.dram``,
``formats.global_buffer``, ``formats.pe``) with :func:`sparsesim.sparse.formats.tensor_size_bits`, i.e. the
payload + metadata bits of the real values, tile by tile. Uncompressed (``U``) sizes are computed directly.

Flow of one tile (``words`` are ``word_bytes`` words; a compressed slice occupies ``ceil(bits / word_bits)``):

- DRAM -> global buffer: the weights (when the tile brings them) and input rows, DRAM format in DRAM and
  buffer format in the buffer; a decoder at ``global_buffer_input`` parses them on the way;
- global buffer -> NoC -> PEs: the same slices in the buffer format (the NoC carries the PE format when the
  decoder sits at ``global_buffer_output``), plus uncompressed partial sums of the previous channel block;
- PEs -> NoC -> global buffer: uncompressed partial sums, or after the last channel block the finished
  outputs in the buffer's output format (the encoder is not modelled); buffer -> DRAM: those outputs in the
  DRAM output format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsesim.mapping.tiling import ConvGeometry, LayerTiling
from sparsesim.sparse.formats import stored_words, tensor_size_bits


@dataclass(frozen=True)
class Bits:
    """Size of a stored slice: payload (values) and metadata bits, counted apart."""

    payload: int
    metadata: int

    @property
    def total(self) -> int:
        return self.payload + self.metadata

    def words(self, word_bits: int) -> int:
        return -(-self.total // word_bits)


NO_BITS = Bits(0, 0)


class SliceSizer:
    """Sizes of slices of one layer's tensors in any format, cached (a slice is sized once per format)."""

    def __init__(
        self, input_chw: np.ndarray, weights_kcrs: np.ndarray, output_khw: np.ndarray, value_bits: int
    ):
        self._tensors = {"w": weights_kcrs, "i": input_chw, "o": output_khw}
        self._float16: dict[str, np.ndarray] = {}
        self.value_bits = value_bits
        self._cache: dict[tuple, Bits] = {}
        self._zeros: dict[str, np.ndarray] = {}

    def zero_free(self, which: str, window: tuple[slice, slice]) -> bool:
        """Whether the slice holds no zero: then its size in any format (which depends on where its zeros
        are, and on its shape) depends on its shape alone, and is computed once per shape (the mapper
        sizes thousands of slices of a dense layer's weights). Counted in O(1) from a summed-area table
        of the zeros over the tensor's first two axes."""
        if which not in self._zeros:
            zeros = self._tensor(which) == 0
            counts = zeros.reshape(*zeros.shape[:2], -1).sum(axis=2, dtype=np.int64)
            table = np.zeros((counts.shape[0] + 1, counts.shape[1] + 1), dtype=np.int64)
            table[1:, 1:] = counts.cumsum(axis=0).cumsum(axis=1)
            self._zeros[which] = table
        table = self._zeros[which]
        (a0, a1, _), (b0, b1, _) = (s.indices(n - 1) for s, n in zip(window, table.shape, strict=True))
        return int(table[a1, b1] - table[a0, b1] - table[a1, b0] + table[a0, b0]) == 0

    def _tensor(self, which: str) -> np.ndarray:
        """The whole tensor as float16 when that is exact (trace operands are; outputs leave the PEs as
        16-bit words, the next layer's operands), converted once on first use, so that each slice's format
        analysis skips its own conversion and representability check (most of a sizing's cost)."""
        if which not in self._float16:
            tensor = self._tensors[which]
            self._float16[which] = stored_words(tensor) if which == "o" else _float16_if_exact(tensor)
        return self._float16[which]

    def _size(self, which: str, fmt: str, window: tuple[slice, slice], role: str) -> Bits:
        key = (which, fmt, window[0].start, window[0].stop, window[1].start, window[1].stop)
        if key not in self._cache:
            shape = self._tensors[which][window].shape
            if fmt == "U":  # the size alone: no need to look at the values
                self._cache[key] = Bits(int(np.prod(shape)) * self.value_bits, 0)
            elif self.zero_free(which, window):
                by_shape = (which, fmt, "zero-free", shape)
                if by_shape not in self._cache:
                    self._cache[by_shape] = Bits(*tensor_size_bits(self._tensor(which)[window], role, fmt))
                self._cache[key] = self._cache[by_shape]
            else:
                self._cache[key] = Bits(*tensor_size_bits(self._tensor(which)[window], role, fmt))
        return self._cache[key]

    def weights(self, fmt: str, k0: int, k1: int, c0: int, c1: int) -> Bits:
        return self._size("w", fmt, (slice(k0, k1), slice(c0, c1)), "weights")

    def inputs(self, fmt: str, c0: int, c1: int, r0: int, r1: int) -> Bits:
        return self._size("i", fmt, (slice(c0, c1), slice(r0, r1)), "activations")

    def outputs(self, fmt: str, k0: int, k1: int, r0: int, r1: int) -> Bits:
        return self._size("o", fmt, (slice(k0, k1), slice(r0, r1)), "activations")


def _float16_if_exact(array: np.ndarray) -> np.ndarray:
    """``array`` as float16 if every value is exactly a float16, else unchanged (sizing then says which
    value is not)."""
    if array.dtype == np.float16:
        return array
    with np.errstate(over="ignore", invalid="ignore"):
        half = array.astype(np.float16)
    return half if np.array_equal(half.astype(array.dtype), array) else array


@dataclass(frozen=True)
class TileTraffic:
    """Everything one tile moves, per hop."""

    dram_weight_bytes: int  # weights read from DRAM (0 when they are already resident)
    dram_input_bytes: int
    buffer_fill_words: int
    fill_decode: Bits  # what a decoder at global_buffer_input parses (elements = payload / value bits)
    buffer_read_words: int  # operands read out of the buffer for the PEs (without partial sums)
    noc_in_words: int  # operands on the NoC (without partial sums)
    distribute_decode: Bits  # what a decoder at global_buffer_output or pe_input parses
    psum_in_words: int
    out_words: int  # partial sums or finished outputs from the PEs into the buffer
    dram_write_words: int  # finished outputs and spilled partial sums read out of the buffer for DRAM
    dram_write_bytes: int  # ... and their size in DRAM
    dram_psum_read_bytes: int = 0  # spilled partial sums read back from DRAM (uncompressed)
    dram_psum_write_bytes: int = 0  # partial sums spilled to DRAM (uncompressed; in dram_write_bytes)

    @property
    def dram_read_bytes(self) -> int:
        return self.dram_weight_bytes + self.dram_input_bytes + self.dram_psum_read_bytes


def _decoded(upstream: Bits, upstream_fmt: str, downstream_fmt: str) -> Bits:
    """What the decoder parses for one slice: compressed input, or a slice changing format, else nothing."""
    return upstream if upstream_fmt != "U" or upstream_fmt != downstream_fmt else NO_BITS


def layer_traffic(
    hw,
    tiling: LayerTiling,
    sizer: SliceSizer,
    weight_ranges: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[TileTraffic]:
    """The traffic of every tile of ``tiling`` on the machine ``hw`` (see the module docstring).

    ``weight_ranges``: per tile, the filter ranges ``[k0, k1)`` of ``sizer``'s weights that the tile brings
    (a mixture of experts fetches only its selected experts, see :mod:`sparsesim.mapping.experts`); by
    default a tile that brings weights brings its whole filter group.
    """
    geometry = tiling.geometry
    word_bits = 8 * hw.word_bytes
    word_bytes = hw.word_bytes
    f = hw.formats
    at = hw.decoder.at
    noc_level = f.pe if at == "global_buffer_output" else f.global_buffer
    traffic = []
    for tile in tiling.tiles:
        k0, k1, c0, c1 = tile.filter_start, tile.filter_stop, tile.channel_start, tile.channel_stop
        rows = geometry.input_rows(tile.out_row_start, tile.out_row_stop)
        fetched_rows = (rows,) if tile.input_fetch_rows is None else tile.input_fetch_rows

        def weights(fmt: str, moved: bool, tile=tile, k0=k0, k1=k1, c0=c0, c1=c1) -> Bits:
            if weight_ranges is not None:  # the mechanism says which filters the tile brings
                return _sum(*(sizer.weights(fmt, a, b, c0, c1) for a, b in weight_ranges[tile.index]))
            return sizer.weights(fmt, k0, k1, c0, c1) if moved else NO_BITS

        def fetched(level, tile=tile, c0=c0, c1=c1, fetched_rows=fetched_rows) -> tuple[Bits, Bits]:
            """The weights and input rows the tile brings from DRAM, in ``level``'s formats."""
            inputs = _sum(*(sizer.inputs(level.inputs, c0, c1, *span) for span in fetched_rows))
            return weights(level.weights, tile.weight_words > 0), inputs

        def sent(level, tile=tile, c0=c0, c1=c1, rows=rows) -> tuple[Bits, Bits]:
            """The weights and input rows the tile sends to the PEs, in ``level``'s formats."""
            return weights(level.weights, tile.sends_weights), sizer.inputs(level.inputs, c0, c1, *rows)

        dram, fill = fetched(f.dram), fetched(f.global_buffer)
        buffer, noc = sent(f.global_buffer), sent(noc_level)
        fill_decode = distribute_decode = NO_BITS
        if at == "global_buffer_input":
            fill_decode = _sum(
                _decoded(dram[0], f.dram.weights, f.global_buffer.weights),
                _decoded(dram[1], f.dram.inputs, f.global_buffer.inputs),
            )
        elif at in ("global_buffer_output", "pe_input"):
            distribute_decode = _sum(
                _decoded(buffer[0], f.global_buffer.weights, f.pe.weights),
                _decoded(buffer[1], f.global_buffer.inputs, f.pe.inputs),
            )
        if tile.is_last_channel_block:
            rows_out = (tile.out_row_start, tile.out_row_stop)
            out_words = sizer.outputs(f.global_buffer.outputs, k0, k1, *rows_out).words(word_bits)
        else:
            out_words = tile.out_words
        dram_write_words, dram_write_bytes = 0, 0
        if tile.dram_write_words:
            dram_out = sizer.outputs(f.dram.outputs, k0, k1, tile.out_row_start, tile.out_row_stop)
            dram_write_words, dram_write_bytes = out_words, -(-dram_out.total // 8)
        psum_write_bytes = tile.dram_psum_write_words * word_bytes
        traffic.append(
            TileTraffic(
                dram_weight_bytes=-(-dram[0].total // 8),
                dram_input_bytes=-(-dram[1].total // 8),
                buffer_fill_words=sum(b.words(word_bits) for b in fill) + tile.dram_psum_read_words,
                fill_decode=fill_decode,
                buffer_read_words=sum(b.words(word_bits) for b in buffer),
                noc_in_words=sum(b.words(word_bits) for b in noc),
                distribute_decode=distribute_decode,
                psum_in_words=tile.psum_in_words,
                out_words=out_words,
                dram_write_words=dram_write_words + tile.dram_psum_write_words,
                dram_write_bytes=dram_write_bytes + psum_write_bytes,
                dram_psum_read_bytes=tile.dram_psum_read_words * word_bytes,
                dram_psum_write_bytes=psum_write_bytes,
            )
        )
    return traffic


def _sum(*parts: Bits) -> Bits:
    return Bits(sum(p.payload for p in parts), sum(p.metadata for p in parts))


def mapping_footprint_words(
    hw, geometry: ConvGeometry, sizer: SliceSizer, mapping, resident: frozenset[str] = frozenset()
) -> int:
    """Words the largest buffer tile of ``mapping`` (a :class:`~sparsesim.mapping.LayerMapping`) occupies in
    the global buffer, measured on the real data.

    The slices of the tensors its mapping keeps, in the buffer's formats (partial sums uncompressed when a
    PE tile holds only some of the channels); a tensor the buffer does not keep passes through it and
    occupies none of it, and neither does a tensor ``resident`` in the buffer for the whole layer (the
    ``Inputs`` a previous layer left there, the ``Outputs`` left for the next: they have their own room).
    """
    f = hw.formats.global_buffer
    word_bits = 8 * hw.word_bytes
    keeps = mapping.buffer_keeps - resident
    partial = mapping.extent("C") < geometry.channels

    def blocks(size: int, extent: int) -> list[tuple[int, int]]:
        return [(start, min(size, start + extent)) for start in range(0, size, extent)]

    groups = blocks(geometry.filters, mapping.buffer_extent("K"))
    channels = blocks(geometry.channels, mapping.buffer_extent("C"))
    rows = blocks(geometry.out_height, mapping.buffer_extent("P"))
    weights = np.zeros((len(groups), len(channels)), dtype=np.int64)
    inputs = np.zeros((len(channels), len(rows)), dtype=np.int64)
    outputs = np.zeros((len(groups), len(rows)), dtype=np.int64)
    if "Weights" in keeps:
        weights[:] = [[sizer.weights(f.weights, *g, *c).words(word_bits) for c in channels] for g in groups]
    if "Inputs" in keeps:
        inputs[:] = [
            [sizer.inputs(f.inputs, *c, *geometry.input_rows(*r)).words(word_bits) for r in rows]
            for c in channels
        ]
    if "Outputs" in keeps:
        outputs[:] = [
            [
                (g[1] - g[0]) * (r[1] - r[0]) * geometry.out_width
                if partial
                else sizer.outputs(f.outputs, *g, *r).words(word_bits)
                for r in rows
            ]
            for g in groups
        ]
    # The largest buffer tile: max over (filter block, channel block, row block) of the three slices.
    return int((weights[:, :, None] + inputs[None, :, :] + outputs[:, None, :]).max())
