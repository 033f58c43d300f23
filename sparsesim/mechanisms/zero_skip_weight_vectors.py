"""SIMD-vector weight skipping (the machine Scalpel prunes for, Yu et al., ISCA 2017): a PE issues the weights
of a filter ``activation_lanes`` consecutive input channels at a time and skips only the vectors that are all
zero: unstructured zeros rarely empty a whole vector, SIMD-aligned block pruning does. A vector is one cycle
of all lanes: its MACs are lanes-wide, zero weights included. Output-sequential lanes
(:mod:`sparsesim.mechanisms.sequential`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.config import MechanismConfig
from sparsesim.mapping import LayerTiling
from sparsesim.mechanisms.base import Plan
from sparsesim.mechanisms.datapath import nonzero_weight_vectors
from sparsesim.mechanisms.sequential import OutputSequentialPe, SequentialWork


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="zero_skip_weight_vectors"):
    """All-zero SIMD weight vectors (activation_lanes channels wide) skipped (Scalpel)."""


class ZeroSkipWeightVectors(OutputSequentialPe):
    Config = Config

    def channel_granule(self) -> int:
        return self.activation_lanes

    def prepare(self, plan: Plan, tiling: LayerTiling) -> SequentialWork:
        operands = plan.operands
        geometry = operands.geometry
        n_windows = geometry.out_height * geometry.out_width
        items = {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            vectors = nonzero_weight_vectors(operands.weights_kcrs[:, start:stop], self.activation_lanes)
            items[start] = np.repeat((vectors * self.activation_lanes)[:, None], n_windows, axis=1)
        return SequentialWork(plan, items)
