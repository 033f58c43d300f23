"""The mapper: each layer's mapping, searched for the objective the user names.

1. **The space** (:mod:`sparsesim.mapping.space`): the mappings the machine's dataflow allows whose buffer
   tiles fit the global buffer at the real compressed sizes of their slices (twice: double-buffered).
2. **The fast estimate** ranks every one of them: the words each port moves, counted from the loop bounds
   as Timeloop counts them and scaled by each tensor's compression in that port's format (measured on the
   whole real tensor), over the port's bandwidth, against the PE array's busy cycles (computed on the real
   operands for each PE-tile shape: the PE work does not depend on the loops above the PE tile).
3. **The best are simulated exactly**, in the estimate's order, as long as their PE tiles add up to at most
   :data:`SIMULATED_TILES` (the best-rated one always is, and the best-rated of each dataflow when the
   machine may run several, and those the estimate rates exactly as the last one simulated: the budget
   does not split a tie; most layers' spaces are simulated whole), and the best simulation is the
   layer's run: the estimate ranks, the simulation decides. Ratings within :data:`NEAR` of the best
   count as equal: the estimate's maximum over the ports and the PEs cannot rank them.

Objectives: ``cycles`` (then energy), ``energy`` (then cycles) or ``edp`` (energy x cycles). Everything
is deterministic: the space is listed in a fixed order and ties go to the earlier candidate. The run
reports the size of the space, how many mappings were simulated, and the mapping chosen.

Ignored: mappings that split the filters or channels of a PE tile below the lanes and scratchpad the
machine has (they leave hardware idle); loop orders inside a buffer tile other than rows innermost (see
:mod:`sparsesim.mapping.space`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparsesim.errors import SimulationError
from sparsesim.mapping import LayerMapping, tiles_of
from sparsesim.mapping.loopnest import DIMS
from sparsesim.mapping.space import KEEPS, candidates, extents, words_moved
from sparsesim.mapping.traffic import mapping_footprint_words
from sparsesim.sparse import row_stationary

#: How each objective orders (cycles, energy pJ): the first element decides, the second breaks ties.
OBJECTIVES: dict[str, Callable[[int, float], tuple[float, float]]] = {
    "cycles": lambda cycles, energy: (cycles, energy),
    "energy": lambda cycles, energy: (energy, cycles),
    "edp": lambda cycles, energy: (cycles * energy, cycles),
}
#: The best-rated mappings are simulated, in order, while their PE tiles add up to at most this many (the
#: best-rated one always is): every mapping of a small space, the best few of a large one.
SIMULATED_TILES = 2048
#: Row stationary: the splits of the scratchpads' pairs into filters x channels searched per layer (see
#: :func:`row_stationary_tiles`).
ROW_STATIONARY_SPLITS = 4
#: Ratings within this factor of the best are below the estimate's resolution: equal to it (see
#: :meth:`Rater.key` for what then orders them).
NEAR = 1.005


@dataclass(frozen=True)
class Search:
    """What the mapper did for one layer."""

    objective: str
    space: int  # mappings in the layer's space (legal, fitting)
    simulated: int  # of them, simulated exactly

    def as_dict(self) -> dict:
        return {"objective": self.objective, "space": self.space, "simulated": self.simulated}


def pe_tile_of(setup, dataflow: str = "output_stationary") -> tuple[int, int, int | None]:
    """The PE tile's filters and channels for an output-stationary or planar dataflow, rows left to the
    search (row stationary has several: :func:`row_stationary_tiles`)."""
    hw, geometry = setup.hw, setup.geometry
    if dataflow == "planar":
        return geometry.filters, geometry.channels, None
    pe = hw.pe_array.pe
    filters = min(geometry.filters, hw.pe_array.columns * pe.filter_lanes)
    held = pe.weight_spad_bytes // hw.word_bytes // (pe.filter_lanes * setup.kernel_words.spad)
    channels = geometry.channels if setup.weights_resident else min(geometry.channels, held)
    granule = setup.granule
    if channels >= granule:
        channels = channels // granule * granule
    if channels < 1:
        raise SimulationError(
            f"{setup.name}: no tile fits the PE weight scratchpad: {pe.filter_lanes} filter lanes x "
            f"kernels of {setup.kernel_words.spad} words need "
            f"{pe.filter_lanes * setup.kernel_words.spad * hw.word_bytes} bytes, "
            f"pe_array.pe.weight_spad_bytes is {pe.weight_spad_bytes}"
        )
    return filters, channels, None


def row_stationary_tiles(setup) -> list[tuple[int, int]]:
    """The PE tiles' ``(filters, channels)`` the mapper tries under row stationary: for ``c`` channels of
    :func:`~sparsesim.mapping.space.extents` (the whole layer's, halved, ...), as many filters as the weight
    scratchpads then hold (each PE holds a filter row of every pair of its set:
    :func:`sparsesim.sparse.row_stationary.max_pairs`, counted on the fold of the layer's widest rows, which
    has the fewest sets).

    Which split is best is a trade on the NoC: the inputs go again to every filter group (``C H W x K / k``
    words), the partial sums out and back for every channel block after the first (``2 K P Q x C / c``).
    With ``k c`` = the pairs the scratchpads hold, their sum is least at ``c* = sqrt(2 k c P Q / (H W))``;
    the :data:`ROW_STATIONARY_SPLITS` extents nearest ``c*`` (by ratio) are searched, the rest being
    further from the least traffic and each costing the estimate a pass over all its tiles."""
    hw, geometry = setup.hw, setup.geometry
    array = hw.pe_array
    widest = row_stationary.fold(array.rows, array.columns, geometry.kernel_r, geometry.out_height)
    budget = row_stationary.max_pairs(widest, array.pe.weight_spad_bytes // hw.word_bytes, geometry.kernel_s)
    found = []
    for channels in extents(geometry.channels):
        if channels < geometry.channels and channels >= setup.granule:
            channels = channels // setup.granule * setup.granule
        filters = min(geometry.filters, budget // channels)
        if filters >= 1 and (filters, channels) not in found:
            found.append((filters, channels))
    outputs = geometry.out_height * geometry.out_width
    best = math.sqrt(2 * budget * outputs / (geometry.height * geometry.width))
    nearest = sorted(found, key=lambda tile: (abs(math.log(tile[1] / best)), tile))[:ROW_STATIONARY_SPLITS]
    return [tile for tile in found if tile in nearest]  # in the order of extents: whole channels first


def space_of(setup) -> list[LayerMapping]:
    """The layer's space over the dataflows the machine may use (``pe_array.dataflow``; see
    :mod:`sparsesim.mapping.space`); :class:`SimulationError` if no mapping fits."""
    space: list[LayerMapping] = []
    refusals = []
    for dataflow in setup.hw.pe_array.dataflows:
        try:
            space += _space(setup, dataflow)
        except SimulationError as error:
            refusals.append(str(error))
    if not space:
        raise SimulationError("; ".join(refusals))
    return space


def _space(setup, dataflow: str) -> list[LayerMapping]:
    """The layer's space under ``dataflow``; the output-stationary channel block is halved until some
    mapping fits, as a last resort; :class:`SimulationError` if none does even with one channel."""
    hw, geometry = setup.hw, setup.geometry
    capacity = hw.global_buffer.capacity_bytes

    known: dict[tuple, bool] = {}

    def fits(mapping: LayerMapping) -> bool:
        # What a buffer tile holds depends on its extents, what it keeps and whether its outputs are
        # partial sums: PE tiles of other rows often make the same buffer tiles.
        extents = tuple(mapping.buffer_extent(dim) for dim in DIMS)
        key = (extents, mapping.buffer_keeps, mapping.extent("C") < geometry.channels)
        if key not in known:
            footprint = mapping_footprint_words(hw, geometry, setup.sizer, mapping)
            known[key] = 2 * footprint * hw.word_bytes <= capacity
        return known[key]

    if dataflow == "row_stationary":
        tiles = row_stationary_tiles(setup)
        if not tiles:
            raise SimulationError(
                f"{setup.name}: row stationary: a PE's weight scratchpad "
                f"(pe_array.pe.weight_spad_bytes = {hw.pe_array.pe.weight_spad_bytes}) does not hold one "
                f"filter row of {geometry.kernel_s} words"
            )
        space = [
            mapping
            for filters, channels in tiles
            for mapping in candidates(geometry, (filters, channels, None), fits, dataflow=dataflow)
        ]
        filters, channels = min(tiles, key=lambda tile: tile[0] * tile[1])
        what = f"one output row of {filters} filters over {channels} channels (row stationary)"
    elif dataflow == "planar":
        filters, channels, _ = pe_tile_of(setup, dataflow)
        keeps = (frozenset({"Inputs", "Outputs"}),)
        # The coarsest bands that fit only: SCNN's PE work is worked out anew for every banding (as long as
        # a whole simulation), and finer bands gained it 1 % of its cycles on the shipped trace.
        space = candidates(
            geometry, (filters, channels, None), fits, keeps, frozenset(), 1, row_steps=1, dataflow=dataflow
        )
        what = f"one output row of {filters} filters with its input rows"
    else:
        filters, channels, _ = pe_tile_of(setup, dataflow)
        keeps = (frozenset({"Inputs", "Outputs"}),) if setup.weights_resident else KEEPS
        in_turn = setup.mechanism.filter_groups_in_turn
        while True:
            space = candidates(
                geometry,
                (filters, channels, None),
                fits,
                keeps,
                groups_in_turn=in_turn,
                every_tile=not setup.weights_resident,
            )
            # A mechanism that needs whole filters in a PE (ReLU early termination) cannot take fewer.
            whole = setup.mechanism.needs_whole_filters and channels == geometry.channels
            if space or channels == 1 or whole:
                break
            channels = max(1, -(-channels // 2) // setup.granule * setup.granule)
        what = f"one output row of {filters} filters over {channels} channel{'s' if channels > 1 else ''}"
        if whole:
            what += f" (whole filters: {setup.mechanism.kind()} needs them in a PE)"
    if not space:
        raise SimulationError(
            f"{setup.name}: no tile fits the global buffer: {what} does not fit double-buffered in "
            f"global_buffer.capacity_bytes = {capacity}"
        )
    return space


def search(setup, objective: str = "cycles", events: list | None = None):
    """The layer's best run over its space for ``objective`` (see the module docstring): a
    :class:`~sparsesim.accelerator.LayerRun` whose ``search`` says what was searched. ``events``: the
    chosen mapping's pipeline events are appended to it (its run is repeated to log them)."""
    if objective not in OBJECTIVES:
        raise SimulationError(f"unknown mapping objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    space = space_of(setup)
    rank = OBJECTIVES[objective]
    rates = Rater(setup)
    keys = [rates.key(mapping, rank) for mapping in space]
    # The estimate cannot tell ratings within NEAR of the best apart (a PE-bound layer's mappings rate
    # within its partial-sum waits): they rank as equal, by what breaks the estimate's ties.
    near = NEAR * min(key[0] for key in keys)
    keys = [(max(key[0], near), *key[1:]) for key in keys]
    ranked = sorted(range(len(space)), key=lambda i: (keys[i], i))
    # The best-rated mapping of each dataflow is simulated whatever the budget: the estimate compares
    # mappings of one dataflow better than across them (their PE work differs in kind).
    leaders: dict[str, int] = {}
    for i in ranked:
        leaders.setdefault(space[i].dataflow, i)
    leading = set(leaders.values())
    best, best_key, best_tiling, simulated, tiles, last = None, None, None, 0, 0, None
    for position, i in enumerate(ranked):
        # Past the budget, only the other dataflows' leaders, and mappings the estimate cannot tell from the
        # last one simulated (which of them comes first is an accident of the space's order).
        chosen = i in leading or keys[i] == last
        if simulated and tiles >= SIMULATED_TILES and not chosen:
            continue
        tiling = tiles_of(setup.geometry, space[i], setup.kernel_words.buffer, setup.weights_resident)
        if simulated and tiles + len(tiling.tiles) > SIMULATED_TILES and not chosen:
            tiles = SIMULATED_TILES
            continue
        last = keys[i]
        run = setup.simulate(tiling)
        simulated += 1
        tiles += len(tiling.tiles)
        key = (rank(run.cycles, run.energy_pj), position)
        if best_key is None or key < best_key:
            best, best_key, best_tiling = run, key, tiling
    if events is not None:
        best = setup.simulate(best_tiling, events)
    setup.retain(best_tiling)
    best.search = Search(objective, len(space), simulated)
    return best


class Rater:
    """The fast estimate of :mod:`sparsesim.mapping.space` on one machine: ``(cycles, energy pJ)``."""

    def __init__(self, setup):
        self.setup = setup
        hw = setup.hw
        self.word_bytes = hw.word_bytes
        table = setup.energy_table
        self.pj = {
            "dram": table["dram"]["read"] * hw.word_bytes / hw.dram.burst_bytes,
            "buffer_read": table["global_buffer"]["read"],
            "buffer_write": table["global_buffer"]["write"],
            "noc": table["noc"]["transfer"],
        }
        # Words per uncompressed word of each tensor in DRAM's and the buffer's formats, on the real data.
        formats = hw.formats
        self.scales = (_compression(setup, formats.dram), _compression(setup, formats.global_buffer))
        self.pe_busy: dict[tuple, int] = {}  # (PE tile, dataflow) -> the PE array's busy cycles
        self._words: dict = {}
        self._ports: dict = {}  # mapping -> its ports' busy cycles, summed

    def key(self, mapping: LayerMapping, rank) -> tuple:
        """The estimate's order for an objective's ``rank``: its measure, then fewer PE tiles (each is a
        transaction, whose latencies the estimate counts on the ports but not in the pipeline's bubbles:
        the estimate ties when the PEs bound the layer), then less time on the ports in all (a port close
        to the PEs' time stalls them in the simulation, which the estimate's maximum does not see), then
        the other measure."""
        first, second = rank(*self.rate(mapping))
        return first, self._words_of(mapping).tiles, self._ports[mapping], second

    def _words_of(self, mapping: LayerMapping):
        if mapping not in self._words:
            kernel_words = 0 if self.setup.weights_resident else self.setup.kernel_words.buffer
            self._words[mapping] = words_moved(self.setup.geometry, mapping, kernel_words, *self.scales)
        return self._words[mapping]

    def rate(self, mapping: LayerMapping) -> tuple[int, float]:
        setup, hw = self.setup, self.setup.hw
        shape = (mapping.pe_tile, mapping.dataflow)
        if shape not in self.pe_busy:
            self.pe_busy[shape] = setup.pe_busy(tiles_of(setup.geometry, mapping, setup.kernel_words.buffer))
        words = self._words_of(mapping)
        wb = self.word_bytes
        gb, noc = hw.global_buffer, hw.noc
        dram_latency = hw.dram.latency_cycles
        decoder = hw.decoder.latency_cycles if hw.decoder.at != "none" else 0
        fill_latency = dram_latency + (decoder if hw.decoder.at == "global_buffer_input" else 0)
        send_latency = noc.latency_cycles + (decoder if hw.decoder.at != "global_buffer_input" else 0)
        # Each port is held for every transaction through it: the latencies on its path, then its bytes.
        loads, sends = words.tiles * fill_latency, words.tiles * send_latency
        outs, psums = words.tiles * noc.latency_cycles, words.psum_sends * noc.latency_cycles
        drains = words.drains * dram_latency
        dram = (words.dram_read + words.dram_write) * wb / hw.dram.bandwidth_bytes_per_cycle + loads + drains
        on_noc = words.noc * wb / noc.bandwidth_bytes_per_cycle + sends + outs + psums
        reads = words.buffer_read * wb / gb.read_bandwidth_bytes_per_cycle + sends + psums + drains
        writes = words.buffer_write * wb / gb.write_bandwidth_bytes_per_cycle + loads + outs
        if gb.banks < 2:  # one port of the smaller bandwidth
            shared = min(gb.read_bandwidth_bytes_per_cycle, gb.write_bandwidth_bytes_per_cycle)
            buffer = (
                (words.buffer_read + words.buffer_write) * wb / shared + sends + psums + drains + loads + outs
            )
        else:
            buffer = max(reads, writes)
        # A tile that continues the partial sums of one d tiles before it waits for them to go back to the
        # buffer and come out again (each way over the NoC and a buffer port, after its latency), less the
        # d - 1 tiles the PEs compute meanwhile (at their average).
        slowest = min(noc.bandwidth_bytes_per_cycle, gb.read_bandwidth_bytes_per_cycle)
        back, tiles, sums = words.continuing
        waits = 0.0
        if back.size:
            per_tile = self.pe_busy[shape] / max(1, words.tiles)
            trips = 2 * (noc.latency_cycles * tiles + sums * (wb / slowest))
            waits = float(np.maximum(0.0, trips - (back - 1) * per_tile * tiles).sum())
        self._ports[mapping] = int(dram + buffer + on_noc)
        cycles = max(self.pe_busy[shape] + waits, dram, buffer, on_noc)
        energy = (
            (words.dram_read + words.dram_write) * self.pj["dram"]
            + words.buffer_read * self.pj["buffer_read"]
            + words.buffer_write * self.pj["buffer_write"]
            + words.noc * self.pj["noc"]
        )
        return int(cycles), energy


def _compression(setup, formats) -> tuple[float, float, float]:
    """The whole weights', inputs' and outputs' words in ``formats`` (one level's) per uncompressed word."""
    sizer, geometry = setup.sizer, setup.geometry
    bits = setup.value_bits
    filters, channels = geometry.filters, geometry.channels
    wholes = (
        (sizer.weights, formats.weights, (0, filters, 0, channels)),
        (sizer.inputs, formats.inputs, (0, channels, 0, geometry.height)),
        (sizer.outputs, formats.outputs, (0, filters, 0, geometry.out_height)),
    )
    ratios = []
    for size, fmt, window in wholes:
        plain = size("U", *window).words(bits)
        ratios.append(size(fmt, *window).words(bits) / plain if plain else 1.0)
    return ratios[0], ratios[1], ratios[2]


__all__ = ["OBJECTIVES", "SIMULATED_TILES", "Rater", "Search", "search", "space_of"]
