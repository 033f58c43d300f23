"""The accelerator: builds the components from a hardware config, wires them and runs one layer.

The run of a layer is a four-stage pipeline of simpy processes, one event per tile transaction:

    loader       DRAM -> global buffer: the tile's weights and input rows      (waits for a free buffer half)
    distributor  global buffer -> NoC -> PEs: weights, multicast inputs, and the partial sums of the previous
                 channel block (which must first have come back: a true data dependency)
                 (the decoder, if any, sits on the loader's or the distributor's path, as placed)
    pe_array     the tile's compute, its cycles computed from the real operands
    writer       PEs -> NoC -> global buffer: partial sums or outputs; finished outputs -> DRAM;
                 then the tile's half of the buffer is free again

Stages hand tiles on through bounded FIFOs, so a slow stage back-pressures the ones before it: the global
buffer holds at most two tiles (double buffering), the PEs hold one tile waiting while they compute another,
and finished tiles wait for the writer one at a time. The layer ends when its last output reaches DRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from sparsesim.components import CartesianPeArray, Dram, GlobalBuffer, Noc, PeArray, build_pe_array
from sparsesim.components.decoder import Decoder
from sparsesim.components.pe_array import MSB_FIRST_WORD_BITS, TERM_MODES, im2col_bands
from sparsesim.config import MSB_FIRST_MODES
from sparsesim.core import transfer
from sparsesim.mapping import ConvGeometry, LayerTiling, tile_layer, tile_layer_planar
from sparsesim.mapping.experts import ExpertMapping, expert_tiles, map_experts
from sparsesim.mapping.traffic import SliceSizer, TileTraffic, buffer_footprint_words, layer_traffic
from sparsesim.sparse.deltas import from_fixed_point, to_fixed_point
from sparsesim.sparse.structured import parse_n_m


@dataclass
class LayerRun:
    """The raw outcome of simulating one layer: totals, components and tiling (rendered by the report)."""

    cycles: int
    dram: Dram
    global_buffer: GlobalBuffer
    noc: Noc
    pe_array: PeArray | CartesianPeArray
    tiling: LayerTiling
    traffic: list[TileTraffic]
    decoder: Decoder | None = None
    experts: ExpertMapping | None = None  # a mixture of experts: the layer ran with its filters reordered

    @property
    def components(self):
        parts = (self.dram, self.global_buffer, self.noc, self.decoder, self.pe_array)
        return tuple(part for part in parts if part is not None)


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


def operand_input(hw, layer) -> np.ndarray:
    """The input activations the machine stores and computes with: ``(C, H, W)``.

    With activation pruning (``pe_array.pe.activation_threshold`` > 0) the activations with
    ``|a| <= threshold`` are zeroed first, as the previous layer's output encoder would (lossy).
    """
    activations = input_chw(layer)
    threshold = hw.pe_array.pe.activation_threshold
    if threshold > 0:
        activations = np.where(np.abs(activations) <= threshold, np.float32(0), activations)
    if hw.pe_array.pe.sparsity in TERM_MODES:
        # A bit-serial engine works on 16-bit fixed point (one power-of-two scale per layer): lossy below
        # its last bit, and the report measures that error.
        ints, frac_bits = to_fixed_point(activations, bits=16)
        activations = from_fixed_point(ints, frac_bits).astype(np.float32)
    elif hw.pe_array.pe.early_termination in MSB_FIRST_MODES:
        # MSB-first PEs (PredictiveNet) split 16-bit fixed-point activations: the same rounding, measured.
        ints, frac_bits = to_fixed_point(activations, bits=MSB_FIRST_WORD_BITS)
        activations = from_fixed_point(ints, frac_bits).astype(np.float32)
    return activations


def weights_kcrs(layer) -> np.ndarray:
    return layer.weights.reshape(*layer.weights.shape, 1, 1) if layer.op == "linear" else layer.weights


def output_khw(layer) -> np.ndarray:
    return layer.output.reshape(-1, 1, 1) if layer.op == "linear" else layer.output


def _channel_granule(pe) -> int:
    """Channel blocks in whole groups: of M for N:M sparsity, of a SIMD vector for vector skipping."""
    if pe.sparsity == "n_m_weights":
        return parse_n_m(pe.n_m_pattern)[1]
    if pe.sparsity == "zero_skip_weight_vectors":
        return pe.activation_lanes
    return 1


def run_layer(hw, layer, events: list[tuple[int, str, int, str]] | None = None) -> LayerRun:
    """Simulate ``layer`` (a trace layer) on the hardware config ``hw``.

    If ``events`` is a list, one ``(cycle, stage, tile index, what)`` line per stage event is appended to it:
    a timeline a person can read when a timing test fails.
    """
    env = simpy.Environment()

    def log(stage: str, tile, what: str) -> None:
        if events is not None:
            events.append((int(env.now), stage, tile.index, what))

    word_bytes = hw.word_bytes
    dram = Dram(env, hw.dram)
    glb = GlobalBuffer(env, hw.global_buffer, word_bytes)
    noc = Noc(env, hw.noc, word_bytes)
    pe = build_pe_array(hw.pe_array)
    decoder = Decoder(env, hw.decoder, word_bytes) if hw.decoder.at != "none" else None

    geometry = geometry_of(layer)
    activations = operand_input(hw, layer)
    experts = None
    sized_weights = weights_kcrs(layer)
    if hw.pe_array.pe.sparsity == "mixture_of_experts":
        experts = _map_experts(hw, layer, activations, geometry)
        layer = experts.reorder(layer)
        # The router's filters follow the layer's, so that one sizer sizes both.
        router = experts.router_weights.reshape(experts.experts, *weights_kcrs(layer).shape[1:])
        sized_weights = np.concatenate([weights_kcrs(layer), router.astype(np.float32)])
    sizer = SliceSizer(activations, sized_weights, output_khw(layer), value_bits=8 * word_bytes)
    compressed = any(fmt != "U" for fmt in vars(hw.formats.global_buffer).values())
    if isinstance(pe, CartesianPeArray):  # planar tiling: bands of rows, weights streamed
        tiling = tile_layer_planar(
            geometry,
            global_buffer_bytes=hw.global_buffer.capacity_bytes,
            word_bytes=word_bytes,
            layer_name=layer.name,
            footprint_words=buffer_footprint_words(hw, geometry, sizer, include_weights=False)
            if compressed
            else None,
        )
    else:
        tiling = tile_layer(
            geometry,
            columns=hw.pe_array.columns,
            filter_lanes=hw.pe_array.pe.filter_lanes,
            weight_spad_bytes=hw.pe_array.pe.weight_spad_bytes,
            global_buffer_bytes=hw.global_buffer.capacity_bytes,
            word_bytes=word_bytes,
            layer_name=layer.name,
            footprint_words=buffer_footprint_words(hw, geometry, sizer) if compressed else None,
            channel_granule=_channel_granule(hw.pe_array.pe),
        )
    weight_ranges = None
    if experts is not None:
        tiling, weight_ranges = expert_tiles(tiling, experts, layer.name)
    pe.prepare(
        activations,
        geometry,
        tiling,
        weights_kcrs(layer),
        layer.bias,
        experts=experts,
        activation=layer.activation,
    )
    tiles = tiling.tiles
    traffic = layer_traffic(hw, tiling, sizer, weight_ranges)

    def decode_hops(bits, placements) -> list:
        if decoder is None or decoder.at not in placements or not bits.total:
            return []
        return [decoder.decode(bits.payload // sizer.value_bits, bits.metadata)]

    buffer_halves = simpy.Store(env, capacity=2)
    loaded = simpy.Store(env)
    pe_inbox = simpy.Store(env, capacity=1)
    finished = simpy.Store(env, capacity=1)
    drained = [env.event() for _ in tiles]

    def loader():
        for tile in tiles:
            yield buffer_halves.put(tile.index)
            log("loader", tile, "start")
            t = traffic[tile.index]
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
                yield drained[tile.index - 1]
                yield from transfer(env, [glb.read(t.psum_in_words), noc.send(t.psum_in_words)])
            log("distributor", tile, "sent")
            yield pe_inbox.put(tile)

    def compute():
        for _ in tiles:
            waited_from = env.now
            tile = yield pe_inbox.get()
            pe.stall_cycles += env.now - waited_from
            work = pe.work(tile)
            log("pe_array", tile, f"compute {work.cycles} cycles")
            yield env.timeout(work.cycles)
            pe.busy_cycles += work.cycles
            waited_from = env.now
            yield finished.put(tile)
            pe.stall_cycles += env.now - waited_from

    def writer():
        for _ in tiles:
            tile = yield finished.get()
            t = traffic[tile.index]
            yield from transfer(env, [noc.send(t.out_words), glb.write(t.out_words)])
            if t.dram_write_bytes:
                yield from transfer(env, [glb.read(t.dram_write_words), dram.write(t.dram_write_bytes)])
            log("writer", tile, "drained")
            drained[tile.index].succeed()
            yield buffer_halves.get()

    for stage in (loader, distributor, compute, writer):
        env.process(stage())
    done = env.process(writer_done(env, drained))
    env.run(until=done)
    return LayerRun(int(env.now), dram, glb, noc, pe, tiling, traffic, decoder, experts)


def _map_experts(hw, layer, activations: np.ndarray, geometry: ConvGeometry) -> ExpertMapping:
    """The layer's experts, router and routing on the operands the machine uses (see mapping.experts)."""
    pe = hw.pe_array.pe
    return map_experts(
        lambda: im2col_bands(activations, geometry),
        weights_kcrs(layer).reshape(geometry.filters, -1),
        layer.bias,
        experts=pe.moe_experts,
        top_k=pe.moe_top_k,
        seed=pe.moe_seed,
        layer_name=layer.name,
    )


def writer_done(env: simpy.Environment, drained: list[simpy.Event]):
    """Ends when every tile's results have been written back."""
    if drained:
        yield env.all_of(drained)
