"""N:M structured weight sparsity (a sparse tensor core, e.g. NVIDIA Ampere's 2:4).

The broadcast PEs of :mod:`sparsesim.mechanisms.dense`; each lane owns whole groups of M input channels and
issues N slots per group, zero weights or not, when the layer's weights follow the pattern (at most N
nonzero weights in every M consecutive channels, in whole channel groups of a block); each slot reads the
index that picks its input (``input_spad_metadata_read``). A layer whose weights do not follow the pattern
(dense weights, or a channel count that is not a multiple of M) runs dense; the report says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesim.config import MechanismConfig, param
from sparsesim.mapping import LayerTiling, Tile
from sparsesim.mechanisms.base import TileWork
from sparsesim.mechanisms.dense import BroadcastPe, BroadcastWork
from sparsesim.sparse.activation_work import lockstep_cycles
from sparsesim.sparse.structured import conforms_n_m, n_m_window_cycles, parse_n_m


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="n_m_weights"):
    """N of every M weights issued (sparse tensor core); a layer not following the pattern runs dense."""

    pattern: str = param(
        "2:4", "At most N nonzero weights in every M input channels; N MACs issued per group."
    )

    @classmethod
    def cross_field_problems(
        cls, values: Mapping[str, Any], bad_paths: set[str], prefix: str
    ) -> list[tuple[str, str]]:
        path = prefix + "pattern"
        if path in bad_paths:
            return []
        try:
            parse_n_m(values[path])
        except ValueError as error:
            return [(path, str(error))]
        return []


@dataclass(frozen=True)
class NmWork(BroadcastWork):
    used: bool = False


class NmWeights(BroadcastPe):
    Config = Config

    def __init__(self, config: Config, array, word_bytes: int = 2):
        super().__init__(config, array, word_bytes)
        self.n, self.m = parse_n_m(config.pattern)

    def channel_granule(self) -> int:
        return self.m

    def prepare(self, plan, tiling: LayerTiling) -> NmWork:
        weights = plan.operands.weights_kcrs
        used = tiling.channels_per_block % self.m == 0 and conforms_n_m(weights, self.n, self.m)
        dense = super().prepare(plan, tiling)
        if not used:
            return NmWork(plan, dense.block_cycles, dense.block_nonzeros, used=False)
        geometry = plan.operands.geometry
        cycles = {}
        for start, nonzeros in dense.block_nonzeros.items():
            channels = min(geometry.channels, start + tiling.channels_per_block) - start
            per_window = n_m_window_cycles(
                channels // self.m, self.activation_lanes, geometry.kernel_positions, self.n
            )
            cycles[start] = np.full(nonzeros.shape[0], per_window, dtype=np.int64)
        return NmWork(plan, cycles, dense.block_nonzeros, used=True)

    def tile_work(self, prepared: NmWork, tile: Tile) -> TileWork:
        if not prepared.used:
            return super().tile_work(prepared, tile)
        geometry = prepared.plan.operands.geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        per_window = prepared.block_cycles[tile.channel_start][windows]
        n_windows = per_window.shape[0]
        n_filters = tile.filter_stop - tile.filter_start
        active_pes_per_window = -(-n_filters // self.filter_lanes)
        channels = tile.channel_stop - tile.channel_start
        operands = n_windows * channels * geometry.kernel_positions
        # N slots issued per group of M channels, zero weights or not; each slot's index picks its input.
        issued = n_windows * channels // self.m * self.n * geometry.kernel_positions
        actions = {
            "compute": n_filters * issued,
            "gated_compute": 0,
            "skipped_compute": n_filters * (operands - issued),
            "input_spad_read": active_pes_per_window * issued,
            "input_spad_metadata_read": n_filters * issued,
            "weight_spad_read": n_filters * issued,
            "psum_spad_update": n_filters * int(per_window.sum()),
        }
        return TileWork(lockstep_cycles(per_window, self.rows), actions)

    def summary(self, prepared: NmWork, array) -> dict:
        return {"pattern": self.config.pattern, "used": prepared.used}
