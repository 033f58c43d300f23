"""The accelerator: the component tree built from a hardware config, and the run of one layer on it.

:class:`Accelerator` builds the components (DRAM, global buffer, NoC, decoder if any, the PE array with its
mechanism) and owns the tile pipeline that moves data between them. :func:`run_layer` asks the mechanism
for the layer's plan, the mapper of the mechanism's dataflow for the tiling (the mapping), the mechanism
again for each tile's work, and runs the pipeline.

The run of a layer is a four-stage pipeline of simpy processes, one event per tile transaction:

    loader       DRAM -> global buffer: the tile's weights and input rows, and spilled partial sums
                 (the first tile of a buffer tile waits for a free buffer half)
    distributor  global buffer -> NoC -> PEs: weights, multicast inputs, and the partial sums of the previous
                 channel block (which must first have come back: a true data dependency)
                 (the decoder, if any, sits on the loader's or the distributor's path, as placed)
    pe_array     the tile's compute, its cycles computed from the real operands
    writer       PEs -> NoC -> global buffer: partial sums or outputs; outputs (or partial sums) leaving
                 the buffer -> DRAM; after the last tile of a buffer tile, its half of the buffer is free

Stages hand tiles on through bounded FIFOs, so a slow stage back-pressures the ones before it: the global
buffer holds at most two buffer tiles (double buffering; the PE tiles of a buffer tile stream in one by
one, see :mod:`sparsesim.mapping.loopnest`), the PEs hold one tile waiting while they compute another, and
finished tiles wait for the writer one at a time. The layer ends when its last output reaches DRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from sparsesim.components import Dram, GlobalBuffer, Noc, PeArray
from sparsesim.components.decoder import Decoder
from sparsesim.core import Component, transfer
from sparsesim.mapping import ConvGeometry, LayerTiling
from sparsesim.mapping.directives import MappingFile
from sparsesim.mapping.mappers import KernelWords, given_mapping, mapper
from sparsesim.mapping.traffic import SliceSizer, TileTraffic, layer_traffic
from sparsesim.mechanisms import LayerOperands


@dataclass
class LayerRun:
    """The raw outcome of simulating one layer: its cycles, the component tree and the mapping. (The plan is
    not kept: the PE array's prepared work holds what the datapath and the report need of it.)"""

    cycles: int
    accelerator: Accelerator
    tiling: LayerTiling
    traffic: list[TileTraffic]
    mapping_given: bool = False  # the mapping came from a mapping file, not the mapper
    lower_bounds: dict[str, int] | None = None  # per port: see lower_bounds()

    @property
    def components(self) -> tuple[Component, ...]:
        return self.accelerator.components

    @property
    def pe_array(self) -> PeArray:
        return self.accelerator.pe_array


class Accelerator:
    """The machine a hardware config describes: its components, wired by ports, and the tile pipeline."""

    def __init__(self, hw, env: simpy.Environment | None = None):
        self.hw = hw
        self.env = env or simpy.Environment()
        word_bytes = hw.word_bytes
        self.dram = Dram(self.env, hw.dram)
        self.global_buffer = GlobalBuffer(self.env, hw.global_buffer, word_bytes)
        self.noc = Noc(self.env, hw.noc, word_bytes)
        self.decoder = Decoder(self.env, hw.decoder, word_bytes) if hw.decoder.at != "none" else None
        self.pe_array = PeArray(hw.pe_array, word_bytes=word_bytes)

    @property
    def components(self) -> tuple[Component, ...]:
        """The components, from DRAM to the PEs: the report walks them for cycles, actions and energy."""
        parts = (self.dram, self.global_buffer, self.noc, self.decoder, self.pe_array)
        return tuple(part for part in parts if part is not None)

    @property
    def mechanism(self):
        return self.pe_array.mechanism

    def run(self, tiling: LayerTiling, traffic: list[TileTraffic], value_bits: int, events=None) -> int:
        """Run the tile pipeline over ``tiling`` (the PE array already loaded); returns the layer's cycles."""
        env = self.env
        dram, glb, noc, decoder, pe = self.dram, self.global_buffer, self.noc, self.decoder, self.pe_array

        def log(stage: str, tile, what: str) -> None:
            if events is not None:
                events.append((int(env.now), stage, tile.index, what))

        def decode_hops(bits, placements) -> list:
            if decoder is None or decoder.at not in placements or not bits.total:
                return []
            return [decoder.decode(bits.payload // value_bits, bits.metadata)]

        tiles = tiling.tiles
        buffer_halves = simpy.Store(env, capacity=2)
        loaded = simpy.Store(env)
        pe_inbox = simpy.Store(env, capacity=1)
        finished = simpy.Store(env, capacity=1)
        drained = [env.event() for _ in tiles]

        def loader():
            for tile in tiles:
                if tile.opens_buffer_tile:
                    yield buffer_halves.put(tile.index)
                log("loader", tile, "start")
                t = traffic[tile.index]
                if t.dram_psum_read_bytes:
                    yield drained[tile.continues]  # the spilled partial sums must be in DRAM first
                hops = [dram.read(t.dram_read_bytes), glb.write(t.buffer_fill_words)]
                yield from transfer(env, hops + decode_hops(t.fill_decode, ("global_buffer_input",)))
                log("loader", tile, "loaded")
                yield loaded.put(tile)

        def distributor():
            for _ in tiles:
                tile = yield loaded.get()
                t = traffic[tile.index]
                hops = [glb.read(t.buffer_read_words), noc.send(t.noc_in_words)]
                yield from transfer(
                    env, hops + decode_hops(t.distribute_decode, ("global_buffer_output", "pe_input"))
                )
                if t.psum_in_words:
                    yield drained[tile.continues]
                    yield from transfer(env, [glb.read(t.psum_in_words), noc.send(t.psum_in_words)])
                log("distributor", tile, "sent")
                yield pe_inbox.put(tile)

        def writer():
            for _ in tiles:
                tile = yield finished.get()
                t = traffic[tile.index]
                yield from transfer(env, [noc.send(t.out_words), glb.write(t.out_words)])
                if t.dram_write_bytes:
                    yield from transfer(env, [glb.read(t.dram_write_words), dram.write(t.dram_write_bytes)])
                log("writer", tile, "drained")
                drained[tile.index].succeed()
                if tile.closes_buffer_tile:
                    yield buffer_halves.get()

        env.process(loader())
        env.process(distributor())
        env.process(pe.compute(env, pe_inbox, finished, len(tiles), log))
        env.process(writer())
        done = env.process(writer_done(env, drained))
        env.run(until=done)
        return int(env.now)


def geometry_of(layer) -> ConvGeometry:
    """Loop bounds of a trace layer; a linear layer becomes a 1x1 convolution of a 1x1 image."""
    if layer.op == "linear":
        filters, channels = layer.weights.shape
        return ConvGeometry(channels, 1, 1, filters, 1, 1, 1, 0)
    filters, channels, kernel_r, kernel_s = layer.weights.shape
    _, height, width = layer.input.shape
    return ConvGeometry(channels, height, width, filters, kernel_r, kernel_s, layer.stride, layer.padding)


def input_chw(layer) -> np.ndarray:
    return layer.input.reshape(-1, 1, 1) if layer.op == "linear" else layer.input


def weights_kcrs(layer) -> np.ndarray:
    return layer.weights.reshape(*layer.weights.shape, 1, 1) if layer.op == "linear" else layer.weights


def output_khw(layer) -> np.ndarray:
    return layer.output.reshape(-1, 1, 1) if layer.op == "linear" else layer.output


def operand_input(hw, layer, mechanism=None) -> np.ndarray:
    """The input activations the machine stores and computes with: ``(C, H, W)``.

    With activation pruning (``pe_array.pe.activation_threshold`` > 0) the activations with
    ``|a| <= threshold`` are zeroed first, as the previous layer's output encoder would (lossy); then the
    mechanism stores them its way (:meth:`~sparsesim.mechanisms.Mechanism.machine_input`: e.g. 16-bit
    fixed point for bit-serial PEs, lossy below its last bit, and the report measures that error).
    """
    activations = input_chw(layer)
    threshold = hw.pe_array.pe.activation_threshold
    if threshold > 0:
        activations = np.where(np.abs(activations) <= threshold, np.float32(0), activations)
    if mechanism is None:
        from sparsesim.mechanisms import create_mechanism

        mechanism = create_mechanism(hw.pe_array, hw.word_bytes)
    return mechanism.machine_input(activations)


def layer_operands(hw, layer, mechanism) -> LayerOperands:
    """A trace layer as the PEs of ``hw`` see it."""
    return LayerOperands(
        layer.name,
        geometry_of(layer),
        operand_input(hw, layer, mechanism),
        weights_kcrs(layer),
        layer.bias,
        layer.activation,
        output_khw(layer),
    )


def run_layer(
    hw, layer, events: list[tuple[int, str, int, str]] | None = None, mapping_file: MappingFile | None = None
) -> LayerRun:
    """Simulate ``layer`` (a trace layer) on the hardware config ``hw``.

    If ``events`` is a list, one ``(cycle, stage, tile index, what)`` line per stage event is appended to it:
    a timeline a person can read when a timing test fails. ``mapping_file``: the mappings a user gives (see
    :mod:`sparsesim.mapping.directives`); a layer it does not name is mapped by the mechanism's mapper.
    """
    machine = Accelerator(hw)
    mechanism = machine.mechanism
    plan = mechanism.plan(layer_operands(hw, layer, mechanism))
    operands = plan.operands
    value_bits = 8 * hw.word_bytes
    sizer = SliceSizer(operands.input_chw, plan.sized_weights, operands.output_khw, value_bits=value_bits)
    kernel_words = KernelWords(mechanism.spad_words_per_kernel(plan), plan.buffer_words_per_kernel)
    geometry, granule = operands.geometry, mechanism.channel_granule()
    given = mapping_file.layer_mapping(layer.name, geometry) if mapping_file is not None else None
    if given is not None:
        tiling = given_mapping(
            hw,
            geometry,
            sizer,
            granule,
            layer.name,
            kernel_words,
            mechanism.dataflow,
            given,
            mapping_file.source,
        )
    else:
        tiling = mapper(mechanism.dataflow)(hw, geometry, sizer, granule, layer.name, kernel_words)
    tiling, weight_ranges = mechanism.retile(plan, tiling)
    machine.pe_array.load(plan, tiling)
    traffic = layer_traffic(hw, tiling, sizer, weight_ranges)
    cycles = machine.run(tiling, traffic, value_bits, events)
    bounds = lower_bounds(machine, tiling, sizer, weight_ranges)
    return LayerRun(cycles, machine, tiling, traffic, given is not None, bounds)


def lower_bounds(
    machine: Accelerator, tiling: LayerTiling, sizer: SliceSizer, weight_ranges: list | None
) -> dict[str, int]:
    """Per port, the cycles it must be busy however the loops above the PE tile run: the PE array's
    compute for this PE tile; each link moving every value once (DRAM: the weights and the input rows
    the outputs read, then the outputs; the buffer's ports and the NoC: the same into the PEs and back).

    An uncompressed tensor counts whole (its size is its shape's). A compressed one's stored size
    depends on how it is cut (metadata per slice), and sizing it whole would cost a copy of the layer,
    so it counts as the distinct slices this mapping moves, each once: a bound for this mapping, an
    estimate across mappings. A mapping can only add re-fetches, halos, partial sums and
    per-transaction rounding.
    """
    hw, geometry, tiles = machine.hw, tiling.geometry, tiling.tiles
    f = hw.formats
    word_bits = 8 * hw.word_bytes
    noc_level = f.pe if hw.decoder.at == "global_buffer_output" else f.global_buffer
    k, c, p = geometry.filters, geometry.channels, geometry.out_height
    if weight_ranges is None:  # each PE tile's weights; a mixture of experts: the filters it fetches
        weight_slices = {(t.filter_start, t.filter_stop, t.channel_start, t.channel_stop) for t in tiles}
        whole_weights = [(0, k, 0, c)]
    else:
        ranges = sorted({span for of_tile in weight_ranges for span in of_tile})
        weight_slices = {(a, b, 0, c) for a, b in ranges}
        whole_weights = sorted(weight_slices)
    sent_inputs = {
        (t.channel_start, t.channel_stop, *geometry.input_rows(t.out_row_start, t.out_row_stop))
        for t in tiles
    }
    fetched_inputs = {
        (t.channel_start, t.channel_stop, *span)
        for t in tiles
        for span in (
            t.input_fetch_rows
            if t.input_fetch_rows is not None
            else [geometry.input_rows(t.out_row_start, t.out_row_stop)]
        )
    }
    whole_inputs = [(0, c, *span) for span in _read_row_spans(geometry)]
    out_slices = {
        (t.filter_start, t.filter_stop, t.out_row_start, t.out_row_stop) for t in tiles if t.dram_write_words
    }

    def least(size, fmt, slices, whole) -> int:
        return sum(size(fmt, *piece).total for piece in (whole if fmt == "U" else slices))

    def operand_bits(level, inputs) -> tuple[int, int]:
        weights = least(sizer.weights, level.weights, weight_slices, whole_weights)
        return weights, least(sizer.inputs, level.inputs, inputs, whole_inputs)

    def output_bits(fmt) -> int:
        return least(sizer.outputs, fmt, out_slices, [(0, k, 0, p)])

    dram_read = sum(-(-bits // 8) for bits in operand_bits(f.dram, fetched_inputs))
    dram_write = -(-output_bits(f.dram.outputs) // 8)
    in_buffer = sum(-(-bits // word_bits) for bits in operand_bits(f.global_buffer, sent_inputs))
    on_noc = sum(-(-bits // word_bits) for bits in operand_bits(noc_level, sent_inputs))
    out_words = -(-output_bits(f.global_buffer.outputs) // word_bits)
    dram, glb, noc = machine.dram, machine.global_buffer, machine.noc
    bursts = dram.burst_bytes
    bounds = {
        dram.port.path: dram.port.cycles_for(-(-dram_read // bursts) * bursts)
        + dram.port.cycles_for(-(-dram_write // bursts) * bursts),
        noc.port.path: noc.port.cycles_for((on_noc + out_words) * hw.word_bytes),
        machine.pe_array.port.path: machine.pe_array.busy_cycles,
    }
    moved = (in_buffer + out_words) * hw.word_bytes  # read out to the PEs and DRAM; written in likewise
    if glb.read_port is glb.write_port:
        bounds[glb.read_port.path] = glb.read_port.cycles_for(2 * moved)
    else:
        bounds[glb.read_port.path] = glb.read_port.cycles_for(moved)
        bounds[glb.write_port.path] = glb.write_port.cycles_for(moved)
    return bounds


def _read_row_spans(geometry: ConvGeometry) -> list[tuple[int, int]]:
    """The input rows some output reads, as maximal runs ``[start, stop)`` (all of them unless the stride
    skips rows)."""
    spans: list[tuple[int, int]] = []
    for row in range(geometry.out_height):
        start, stop = geometry.input_rows(row, row + 1)
        if start == stop:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], stop))
        else:
            spans.append((start, stop))
    return spans


def writer_done(env: simpy.Environment, drained: list[simpy.Event]):
    """Ends when every tile's results have been written back."""
    if drained:
        yield env.all_of(drained)
