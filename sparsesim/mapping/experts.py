"""Mapping a mixture-of-experts layer: experts made contiguous, and the expert weights each tile must fetch.

The mechanism (experts, router, top-k routing) is :mod:`sparsesim.sparse.moe`; this module places it on the
output-stationary tiling of :mod:`sparsesim.mapping.tiling`:

- **Filter order.** The mapper reorders the layer's filters so that each expert's filters are consecutive
  (experts in order, filters in their original order within an expert). A filter group of the PE array then
  holds whole experts (or a slice of one), so the lanes of a tile serve the same few experts: the tile ends
  with the busiest expert, not with the busiest of sixteen unrelated ones.
- **Routing.** Every output pixel's top-k experts, computed once from the real operands with the router's
  weights (the router's cycles and MACs are charged by the PE array, in the first filter group's tiles).
- **Weight fetches.** Each filter needs its whole window in one PE (one channel block), so weights stay
  resident in the PEs for all row blocks of their filter group, as in the dense machine. An expert's weights
  are fetched from DRAM the first time a tile of its filter group has a pixel routed to it, and never if no
  pixel of the layer is; the router's weights (``E`` filters) are fetched with the layer's first tile.

Ignored: the dependency between routing and fetching (a tile's experts are known when its weights are
fetched, as if the router ran a tile ahead), the storage of the routing masks (``E`` bits per pixel) and of
the router's weights in the global buffer (not counted in the tile footprint), and the PE scratchpad space
of the router's filters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sparsesim.errors import SimulationError
from sparsesim.mapping.tiling import LayerTiling
from sparsesim.sparse.checks import OperandBands
from sparsesim.sparse.moe import (
    balanced_kmeans_partition,
    experts_needed,
    mean_filter_router,
    routed_outputs,
    router_scores,
    top_k_experts,
)


@dataclass(frozen=True, eq=False)
class ExpertMapping:
    """One layer's experts, router and routing, and the filter order the machine runs it in."""

    experts: int
    top_k: int
    expert_of_filter: np.ndarray
    """``(K,)``: each filter's expert, in the layer's own filter order."""
    order: np.ndarray
    """``(K,)``: the layer's filter index of each filter as the machine runs them (experts contiguous)."""
    router_weights: np.ndarray
    """``(E, C*R*S)`` float64: the mean of each expert's filters."""
    router_bias: np.ndarray
    """``(E,)`` float64: the mean of each expert's biases."""
    selected: np.ndarray
    """``(P, E)`` bool: the experts each output pixel uses."""

    @property
    def filters(self) -> int:
        return len(self.expert_of_filter)

    @property
    def expert_size(self) -> int:
        return self.filters // self.experts

    def routed(self) -> np.ndarray:
        """``(K, P)`` bool in the layer's filter order: the outputs that are computed."""
        return routed_outputs(self.selected, self.expert_of_filter)

    def routed_from(self, selected: np.ndarray) -> np.ndarray:
        """``(K, P)`` bool in the layer's filter order for another selection ``(P, E)`` (e.g. an oracle's)."""
        return routed_outputs(selected, self.expert_of_filter)

    def routed_in_run_order(self) -> np.ndarray:
        """``(K, P)`` bool in the machine's filter order (expert ``e`` = filters ``[e*size, (e+1)*size)``)."""
        return routed_outputs(self.selected, self.expert_of_filter[self.order])

    def reorder(self, layer):
        """``layer`` (a trace layer) with its filters in the machine's order: weights, bias and output."""
        return replace(
            layer,
            weights=layer.weights[self.order],
            bias=layer.bias[self.order],
            output=layer.output[self.order],
        )


def map_experts(
    operands_pn: np.ndarray | OperandBands,
    weights_kn: np.ndarray,
    bias_k: np.ndarray,
    *,
    experts: int,
    top_k: int,
    seed: int,
    layer_name: str = "layer",
) -> ExpertMapping:
    """Split the layer's filters into experts, build the router, route every pixel (see the module doc).

    ``operands_pn``: the layer's (P, N) im2col operands, or their bands (as
    :func:`~sparsesim.sparse.moe.router_scores` takes them).

    :class:`SimulationError` if the filters cannot be split into ``experts`` equal experts or ``top_k``
    exceeds ``experts``.
    """
    filters = weights_kn.shape[0]
    if experts > filters or filters % experts:
        raise SimulationError(
            f"{layer_name}: {filters} filters cannot be split into pe_array.pe.mechanism.experts = {experts} "
            "experts of equal size (the filter count must be a multiple)"
        )
    if top_k > experts:
        raise SimulationError(f"{layer_name}: top_k {top_k} > experts {experts}")
    weights = np.asarray(weights_kn, dtype=np.float64)
    expert_of = balanced_kmeans_partition(weights, experts, seed)
    router, router_bias = mean_filter_router(weights, np.asarray(bias_k, dtype=np.float64), expert_of)
    selected = top_k_experts(router_scores(operands_pn, router, router_bias), top_k)
    order = np.argsort(expert_of, kind="stable")
    return ExpertMapping(experts, top_k, expert_of, order, router, router_bias, selected)


def expert_tiles(
    tiling: LayerTiling, mapping: ExpertMapping, layer_name: str = "layer"
) -> tuple[LayerTiling, list[list[tuple[int, int]]]]:
    """The tiling with each tile's ``weight_words`` set to the weights it really fetches, and per tile the
    ranges of the run's filters ``[k0, k1)`` they are; the router is the range ``[K, K + E)``.

    The ranges index the layer's filters in the machine's order followed by the router's filters.
    """
    geometry = tiling.geometry
    if tiling.n_channel_blocks != 1:
        raise SimulationError(
            f"{layer_name}: a mixture of experts routes on whole windows and keeps weights resident, but the "
            f"weight scratchpad holds {tiling.channels_per_block} of {geometry.channels} channels: raise "
            "pe_array.pe.weight_spad_bytes"
        )
    size = mapping.expert_size
    words_per_filter = geometry.channels * geometry.kernel_positions
    width = geometry.out_width
    fetched: set[tuple[int, int]] = set()  # (filter group's first filter, expert): weights in the PEs
    tiles, ranges = [], []
    for tile in tiling.tiles:
        first_expert = tile.filter_start // size
        last_expert = -(-tile.filter_stop // size)
        pixels = mapping.selected[tile.out_row_start * width : tile.out_row_stop * width]
        needed = experts_needed(pixels, [0])[0]
        tile_ranges = []
        for expert in range(first_expert, last_expert):
            # An expert straddling two filter groups is fetched per group, its part in each.
            if (tile.filter_start, expert) in fetched or not needed[expert]:
                continue
            fetched.add((tile.filter_start, expert))
            k0, k1 = max(expert * size, tile.filter_start), min((expert + 1) * size, tile.filter_stop)
            tile_ranges.append((k0, k1))
        if tile.index == 0:
            tile_ranges.append((mapping.filters, mapping.filters + mapping.experts))
        words = sum(k1 - k0 for k0, k1 in tile_ranges) * words_per_filter
        tiles.append(replace(tile, weight_words=words))
        ranges.append(tile_ranges)
    return replace(tiling, tiles=tuple(tiles)), ranges
