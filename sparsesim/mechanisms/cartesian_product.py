"""SCNN's PE array (Parashar et al., ISCA 2017): planar-tiled PEs that multiply every nonzero weight by every
nonzero activation (the Cartesian product) and scatter the products to banked accumulators.

Two kinds: ``cartesian_product`` (PT-IS-CP-sparse: only nonzero operands are issued) and
``cartesian_product_dense`` (PT-IS-CP-dense: the same PEs and dataflow issuing every operand, zeros
included: the dense twin that isolates the mechanism). Their dataflow is ``planar`` (``pe_array.dataflow``).

The machine: ``rows x columns`` PEs; each multiplies ``filter_lanes`` (F) weights by ``activation_lanes``
(I) activations per cycle and sends the F x I products through a crossbar to ``accumulator_banks`` (A)
banks of ``accumulator_bank_entries`` partial sums (double-buffered), products meeting in a bank stalling
the multipliers or queueing (``arbitration``). The rules of one PE (issue order,
where a product goes, bank conflicts, accumulator capacity) are those of :mod:`sparsesim.sparse.cartesian`.

How SCNN's planar tiling maps onto sparsesim's tile ``(filter group x output-row block x channel block)``:

- **A tile is a band of output rows with all filters and all channels**
  (the ``planar`` mapper, :func:`~sparsesim.mapping.tile_layer_planar`). SCNN keeps a layer's activations
  in the PEs' IARAM / OARAM, planar-tiled, and streams the weights; here the global buffer plays the part of
  the
  pooled IARAM + OARAM: the band is as many output rows as its input rows (with halo) and outputs fit in half
  of it, in their storage formats. The whole output plane is one band when it fits; otherwise each band is
  planar-tiled over the whole PE grid on its own and its halo input rows are fetched again, their products on
  the neighbouring band's outputs wasted.
- **The distributor's multicast of a tile** stands for SCNN's two deliveries: the band's activations, each PE
  receiving its own planar tile (every word sent once), and the weights, broadcast to every PE (once). The
  weights stream through the global buffer (they are not counted in its capacity) and come again with
  every band.
- **Inside a tile**, the filters are processed in output-channel groups of ``Kc`` (``output_channel_group``,
  or as many as the accumulator banks hold with each PE's halo), consecutive filters, each group over all
  channels. A PE works through the group at its own pace; **the PEs synchronise at the end of each group**
  (the slowest PE sets the group's time: load imbalance is paid there). Then each PE sends its halo partial
  sums to their owners, one word per cycle (the busiest PE sets the exchange's time), while the next group
  computes in the other accumulator buffer; a group waits for the previous exchange before starting its
  own; the tile ends with the last exchange. So a tile takes ``sum_g max(C_g, H_{g-1}) + H_last`` cycles
  (``C_g``: the slowest PE's cycles in group ``g``, ``H_g``: the busiest PE's halo words).

Ignored: the accumulators' drain into OARAM (ReLU, compression; assumed to overlap the next group), the
weight FIFO's depth (the PEs are assumed decoupled within a group), the per-PE capacity of IARAM / OARAM
(the pooled global buffer is checked instead: ``input_spad_bytes``, ``weight_spad_bytes`` and
``psum_spad_bytes`` are not used by this array; the accumulators are ``accumulator_banks x
accumulator_bank_entries``), the pipeline fill of the multiplier array and crossbar, and the halo links'
contention.

Actions (summed over all PEs): ``compute`` a product kept (accumulated: an algorithmic MAC);
``wasted_compute`` a multiply whose product is dropped (beyond the layer's edges, another band's outputs);
``skipped_compute`` an algorithmic MAC never multiplied; ``gated_compute`` never; ``input_spad_read`` an
activation read from IARAM (once per channel and group); ``input_spad_metadata_read`` its index (sparse
mode); ``weight_spad_read`` a weight read from the weight FIFO (once per activation vector);
``weight_spad_metadata_read`` its index (sparse mode); ``crossbar_transfer`` a kept product routed to a bank;
``psum_spad_update`` an accumulator-bank update (one per kept product); ``halo_transfer`` a halo partial sum
sent to a neighbouring PE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.config import ConfigBlock, MechanismConfig, block, energy_param, param
from sparsesim.errors import SimulationError
from sparsesim.mapping import LayerTiling, Tile
from sparsesim.mechanisms.base import DatapathOutput, Mechanism, Plan, TileWork
from sparsesim.mechanisms.datapath import apply_activation
from sparsesim.quantities import percent, ratio
from sparsesim.sparse.cartesian import (
    PeGrid,
    group_work,
    issue_activations,
    issue_weights,
    kept_sums,
    lay_back,
    output_channel_group,
    plan_band,
)

#: The counters of a layer's summary that add up over tiles.
_SUMMED = (
    "products",
    "kept_products",
    "wasted_products",
    "halo_products",
    "steps",
    "conflict_stall_cycles",
    "pe_busy_cycles",
    "barrier_idle_cycles",
    "group_cycles",
    "halo_exchange_cycles",
    "halo_words",
    "groups",
)


@dataclass(frozen=True, kw_only=True)
class Energy(ConfigBlock):
    """Energy of SCNN's own actions, pJ."""

    wasted_compute: float = energy_param(
        1.0, "pJ per multiply whose product is dropped (beyond the layer's edges); assumed as a MAC."
    )
    weight_spad_metadata_read: float = energy_param(
        0.25, "pJ per weight index read (a 4-bit index vs a 16-bit word, as for activations)."
    )
    crossbar_transfer: float = energy_param(
        0.25,
        "pJ per product sent through a PE's crossbar to an accumulator bank (assumed: an eighth of an "
        "inter-PE NoC word).",
    )
    halo_transfer: float = energy_param(
        2.0, "pJ per partial sum sent to a neighbouring PE (SCNN's halos; assumed as a NoC word)."
    )


