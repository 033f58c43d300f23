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
from sparsesim.core import Component, Hop, transfer
from sparsesim.core.energy import action_energy_pj
from sparsesim.mapper import Search, search
from sparsesim.mapping import ConvGeometry, LayerTiling
from sparsesim.mapping.directives import MappingFile
from sparsesim.mapping.loopnest import tiles_of
from sparsesim.mapping.mappers import KernelWords, given_mapping
from sparsesim.mapping.residency import ActivationResidency
from sparsesim.mapping.traffic import SliceSizer, TileTraffic, layer_traffic, mapping_footprint_words
from sparsesim.mechanisms import LayerOperands


@dataclass(frozen=True)
class TileHops:
    """One tile's transfers through the pipeline's stages: each a list of hops (see
    :func:`sparsesim.core.transfer`); an empty list is no transfer."""

    load: list[Hop]  # DRAM -> global buffer (the loader)
    send: list[Hop]  # global buffer -> NoC -> PEs: operands (the distributor)
    psum: list[Hop]  # global buffer -> NoC -> PEs: partial sums of the previous channel block
    out: list[Hop]  # PEs -> NoC -> global buffer (the writer)
    drain: list[Hop]  # global buffer -> DRAM: outputs or spilled partial sums leaving the buffer


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
    energy_pj: float = 0.0  # every component's actions at the machine's energy table
    search: Search | None = None  # what the mapper searched (None: the mapping was given)
    setup: LayerSetup | None = None  # the layer on the machine, to run the mapping again

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

    def tile_hops(self, t: TileTraffic, value_bits: int) -> TileHops:
        """The transfers of one tile's traffic, hop by hop (their actions counted on the components)."""
        dram, glb, noc, decoder = self.dram, self.global_buffer, self.noc, self.decoder

        def decode_hops(bits, placements) -> list[Hop]:
            if decoder is None or decoder.at not in placements or not bits.total:
                return []
            return [decoder.decode(bits.payload // value_bits, bits.metadata)]

        load = [dram.read(t.dram_read_bytes), glb.write(t.buffer_fill_words)]
        send = [glb.read(t.buffer_read_words), noc.send(t.noc_in_words)]
        drain = [glb.read(t.dram_write_words), dram.write(t.dram_write_bytes)] if t.dram_write_bytes else []
        return TileHops(
            load=load + decode_hops(t.fill_decode, ("global_buffer_input",)),
            send=send + decode_hops(t.distribute_decode, ("global_buffer_output", "pe_input")),
            psum=[glb.read(t.psum_in_words), noc.send(t.psum_in_words)] if t.psum_in_words else [],
            out=[noc.send(t.out_words), glb.write(t.out_words)],
            drain=drain,
        )

    def run(self, tiling: LayerTiling, traffic: list[TileTraffic], value_bits: int, events=None) -> int:
        """Run the tile pipeline over ``tiling`` (the PE array already loaded); returns the layer's cycles."""
        env = self.env
        pe = self.pe_array

        def log(stage: str, tile, what: str) -> None:
            if events is not None:
                events.append((int(env.now), stage, tile.index, what))

        tiles = tiling.tiles
        hops = [self.tile_hops(traffic[tile.index], value_bits) for tile in tiles]
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
                if traffic[tile.index].dram_psum_read_bytes:
                    yield drained[tile.continues]  # the spilled partial sums must be in DRAM first
                yield from transfer(env, hops[tile.index].load)
                log("loader", tile, "loaded")
                yield loaded.put(tile)

        def distributor():
            for _ in tiles:
                tile = yield loaded.get()
                yield from transfer(env, hops[tile.index].send)
                if hops[tile.index].psum:
                    yield drained[tile.continues]
                    yield from transfer(env, hops[tile.index].psum)
                log("distributor", tile, "sent")
                yield pe_inbox.put(tile)

        def writer():
            for _ in tiles:
                tile = yield finished.get()
                yield from transfer(env, hops[tile.index].out)
                if hops[tile.index].drain:
                    yield from transfer(env, hops[tile.index].drain)
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
    hw,
    layer,
    events: list[tuple[int, str, int, str]] | None = None,
    mapping_file: MappingFile | None = None,
    objective: str = "cycles",
    weights_resident: bool = False,
) -> LayerRun:
    """Simulate ``layer`` (a trace layer) on the hardware config ``hw``.

    If ``events`` is a list, one ``(cycle, stage, tile index, what)`` line per stage event is appended to it:
    a timeline a person can read when a timing test fails. ``mapping_file``: the mappings a user gives (see
    :mod:`sparsesim.mapping.directives`); a layer it does not name is mapped by the mapper
    (:mod:`sparsesim.mapper`) for ``objective``. ``weights_resident``: the PEs hold the layer's weights
    before it starts (:mod:`sparsesim.mapping.residency`).
    """
    setup = LayerSetup(hw, layer, weights_resident)
    given = mapping_file.layer_mapping(layer.name, setup.geometry) if mapping_file is not None else None
    if given is None:
        return search(setup, objective, events)
    tiling = given_mapping(
        hw,
        setup.geometry,
        setup.sizer,
        setup.granule,
        layer.name,
        setup.kernel_words,
        given,
        mapping_file.source,
        weights_resident,
    )
    run = setup.simulate(tiling, events)
    run.mapping_given = True
    return run


class LayerSetup:
    """One layer on one machine, ready to simulate under any mapping: the mechanism's plan of the layer, its
    slices' sizes and the PE work already prepared (shared by the mappings that prepare the same)."""

    def __init__(self, hw, layer, weights_resident: bool = False):
        self.hw = hw
        self.weights_resident = weights_resident
        self.name = layer.name
        self.mechanism = mechanism = Accelerator(hw).mechanism
        self.plan = plan = mechanism.plan(layer_operands(hw, layer, mechanism))
        operands = plan.operands
        self.value_bits = 8 * hw.word_bytes
        self.sizer = SliceSizer(
            operands.input_chw, plan.sized_weights, operands.output_khw, value_bits=self.value_bits
        )
        self.kernel_words = KernelWords(mechanism.spad_words_per_kernel(plan), plan.buffer_words_per_kernel)
        self.geometry, self.granule = operands.geometry, mechanism.channel_granule()
        self.energy_table = hw.energy_table()
        self._prepared: dict = {}

    def prepared(self, tiling: LayerTiling):
        """The mechanism's prepared work for ``tiling`` (after :meth:`retile`), computed once per key."""
        key = self.mechanism.prepare_key(tiling)
        if key is None:
            return self.mechanism.prepare(self.plan, tiling)
        if key not in self._prepared:
            self._prepared[key] = self.mechanism.prepare(self.plan, tiling)
        return self._prepared[key]

    def retain(self, tiling: LayerTiling) -> None:
        """Forget the prepared work of every mapping but ``tiling``'s, the one chosen (memory)."""
        key = self.mechanism.prepare_key(self.mechanism.retile(self.plan, tiling)[0])
        self._prepared = {key: self._prepared[key]} if key in self._prepared else {}

    def fits_with(self, mapping, activations: ActivationResidency) -> bool:
        """Whether ``mapping``'s two buffer tiles (double-buffered) and ``activations`` resident across
        layers fit the global buffer together, at the real sizes."""
        hw = self.hw
        tiles = mapping_footprint_words(hw, self.geometry, self.sizer, mapping, activations.tensors)
        return 2 * tiles * hw.word_bytes + activations.resident_bytes <= hw.global_buffer.capacity_bytes

    def run_mapping(self, mapping, activations: ActivationResidency) -> LayerRun:
        """``mapping`` simulated with ``activations`` resident in the buffer across layers (see
        :mod:`sparsesim.mapping.residency`): its tiles without the resident tensors' DRAM transfers."""
        tiling = tiles_of(
            self.geometry,
            mapping,
            self.kernel_words.buffer,
            self.weights_resident,
            activations.inputs,
            activations.outputs,
        )
        return self.simulate(tiling)

    def pe_busy(self, tiling: LayerTiling) -> int:
        """The PE array's busy cycles over ``tiling``'s tiles (no pipeline: the PE work alone)."""
        tiling, _ = self.mechanism.retile(self.plan, tiling)
        self._refuse_split_filters(tiling)
        prepared = self.prepared(tiling)
        return sum(int(self.mechanism.tile_work(prepared, tile).cycles) for tile in tiling.tiles)

    def _refuse_split_filters(self, tiling: LayerTiling) -> None:
        """:class:`SimulationError` naming the mechanism if it needs whole filters and ``tiling`` splits
        them over channel blocks (the PE array's check, made before any work is prepared)."""
        if self.mechanism.needs_whole_filters and tiling.n_channel_blocks != 1:
            Accelerator(self.hw).pe_array.load(self.plan, tiling)  # raises

    def simulate(self, tiling: LayerTiling, events=None) -> LayerRun:
        """The layer's run under ``tiling`` on a fresh machine."""
        machine = Accelerator(self.hw)
        tiling, weight_ranges = machine.mechanism.retile(self.plan, tiling)
        self._refuse_split_filters(tiling)
        machine.pe_array.load(self.plan, tiling, self.prepared(tiling))
        traffic = layer_traffic(self.hw, tiling, self.sizer, weight_ranges)
        cycles = machine.run(tiling, traffic, self.value_bits, events)
        bounds = lower_bounds(machine, tiling, self.sizer, weight_ranges)
        energy = sum(
            sum(action_energy_pj(part.path, part.actions, self.energy_table).values())
            for part in machine.components
        )
        return LayerRun(cycles, machine, tiling, traffic, False, bounds, energy, setup=self)


def lower_bounds(
    machine: Accelerator, tiling: LayerTiling, sizer: SliceSizer, weight_ranges: list | None
) -> dict[str, int]:
    """Per port, the cycles it must be busy however the loops above the PE tile run: the PE array's
    compute for this PE tile; each link moving every value once (DRAM: the weights and the input rows
    the outputs read, then the outputs; the buffer's write port: the same in, and the outputs from the
    PEs; its read port and the NoC: the slices the PE tiles take, halos included, and the outputs).

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
        if tiling.weights_resident:  # in the PEs before the layer starts
            return 0, least(sizer.inputs, level.inputs, inputs, whole_inputs)
        weights = least(sizer.weights, level.weights, weight_slices, whole_weights)
        return weights, least(sizer.inputs, level.inputs, inputs, whole_inputs)

    def output_bits(fmt) -> int:
        return least(sizer.outputs, fmt, out_slices, [(0, k, 0, p)])

    # Resident activations: the input is in the buffer before the layer, its outputs stay there after.
    fetched = 1 if tiling.inputs_resident else 2  # (weights, inputs), or the weights alone
    dram_read = sum(-(-bits // 8) for bits in operand_bits(f.dram, fetched_inputs)[:fetched])
    dram_write = 0 if tiling.outputs_stay else -(-output_bits(f.dram.outputs) // 8)
    into_buffer = sum(
        -(-bits // word_bits) for bits in operand_bits(f.global_buffer, fetched_inputs)[:fetched]
    )
    out_of_buffer = sum(-(-bits // word_bits) for bits in operand_bits(f.global_buffer, sent_inputs))
    on_noc = sum(-(-bits // word_bits) for bits in operand_bits(noc_level, sent_inputs))
    out_words = -(-output_bits(f.global_buffer.outputs) // word_bits)
    drained_words = 0 if tiling.outputs_stay else out_words
    dram, glb, noc = machine.dram, machine.global_buffer, machine.noc
    bursts = dram.burst_bytes
    bounds = {
        dram.port.path: dram.port.cycles_for(-(-dram_read // bursts) * bursts)
        + dram.port.cycles_for(-(-dram_write // bursts) * bursts),
        noc.port.path: noc.port.cycles_for((on_noc + out_words) * hw.word_bytes),
        machine.pe_array.port.path: machine.pe_array.busy_cycles,
    }
    read = (out_of_buffer + drained_words) * hw.word_bytes  # to the PEs, and the outputs to DRAM
    written = (into_buffer + out_words) * hw.word_bytes  # from DRAM, and the outputs from the PEs
    if glb.read_port is glb.write_port:
        bounds[glb.read_port.path] = glb.read_port.cycles_for(read + written)
    else:
        bounds[glb.read_port.path] = glb.read_port.cycles_for(read)
        bounds[glb.write_port.path] = glb.write_port.cycles_for(written)
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
