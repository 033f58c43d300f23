"""Mixture of experts (MoEfication, Zhang et al., ACL Findings 2022) run on output-sequential lanes.

The layer's filters are split into ``experts`` equal groups by balanced k-means on the normalised filters; a
router of the experts' mean filters scores every output pixel and picks its ``top_k`` experts; only their
filters compute there, and only their weights are fetched (:mod:`sparsesim.mapping.experts`). Lossy: the
unrouted outputs are 0, and the functional check measures the error against the dense layer.

The machine runs the filters reordered so that each expert's are contiguous. Each filter lane walks only
the windows routed to its filter's expert (``ceil(C*R*S / activation_lanes)`` cycles per routed output, no
cycle for the others; the lane reads one routing-mask entry per window, ``input_spad_metadata_read``). The
router runs first, on the same lanes, in the tiles of the first filter group: its ``E`` mean filters are dealt
to the filter lanes, each scoring every window of the tile like a dense output; the experts' work waits for it
(the selection gates it), so a tile of the first filter group takes router + expert cycles.
``router_compute`` counts the router's MACs (not algorithmic computes of the layer; their operand reads are
counted with the others).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sparsesim.config import ConfigBlock, MechanismConfig, block, energy_param, param
from sparsesim.mapping import ConvGeometry, LayerTiling, Tile
from sparsesim.mapping.experts import ExpertMapping, expert_tiles, map_experts
from sparsesim.mechanisms.base import DatapathOutput, LayerOperands, Mechanism, Plan, TileWork
from sparsesim.mechanisms.datapath import im2col_bands, lane_cycles
from sparsesim.sparse.moe import activation_recall, experts_needed, moe_output, top_k_experts


@dataclass(frozen=True, kw_only=True)
class Energy(ConfigBlock):
    """Energy of the router's MACs, pJ."""

    router_compute: float = energy_param(1.0, "pJ per MAC of the router (the same 16-bit MAC as compute).")


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="mixture_of_experts"):
    """The layer's filters split into experts; a router picks top_k per output pixel and only their filters
    compute and have their weights fetched (MoEfication; lossy, error reported)."""

    experts: int = param(
        8,
        "Experts per layer, equal-size groups of filters found by balanced k-means on the normalised filters "
        "(the layer's filter count must be a multiple).",
        ge=1,
        le=4096,
    )
    top_k: int = param(2, "Experts each output pixel uses (the router's top k scores).", ge=1, le=4096)
    seed: int = param(0, "Seed of the k-means++ initialisation.", ge=0, le=2**32 - 1)
    Energy = Energy
    energy_pj: Energy = block(Energy, "Energy of the router's MACs.")

    @classmethod
    def cross_field_problems(
        cls, values: Mapping[str, Any], bad_paths: set[str], prefix: str
    ) -> list[tuple[str, str]]:
        """A mixture of experts selects at most all of its experts."""
        top_k, experts = prefix + "top_k", prefix + "experts"
        if {top_k, experts} & bad_paths or values[top_k] <= values[experts]:
            return []
        return [(top_k, f"must be <= {experts} = {values[experts]}, got {values[top_k]}")]


@dataclass(frozen=True)
class Routed:
    """The prepared layer: the routed outputs in the machine's filter order, the experts, and the layer's
    operands in its own order (not the plan's reordered copies, which the run no longer needs)."""

    geometry: ConvGeometry
    experts: ExpertMapping
    original: LayerOperands
    tiling: LayerTiling
    routed: np.ndarray