@dataclass(frozen=True, kw_only=True)
class CartesianConfig(MechanismConfig):
    """The parameters both Cartesian-product kinds share."""

    DATAFLOWS = ("planar",)

    accumulator_banks: int = param(
        32,
        "Accumulator banks the F x I products of a cycle are scattered to through a crossbar; products "
        "meeting in one bank in one cycle take one cycle each.",
        ge=1,
        le=256,
    )
    accumulator_bank_entries: int = param(
        32,
        "Partial sums per accumulator bank (per buffer; the banks are double-buffered); banks x entries "
        "bound the output-channel group.",
        ge=1,
        le=2**20,
    )
    output_channel_group: int = param(
        0,
        "Kc, the filters whose weights are broadcast together (the PEs synchronise after each group); 0 = as "
        "many as the accumulator banks hold with each PE's halo.",
        ge=0,
        le=2**20,
    )
    arbitration: str = param(
        "stall",
        "stall = no queues, a cycle's products wait for their busiest bank (the multipliers stall); queue = "
        "an unbounded queue per bank, the multipliers never wait and the banks drain after the group (an "
        "optimistic bound).",
        choices=("stall", "queue"),
    )
    Energy = Energy
    energy_pj: Energy = block(Energy, "Energy of SCNN's own actions.")


@dataclass(frozen=True, kw_only=True)
class Config(CartesianConfig, kind="cartesian_product"):
    """SCNN's planar-tiled PEs: each multiplies filter_lanes (F) nonzero weights by activation_lanes (I)
    nonzero activations per cycle, every pair, products scattered to accumulator banks."""


@dataclass(frozen=True, kw_only=True)
class DenseConfig(CartesianConfig, kind="cartesian_product_dense"):
    """SCNN's PEs and dataflow issuing every weight and activation, zeros included (PT-IS-CP-dense)."""


@dataclass(frozen=True)
class CartesianWork:
    """Every tile's work, the layer's accumulated sums ``(K, Hout, Wout)`` (before bias and activation) and
    its summary counters."""

    plan: Plan
    tile_work: dict[int, TileWork]
    sums: np.ndarray
    summary: dict


