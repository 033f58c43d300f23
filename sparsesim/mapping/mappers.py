"""A mapping the user gives (:mod:`sparsesim.mapping.directives`), checked against the machine and the
layer's real data: :func:`given_mapping` makes its tiles or says what it breaks. (The mapper, which searches
a layer's mappings when none is given, is :mod:`sparsesim.mapper`.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparsesim.errors import MappingError
from sparsesim.mapping.directives import UNSPECIFIED
from sparsesim.mapping.loopnest import LayerMapping, tiles_of
from sparsesim.mapping.tiling import ConvGeometry, LayerTiling
from sparsesim.mapping.traffic import SliceSizer, mapping_footprint_words
from sparsesim.sparse import row_stationary


@dataclass(frozen=True)
class KernelWords:
    """Words one kernel (one filter's weights of one channel) occupies: ``R x S`` unless the mechanism
    stores or holds it transformed (Winograd's ``U``: 16)."""

    spad: int
    buffer: int


def given_mapping(
    hw,
    geometry: ConvGeometry,
    sizer: SliceSizer,
    channel_granule: int,
    name: str,
    kernel_words: KernelWords,
    mapping: LayerMapping,
    source: str = "<mapping>",
    weights_resident: bool = False,
) -> LayerTiling:
    """The tiles of a mapping the user gives for layer ``name``; :class:`MappingError` naming ``source`` and
    the layer for every constraint of the machine it breaks: the dataflow (one ``pe_array.dataflow``
    allows), the PE array's filter lanes, the weight scratchpad, the mechanism's channel granule, and the
    global buffer's capacity (two buffer tiles, double-buffered, at the real sizes of the kept slices).
    ``weights_resident``: the PEs hold every layer's weights (:mod:`sparsesim.mapping.residency`): no
    scratchpad limit on the PE tile's channels, and the weights take no room in the buffer."""
    if weights_resident:
        mapping = replace(mapping, buffer_keeps=mapping.buffer_keeps - {"Weights"})
    if mapping.dataflow == UNSPECIFIED:  # the file names none: the machine's
        mapping = replace(mapping, dataflow=hw.pe_array.dataflows[0])
    pe = hw.pe_array.pe
    k, c = mapping.extent("K"), mapping.extent("C")
    problems = []
    dataflow, allowed = mapping.dataflow, hw.pe_array.dataflows
    if dataflow not in allowed:
        problems.append(
            f"a {dataflow.replace('_', '-')} mapping: this machine's PE array runs "
            f"{' or '.join(allowed)} (pe_array.dataflow is {hw.pe_array.dataflow})"
        )
    elif dataflow == "row_stationary":
        array = hw.pe_array
        fold = row_stationary.fold(array.rows, array.columns, geometry.kernel_r, mapping.extent("P"))
        held = pe.weight_spad_bytes // hw.word_bytes
        need = row_stationary.words_per_pe(fold, k * c, geometry.kernel_s)
        if need > held:
            problems.append(
                f"a row-stationary PE tile of M={k} x C={c} pairs on {fold.sets} PE sets: each PE holds "
                f"{need} words of filter rows, its weight scratchpad {held} (pe_array.pe.weight_spad_bytes)"
            )
    elif dataflow == "planar":
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
        if c > held and not weights_resident:
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
    need = 2 * mapping_footprint_words(hw, geometry, sizer, mapping) * hw.word_bytes
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
    return tiles_of(geometry, mapping, kernel_words.buffer, weights_resident)
