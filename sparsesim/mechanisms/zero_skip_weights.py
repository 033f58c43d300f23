"""Zero-weight skipping (Cambricon-X, Zhang et al., MICRO 2016): a PE holds its filter's nonzero weights and
fetches only the activations they need; each filter lane walks its outputs on its own (see
:mod:`sparsesim.mechanisms.sequential`), ``activation_lanes`` nonzero weights of the channel block per cycle,
each read with its index (``input_spad_metadata_read``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from sparsesim.config import MechanismConfig
from sparsesim.mapping import LayerTiling
from sparsesim.mechanisms.base import Plan
from sparsesim.mechanisms.datapath import nonzero_products
from sparsesim.mechanisms.sequential import OutputSequentialPe, SequentialWork


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="zero_skip_weights"):
    """Zero weights skipped: a lane issues only its filter's nonzero weights (Cambricon-X)."""


class ZeroSkipWeights(OutputSequentialPe):
    Config = Config
    #: Whether zero activations are skipped too (an inner join of the two nonzero masks: SparTen).
    skip_zero_activations: ClassVar[bool] = False

    def prepare(self, plan: Plan, tiling: LayerTiling) -> SequentialWork:
        operands = plan.operands
        geometry = operands.geometry
        weights = operands.weights_kcrs.reshape(geometry.filters, -1)
        positions = geometry.kernel_positions
        items = {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            items[start] = nonzero_products(
                operands.input_chw[start:stop],
                dataclasses.replace(geometry, channels=stop - start),
                weights[:, start * positions : stop * positions],
                self.skip_zero_activations,
            )
        return SequentialWork(plan, items)