class CartesianProduct(Mechanism):
    Config = Config
    #: Zero operands issued too (the dense twin).
    dense = False

    def __init__(self, config: CartesianConfig, array, word_bytes: int = 2):
        super().__init__(config, array, word_bytes)
        self.grid = PeGrid(
            rows=array.rows,
            columns=array.columns,
            weights_per_vector=self.filter_lanes,
            activations_per_vector=self.activation_lanes,
            banks=config.accumulator_banks,
        )
        self.accumulator_entries = config.accumulator_banks * config.accumulator_bank_entries

    @property
    def mac_lanes(self) -> int:
        """Multipliers of the whole array."""
        return self.grid.multipliers

    def prepare(self, plan: Plan, tiling: LayerTiling) -> CartesianWork:
        """Work out every tile's cycles and actions, and the layer's sums, from the real operands."""
        operands = plan.operands
        geometry = operands.geometry
        bands = {
            rows: plan_band(geometry, self.grid, *rows)
            for rows in dict.fromkeys((tile.out_row_start, tile.out_row_stop) for tile in tiling.tiles)
        }
        group = self._group_size(list(bands.values()))
        sums = np.zeros((geometry.filters, geometry.out_height, geometry.out_width))
        summary: dict = dict.fromkeys(_SUMMED, 0)
        works = {}
        for tile in tiling.tiles:
            band = bands[(tile.out_row_start, tile.out_row_stop)]
            work, counters = self._tile(tile, band, operands, group, sums)
            works[tile.index] = work
            for key, n in counters.items():
                summary[key] += n
        summary.update(
            output_channel_group=group,
            bands=len(bands),
            pe_tile=list(next(iter(bands.values())).tile_shape),
            multipliers=self.grid.multipliers,
        )
        return CartesianWork(plan, works, sums, summary)

    def prepare_key(self, tiling: LayerTiling) -> tuple:
        """Every tile's work is worked out by its place in the tiling: the tiles' ranges, in order."""
        return tuple(
            (t.filter_start, t.filter_stop, t.channel_start, t.channel_stop, t.out_row_start, t.out_row_stop)
            for t in tiling.tiles
        )

    def tile_work(self, prepared: CartesianWork, tile: Tile) -> TileWork:
        return prepared.tile_work[tile.index]

    def _group_size(self, bands) -> int:
        """Kc: the configured one, or as many filters as every PE's accumulator region lets fit."""
        largest = max(int(band.accumulator_entries.max()) for band in bands)
        fitting = output_channel_group(bands, self.accumulator_entries)
        if self.config.output_channel_group:
            if self.config.output_channel_group > fitting:
                raise SimulationError(
                    f"pe_array.pe.mechanism.output_channel_group is {self.config.output_channel_group}, "
                    "but a PE's accumulator "
                    f"region holds {largest} outputs per filter, so the {self.accumulator_entries} "
                    f"accumulators (banks x entries) hold at most {fitting} filters"
                )
            return self.config.output_channel_group
        if fitting < 1:
            raise SimulationError(
                f"a PE's accumulator region holds {largest} outputs per filter, more than its "
                f"{self.accumulator_entries} accumulators (pe_array.pe.mechanism.accumulator_banks x "
                "accumulator_bank_entries): raise them, or lower global_buffer.capacity_bytes so that "
                "bands are smaller"
            )
        return fitting

    def _tile(
        self, tile: Tile, band, operands, group: int, sums: np.ndarray
    ) -> tuple[TileWork, dict[str, int]]:
        """One tile's work, its output sums (added to ``sums``) and its summary counters."""
        input_chw, weights_kcrs, geometry = operands.input_chw, operands.weights_kcrs, operands.geometry
        channels = slice(tile.channel_start, tile.channel_stop)
        activations = issue_activations(input_chw[channels], band, self.dense)
        halo_per_filter = int(band.halo_entries.max())
        counters = dict.fromkeys(_SUMMED, 0)
        compute = []  # C_g: the slowest PE's cycles in each group
        exchange = []  # H_g: the busiest PE's halo words after each group
        activation_reads = weight_reads = 0
        # The issued weights, laid back for the tile's sums.
        kernel = np.zeros(
            (tile.filter_stop - tile.filter_start, geometry.kernel_r, geometry.kernel_s, activations.channels)
        )
        for first in range(tile.filter_start, tile.filter_stop, group):
            n_filters = min(tile.filter_stop, first + group) - first
            weights = issue_weights(
                weights_kcrs[first : first + n_filters, channels], first, self.grid, self.dense
            )
            lay_back(weights, kernel, tile.filter_start)
            work = group_work(
                activations, weights, band, n_filters, first, arbitration=self.config.arbitration
            )
            slowest = int(work.cycles.max())
            compute.append(slowest)
            exchange.append(halo_per_filter * n_filters)
            activation_reads += work.activation_reads
            weight_reads += work.weight_reads
            counters["products"] += work.products
            counters["kept_products"] += work.kept_products
            counters["halo_products"] += work.halo_products
            counters["halo_words"] += int(band.halo_entries.sum()) * n_filters
            counters["steps"] += int(work.steps.sum())
            counters["conflict_stall_cycles"] += int(work.conflict_stall_cycles.sum())
            counters["pe_busy_cycles"] += int(work.cycles.sum())
            counters["barrier_idle_cycles"] += int((slowest - work.cycles).sum())
        filters = slice(tile.filter_start, tile.filter_stop)
        sums[filters, band.band_start : band.band_stop] += kept_sums(activations, kernel, band)
        # Each group waits for the previous group's halo exchange; the tile ends with the last exchange.
        cycles = sum(max(c, h) for c, h in zip(compute, [0, *exchange[:-1]], strict=True))
        cycles += exchange[-1] if exchange else 0
        counters["groups"] = len(compute)
        counters["group_cycles"] = sum(compute)
        counters["halo_exchange_cycles"] = cycles - sum(compute)
        counters["wasted_products"] = counters["products"] - counters["kept_products"]

        kept = counters["kept_products"]
        algorithmic = (
            (tile.filter_stop - tile.filter_start)
            * (tile.channel_stop - tile.channel_start)
            * geometry.kernel_positions
            * (tile.out_row_stop - tile.out_row_start)
            * geometry.out_width
        )
        indexed = 0 if self.dense else 1  # compressed operands carry an index each
        actions = {
            "compute": kept,
            "gated_compute": 0,
            "skipped_compute": algorithmic - kept,
            "wasted_compute": counters["wasted_products"],
            "input_spad_read": activation_reads,
            "input_spad_metadata_read": indexed * activation_reads,
            "weight_spad_read": weight_reads,
            "weight_spad_metadata_read": indexed * weight_reads,
            "crossbar_transfer": kept,
            "psum_spad_update": kept,
            "halo_transfer": counters["halo_words"],
        }
        return TileWork(int(cycles), actions), counters

    def output(self, prepared: CartesianWork) -> DatapathOutput:
        """The kept Cartesian products, as the accumulators summed them, then bias and activation."""
        operands = prepared.plan.operands
        values = prepared.sums + operands.bias.astype(np.float64)[:, None, None]
        return DatapathOutput(apply_activation(values, operands.activation))

    def summary(self, prepared: CartesianWork, array) -> dict:
        """The layer's Cartesian-product counters and their ratios."""
        s = dict(prepared.summary)
        multiplier_cycles = array.busy_cycles * self.grid.multipliers
        s["multiplier_utilization"] = ratio(s["products"], multiplier_cycles)
        s["kept_multiplier_utilization"] = ratio(s["kept_products"], multiplier_cycles)
        s["conflict_stall_fraction"] = ratio(s["conflict_stall_cycles"], s["pe_busy_cycles"])
        s["barrier_idle_fraction"] = ratio(s["barrier_idle_cycles"], s["group_cycles"] * self.grid.pes)
        s["wasted_fraction"] = ratio(s["wasted_products"], s["products"])
        s["halo_fraction"] = ratio(s["halo_products"], s["kept_products"])
        return s

    @classmethod
    def summary_table(cls, layers: list[dict]):
        rows = []
        for entry in layers:
            c = entry["mechanism"]["summary"]
            rows.append(
                [
                    entry["name"],
                    str(c["output_channel_group"]),
                    "x".join(str(n) for n in c["pe_tile"]),
                    str(c["bands"]),
                    *(
                        percent(c[key])
                        for key in (
                            "multiplier_utilization",
                            "kept_multiplier_utilization",
                            "conflict_stall_fraction",
                            "barrier_idle_fraction",
                            "wasted_fraction",
                            "halo_fraction",
                        )
                    ),
                ]
            )
        return (
            "Cartesian product (SCNN): multipliers busy with any product / with a kept one; PE cycles "
            "lost to bank conflicts; PE cycles idle at the group barriers; products dropped (wasted); kept "
            "products of a neighbour's outputs (halo)",
            HEADER,
            rows,
        )


class CartesianProductDense(CartesianProduct):
    Config = DenseConfig
    dense = True


HEADER = ["layer", "Kc", "PE tile", "bands", "busy", "kept", "conflicts", "barrier", "wasted", "halo"]