class MixtureOfExperts(Mechanism):
    Config = Config
    needs_whole_filters = True
    # An expert's weights are fetched once per filter group (sparsesim.mapping.experts): its tiles must run
    # one after the other.
    filter_groups_in_turn = True

    def plan(self, operands) -> Plan:
        """The layer's experts, router and routing on the operands the machine uses, and the layer with its
        filters reordered so that each expert's are contiguous; the router's filters follow the layer's in
        the weights the buffer and DRAM hold."""
        geometry = operands.geometry
        experts = map_experts(
            lambda: im2col_bands(operands.input_chw, geometry),
            operands.weights_kcrs.reshape(geometry.filters, -1),
            operands.bias,
            experts=self.config.experts,
            top_k=self.config.top_k,
            seed=self.config.seed,
            layer_name=operands.name,
        )
        order = experts.order
        run = replace(
            operands,
            weights_kcrs=operands.weights_kcrs[order],
            bias=operands.bias[order],
            output_khw=operands.output_khw[order],
        )
        router = experts.router_weights.reshape(experts.experts, *run.weights_kcrs.shape[1:])
        sized = np.concatenate([run.weights_kcrs, router.astype(np.float32)])
        return Plan(run, sized, state=(experts, operands))

    def retile(self, plan: Plan, tiling: LayerTiling):
        experts, _ = plan.state
        return expert_tiles(tiling, experts, plan.operands.name)

    def prepare(self, plan: Plan, tiling: LayerTiling) -> Routed:
        experts, original = plan.state
        return Routed(plan.operands.geometry, experts, original, tiling, experts.routed_in_run_order())

    def tile_work(self, prepared: Routed, tile: Tile) -> TileWork:
        """A mixture-of-experts tile: the router (first filter group only), then the routed outputs."""
        geometry, experts = prepared.geometry, prepared.experts
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        routed = prepared.routed[tile.filter_start : tile.filter_stop, windows]
        n_filters, n_windows = routed.shape
        macs_per_output = geometry.channels * geometry.kernel_positions
        cycles_per_output = -(-macs_per_output // self.activation_lanes)
        per_output = routed.astype(np.int64) * cycles_per_output
        cycles = lane_cycles(per_output, self.rows)
        router_outputs = 0
        if tile.filter_start == 0:
            # The router's E mean filters, dealt to the filter lanes in turn, score every window of the tile.
            lanes = self.columns * self.filter_lanes
            per_lane = np.zeros((-(-experts.experts // lanes) * lanes, n_windows), dtype=np.int64)
            per_lane[: experts.experts] = cycles_per_output
            cycles += lane_cycles(per_lane.reshape(-1, lanes, n_windows).sum(axis=0), self.rows)
            router_outputs = experts.experts * n_windows
        macs = int(routed.sum()) * macs_per_output
        router_macs = router_outputs * macs_per_output
        actions = {
            "compute": macs,
            "gated_compute": 0,
            "skipped_compute": n_filters * n_windows * macs_per_output - macs,
            "input_spad_read": macs + router_macs,
            "input_spad_metadata_read": n_filters * n_windows,  # one routing-mask entry per window and lane
            "weight_spad_read": macs + router_macs,
            "psum_spad_update": int(per_output.sum()) + router_outputs * cycles_per_output,
            "router_compute": router_macs,
        }
        return TileWork(cycles, actions)

    def output(self, prepared: Routed) -> DatapathOutput:
        """The routed outputs, computed whole (every MAC of their window), in the layer's filter order; the
        others never are."""
        experts, original = prepared.experts, prepared.original
        geometry = original.geometry
        shape = (geometry.filters, geometry.out_height, geometry.out_width)
        routed = experts.routed()
        values = moe_output(
            lambda: im2col_bands(original.input_chw, geometry),
            original.weights_kcrs.reshape(geometry.filters, -1),
            original.bias,
            routed,
            original.relu,
        ).reshape(shape)
        return DatapathOutput(values, ~routed.reshape(shape), "unrouted")

    def summary(self, prepared: Routed, array) -> dict:
        """What the mixture of experts computed, fetched and kept.

        ``weight_words``: expert weights fetched (router excluded) vs. the dense layer's. ``experts_needed``:
        the mean fraction of experts selected by at least one pixel of a group, for groups of 1 pixel, one
        output row, one tile's rows and the whole layer: why weight movement drops so much less than
        computes. ``recall``: how much of the trace's own output (the dense layer's, for a dense trace) the
        routing computes, and ``oracle_mass_recall`` the same if each pixel had picked the k experts of
        largest true activation mass (the partition's limit, whatever the router).
        """
        experts, original = prepared.experts, prepared.original
        return experts_summary(experts, original, prepared.tiling, array.actions, self.word_bytes)


def experts_summary(experts: ExpertMapping, original, tiling: LayerTiling, actions, word_bytes: int) -> dict:
    geometry = tiling.geometry
    count = experts.experts
    words_per_filter = geometry.channels * geometry.kernel_positions
    router_words = count * words_per_filter
    fetched = sum(tile.weight_words for tile in tiling.tiles) - router_words
    width = geometry.out_width
    pixels = experts.selected.shape[0]
    groups = {
        "pixel": np.arange(pixels),
        "output_row": np.arange(0, pixels, width),
        "tile": np.arange(0, pixels, tiling.out_rows_per_block * width),
        "layer": np.array([0]),
    }
    needed = {name: float(experts_needed(experts.selected, starts).mean()) for name, starts in groups.items()}
    reference = original.output_khw.reshape(geometry.filters, -1).astype(np.float64)
    routed = experts.routed()
    mass = np.stack([reference[experts.expert_of_filter == e].sum(axis=0) for e in range(count)], axis=1)
    oracle = experts.routed_from(top_k_experts(mass, experts.top_k))
    return {
        "construction": "MoEfication (Zhang et al. 2022): balanced k-means on normalised filters, "
        "mean-filter router, top-k per output pixel; no fine-tuning",
        "experts": count,
        "top_k": experts.top_k,
        "filters_per_expert": experts.expert_size,
        "router_macs": actions["router_compute"],
        "expert_macs": actions["compute"],
        "pixel_share_per_expert": [float(x) for x in experts.selected.mean(axis=0)],
        "weight_words": {
            "experts_fetched": int(fetched),
            "router": router_words,
            "dense_layer": geometry.filters * words_per_filter,
            "bytes_per_word": word_bytes,
        },
        "experts_needed": needed,
        "recall": activation_recall(reference, routed),
        "oracle_mass_recall": activation_recall(reference, oracle)["mass_recall"],
    }
