"""Mappers: from (hardware, layer) to a mapping, here a :class:`~sparsesim.mapping.LayerTiling` (the tiles of
the layer's loop nest, in execution order, and who works on what).

A mechanism names the dataflow its PEs are built for (``Mechanism.dataflow``); the mapper of that name maps
every layer. Two so far:

- ``output_stationary``: filter groups over the PE columns, output-row blocks, channel blocks innermost,
  partial sums held in the buffer between channel blocks (:func:`~sparsesim.mapping.tile_layer`);
- ``planar``: SCNN's planar tiling, bands of output rows with all filters and channels, weights streamed
  (:func:`~sparsesim.mapping.tile_layer_planar`).

Both size tiles on the real data in the buffer's formats when those are compressed. A mapping the user gives
(:mod:`sparsesim.mapping.directives`) replaces the mapper's: :func:`given_mapping` checks it against the
machine and the layer's real data and makes its tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sparsesim.errors import MappingError, SimulationError
from sparsesim.mapping.loopnest import LayerMapping, tiles_of
from sparsesim.mapping.tiling import ConvGeometry, LayerTiling, tile_layer, tile_layer_planar
from sparsesim.mapping.traffic import SliceSizer, buffer_footprint_words, buffer_tile_footprint_words


@dataclass(frozen=True)
class KernelWords:
    """Words one kernel (one filter's weights of one channel) occupies: ``R x S`` unless the mechanism
    stores or holds it transformed (Winograd's ``U``: 16)."""

    spad: int
    buffer: int


#: ``mapper(hw, geometry, sizer, channel_granule, layer_name, kernel_words) -> LayerTiling``;
#: ``kernel_words``: one kernel's words in a PE's weight scratchpad and, uncompressed, in the buffer.
Mapper = Callable[[object, ConvGeometry, SliceSizer, int, str, KernelWords], LayerTiling]


def _compressed(hw) -> bool:
    return any(fmt != "U" for fmt in vars(hw.formats.global_buffer).values())


def output_stationary(
    hw, geometry: ConvGeometry, sizer: SliceSizer, channel_granule: int, name: str, kernel_words: KernelWords
):
    return tile_layer(
        geometry,
        columns=hw.pe_array.columns,
        filter_lanes=hw.pe_array.pe.filter_lanes,
        weight_spad_bytes=hw.pe_array.pe.weight_spad_bytes,
        global_buffer_bytes=hw.global_buffer.capacity_bytes,
        word_bytes=hw.word_bytes,
        layer_name=name,
        footprint_words=buffer_footprint_words(hw, geometry, sizer) if _compressed(hw) else None,
        channel_granule=channel_granule,
        spad_words_per_kernel=kernel_words.spad,
        buffer_words_per_kernel=kernel_words.buffer,
    )


def planar(
    hw, geometry: ConvGeometry, sizer: SliceSizer, channel_granule: int, name: str, kernel_words: KernelWords
):
    """SCNN's planar bands; ``kernel_words`` sets nothing here: the weights stream through the buffer."""
    return tile_layer_planar(
        geometry,
        global_buffer_bytes=hw.global_buffer.capacity_bytes,
        word_bytes=hw.word_bytes,
        layer_name=name,
        footprint_words=buffer_footprint_words(hw, geometry, sizer, include_weights=False)
        if _compressed(hw)
        else None,
    )


#: The mappers, by the dataflow they implement.
MAPPERS: dict[str, Mapper] = {"output_stationary": output_stationary, "planar": planar}


def mapper(dataflow: str) -> Mapper:
    """The mapper of ``dataflow``; :class:`SimulationError` naming the known ones if there is none."""
    try:
        return MAPPERS[dataflow]
    except KeyError:
        raise SimulationError(f"no mapper for dataflow {dataflow!r}; known: {', '.join(MAPPERS)}") from None


def given_mapping(
    hw,
    geometry: ConvGeometry,
    sizer: SliceSizer,
    channel_granule: int,
    name: str,
    kernel_words: KernelWords,
    dataflow: str,
    mapping: LayerMapping,
    source: str = "<mapping>",
) -> LayerTiling:
    """The tiles of a mapping the user gives for layer ``name``; :class:`MappingError` naming ``source`` and
    the layer for every constraint of the machine it breaks: the PE array's filter lanes, the weight
    scratchpad, the mechanism's channel granule or its dataflow, and the global buffer's capacity (two
    buffer tiles, double-buffered, at the real sizes of the kept slices)."""
    pe = hw.pe_array.pe
    k, c = mapping.extent("K"), mapping.extent("C")
    problems = []
    if dataflow == "planar":
        if k != geometry.filters or c != geometry.channels:
            problems.append(
                f"a planar-tiled PE array (SCNN) takes every filter and channel with each band of rows: "
                f"the PE tile must be M={geometry.filters} C={geometry.channels}, not M={k} C={c}"
            )
    else:
        lanes = hw.pe_array.columns * pe.filter_lanes
        if k > lanes:
            problems.append(
                f"a PE tile of M={k} filters: the PE array works on at most {lanes} at once "
                "(pe_array.columns x pe_array.pe.filter_lanes)"
            )
        held = pe.weight_spad_bytes // hw.word_bytes // (pe.filter_lanes * kernel_words.spad)
        if c > held:
            problems.append(
                f"a PE tile of C={c} channels: a PE's weight scratchpad holds its {pe.filter_lanes} filter "
                f"lanes' kernels of at most {held} channels (pe_array.pe.weight_spad_bytes)"
            )
        if c < geometry.channels and c % channel_granule:
            problems.append(
                f"a PE tile of C={c} channels: the mechanism takes channels in groups of {channel_granule}"
            )
    if problems:
        raise MappingError(source, [(name, problem) for problem in problems])
    tiling = tiles_of(geometry, mapping, kernel_words.buffer)
    need = 2 * buffer_tile_footprint_words(hw, tiling, sizer) * hw.word_bytes
    if need > hw.global_buffer.capacity_bytes:
        raise MappingError(
            source,
            [
                (
                    name,
                    f"two buffer tiles (double-buffered) need {need:,} bytes of the real data; "
                    f"global_buffer.capacity_bytes is {hw.global_buffer.capacity_bytes:,}",
                )
            ],
        )
    return tiling
