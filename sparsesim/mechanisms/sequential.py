"""Output-sequential PEs: each MAC lane walks whole outputs on its own instead of sharing broadcast
activations. The base of weight skipping (Cambricon-X), both-operand skipping (SparTen), SIMD-vector skipping
(Scalpel), weight repetition (UCNN), kernel patterns (PatDNN) and ReLU early termination (SnaPEA).

Lane ``(filter k, PE row i)`` works through windows ``i, i + rows, ...`` of its filter; each output takes
``ceil(items / activation_lanes)`` cycles (at least the one that hands it on), where a mechanism's
:meth:`OutputSequentialPe.prepare` says how many work items (MACs issued) each output has in each channel
block; the slowest lane ends the tile. Each MAC reads its weight and its activation; a mechanism that reads
metadata with its MACs says how many MACs share one read (``macs_per_metadata_read``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesim.mapping import Tile
from sparsesim.mechanisms.base import Mechanism, Plan, TileWork
from sparsesim.mechanisms.datapath import lane_cycles


@dataclass(frozen=True)
class SequentialWork:
    """Per channel block (by its first channel): the work items of every output, ``(K, P)``."""

    plan: Plan
    block_items: dict[int, np.ndarray]
    #: MACs per metadata read (an offset or index read with each MAC: 1; none read: 0).
    macs_per_metadata_read: int = 1
    #: A mechanism's own per-layer results (the terminations, UCNN's groups, the patterns...).
    detail: Any = None


class OutputSequentialPe(Mechanism):
    """Lanes that walk whole outputs; subclasses give the work items per output."""

    def prepare_key(self, tiling):
        """The work items are counted per channel block."""
        return tiling.channels_per_block

    def tile_work(self, prepared: SequentialWork, tile: Tile) -> TileWork:
        geometry = prepared.plan.operands.geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        filters = slice(tile.filter_start, tile.filter_stop)
        items = prepared.block_items[tile.channel_start][filters, windows]
        # An output takes ceil(items / lanes) cycles, and at least the one that hands it on.
        per_output = np.maximum(-(-items // self.activation_lanes), 1)
        cycles = lane_cycles(per_output, self.rows)
        macs = int(items.sum())
        n_filters, n_windows = items.shape
        algorithmic = (
            n_filters * n_windows * (tile.channel_stop - tile.channel_start) * geometry.kernel_positions
        )
        per_read = prepared.macs_per_metadata_read
        actions = {
            "compute": macs,
            "gated_compute": 0,
            "skipped_compute": algorithmic - macs,
            "input_spad_read": macs,
            "input_spad_metadata_read": macs // per_read if per_read else 0,
            "weight_spad_read": macs,
            "psum_spad_update": int(per_output.sum()),
        }
        return self.adjust(prepared, filters, windows, actions, algorithmic, cycles)

    def adjust(
        self,
        prepared: SequentialWork,
        filters: slice,
        windows: slice,
        actions: dict,
        algorithmic: int,
        cycles: int,
    ) -> TileWork:
        """The tile's work from the counts above; a mechanism that counts differently overrides this."""
        return TileWork(cycles, actions)
