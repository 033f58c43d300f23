"""The accelerator: builds the components from a hardware config, wires them and runs one layer.

The run of a layer is a four-stage pipeline of simpy processes, one event per tile transaction:

    loader       DRAM -> global buffer: the tile's weights and input rows      (waits for a free buffer half)
    distributor  global buffer -> NoC -> PEs: weights, multicast inputs, and the partial sums of the previous
                 channel block (which must first have come back: a true data dependency)
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

from sparsesim.components import Dram, GlobalBuffer, Noc, PeArray
from sparsesim.core import transfer
from sparsesim.mapping import ConvGeometry, LayerTiling, tile_layer


@dataclass
class LayerRun:
    """The raw outcome of simulating one layer: totals, components and tiling (rendered by the report)."""

    cycles: int
    dram: Dram
    global_buffer: GlobalBuffer
    noc: Noc
    pe_array: PeArray
    tiling: LayerTiling

    @property
    def components(self):
        return (self.dram, self.global_buffer, self.noc, self.pe_array)


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
    pe = PeArray(hw.pe_array)

    geometry = geometry_of(layer)
    tiling = tile_layer(
        geometry,
        columns=hw.pe_array.columns,
        filter_lanes=hw.pe_array.pe.filter_lanes,
        weight_spad_bytes=hw.pe_array.pe.weight_spad_bytes,
        global_buffer_bytes=hw.global_buffer.capacity_bytes,
        word_bytes=word_bytes,
        layer_name=layer.name,
    )
    pe.prepare(input_chw(layer), geometry, tiling)
    tiles = tiling.tiles

    buffer_halves = simpy.Store(env, capacity=2)
    loaded = simpy.Store(env)
    pe_inbox = simpy.Store(env, capacity=1)
    finished = simpy.Store(env, capacity=1)
    drained = [env.event() for _ in tiles]

    def loader():
        for tile in tiles:
            yield buffer_halves.put(tile.index)
            log("loader", tile, "start")
            words = tile.weight_words + tile.input_words
            yield from transfer(env, [dram.read(words * word_bytes), glb.write(words)])
            log("loader", tile, "loaded")
            yield loaded.put(tile)

    def distributor():
        for _ in tiles:
            tile = yield loaded.get()
            words = tile.weight_words + tile.input_words
            yield from transfer(env, [glb.read(words), noc.send(words)])
            if tile.psum_in_words:
                yield drained[tile.index - 1]
                yield from transfer(env, [glb.read(tile.psum_in_words), noc.send(tile.psum_in_words)])
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
            yield from transfer(env, [noc.send(tile.out_words), glb.write(tile.out_words)])
            if tile.dram_write_words:
                yield from transfer(
                    env, [glb.read(tile.dram_write_words), dram.write(tile.dram_write_words * word_bytes)]
                )
            log("writer", tile, "drained")
            drained[tile.index].succeed()
            yield buffer_halves.get()

    for stage in (loader, distributor, compute, writer):
        env.process(stage())
    done = env.process(writer_done(env, drained))
    env.run(until=done)
    return LayerRun(int(env.now), dram, glb, noc, pe, tiling)


def writer_done(env: simpy.Environment, drained: list[simpy.Event]):
    """Ends when every tile's results have been written back."""
    if drained:
        yield env.all_of(drained)
