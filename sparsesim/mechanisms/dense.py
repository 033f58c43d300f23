"""Dense broadcast PEs (DaDianNao; Eyeriss without gating): every MAC takes its cycle and its energy.

The PE array of the output-stationary dataflow (see :mod:`sparsesim.mapping.tiling` for who works on what):
each PE multiplies every input activation it receives by ``filter_lanes`` weights per cycle, one per filter
it owns, and takes up to ``activation_lanes`` activations per cycle, one per lane, each lane from its own
slice of the channel block. The PE columns share each activation (it is multicast); the PE rows work on
consecutive windows in lockstep. The cycles of a tile are computed exactly from the real activations by
:mod:`sparsesim.sparse.activation_work`: here one lane-cycle per operand, zero or not.

Dense and gating PEs of one MAC can also run Eyeriss's row-stationary dataflow (``pe_array.dataflow``): a
tile's cycles are then those of its fold onto the array (:mod:`sparsesim.sparse.row_stationary`), which do
not depend on the data; the actions (one per MAC or operand) are the same.

:class:`BroadcastPe` is the base of the other broadcast mechanisms (gating, zero-skipping, N:M, bit-serial
terms), which change how a window's cycles and its actions are counted.

Ignored: the pipeline fill of the MAC/adder tree, and the scratchpads' own bandwidth (one read per operand
per cycle is assumed to be available).

Actions (one per word or per MAC, summed over all PEs): ``compute`` MAC performed and charged;
``gated_compute`` MAC whose cycle is spent with its datapath gated; ``skipped_compute`` MAC never issued;
``input_spad_read`` activation read by a PE; ``input_spad_metadata_read`` offset read with a zero-free
activation; ``weight_spad_read`` weight read for a charged MAC (gating also skips the weight read, as
Eyeriss does); ``psum_spad_update`` one accumulation per filter lane per cycle of a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sparsesim.config import MechanismConfig
from sparsesim.errors import SimulationError
from sparsesim.mapping import LayerTiling, Tile
from sparsesim.mechanisms.base import Mechanism, Plan, TileWork
from sparsesim.sparse import row_stationary
from sparsesim.sparse.activation_work import lockstep_cycles, window_cycles, window_nonzero_counts


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="dense"):
    """Dense PEs: every MAC takes its cycle and its energy, zero operands or not (DaDianNao)."""

    # Windows over the PE rows, or a 1-D convolution per PE (Eyeriss): see sparsesim.sparse.row_stationary.
    DATAFLOWS = ("output_stationary", "row_stationary")


@dataclass(frozen=True)
class BroadcastWork:
    """Per channel block (by its first channel): each window's cycles and its nonzero operands."""

    plan: Plan
    block_cycles: dict[int, np.ndarray]
    block_nonzeros: dict[int, np.ndarray]
    dataflow: str = "output_stationary"  # how the tiles spread over the PEs (their cycles)


class BroadcastPe(Mechanism):
    """Broadcast PEs whose lanes pace each window by :func:`window_cycles` of ``pace``."""

    #: How a lane paces a window (a mode of :func:`sparsesim.sparse.activation_work.window_cycles`).
    pace: ClassVar[str] = "none"
    #: Zero operands skipped (no cycle, no energy, their offsets read) or gated (cycle, no energy).
    skips: ClassVar[bool] = False
    gates: ClassVar[bool] = False

    def prepare(self, plan: Plan, tiling: LayerTiling) -> BroadcastWork:
        """Per channel block: every window's cycles and nonzero operands, from the real activations."""
        geometry = plan.operands.geometry
        counts = window_nonzero_counts(
            plan.operands.input_chw, geometry.kernel_r, geometry.kernel_s, geometry.stride, geometry.padding
        ).reshape(geometry.channels, -1)
        cycles, nonzeros = {}, {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            block = counts[start : start + tiling.channels_per_block]
            cycles[start] = self.block_cycles(block, geometry.kernel_positions)
            nonzeros[start] = block.sum(axis=0, dtype=np.int64)
        dataflow = _dataflow(tiling)
        if dataflow == "row_stationary" and self.pace not in ("none", "zero_gating"):
            # A skipping PE's cycles depend on its own input row's zeros: not modelled under row stationary.
            raise SimulationError(f"{self.kind()} PEs do not run the row-stationary dataflow")
        return BroadcastWork(plan, cycles, nonzeros, dataflow)

    def prepare_key(self, tiling: LayerTiling) -> tuple[int, str]:
        """The work is counted per channel block, and timed as the dataflow spreads it."""
        return tiling.channels_per_block, _dataflow(tiling)

    def block_cycles(self, block_counts: np.ndarray, kernel_positions: int) -> np.ndarray:
        """Each window's cycles in a channel block, from its channels' nonzero counts per window."""
        return window_cycles(block_counts, self.activation_lanes, kernel_positions, self.pace)

    def tile_work(self, prepared: BroadcastWork, tile: Tile) -> TileWork:
        geometry = prepared.plan.operands.geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        per_window = prepared.block_cycles[tile.channel_start][windows]
        n_windows = per_window.shape[0]
        n_filters = tile.filter_stop - tile.filter_start
        if prepared.dataflow == "row_stationary":
            fold = row_stationary.fold(
                self.rows, self.columns, geometry.kernel_r, tile.out_row_stop - tile.out_row_start
            )
            pairs = n_filters * (tile.channel_stop - tile.channel_start)
            cycles = row_stationary.tile_cycles(fold, pairs, geometry.out_width, geometry.kernel_s)
        else:
            cycles = lockstep_cycles(per_window, self.rows)
        active_pes_per_window = -(-n_filters // self.filter_lanes)
        operands = n_windows * (tile.channel_stop - tile.channel_start) * geometry.kernel_positions
        nonzeros = int(prepared.block_nonzeros[tile.channel_start][windows].sum())
        zeros = operands - nonzeros
        charged = n_filters * (nonzeros if (self.skips or self.gates) else operands)
        actions = {
            "compute": charged,
            "gated_compute": n_filters * zeros if self.gates else 0,
            "skipped_compute": n_filters * zeros if self.skips else 0,
            "input_spad_read": active_pes_per_window * (nonzeros if self.skips else operands),
            "input_spad_metadata_read": active_pes_per_window * nonzeros if self.skips else 0,
            "weight_spad_read": charged,
            "psum_spad_update": n_filters * int(per_window.sum()),
        }
        return TileWork(cycles, actions)


def _dataflow(tiling: LayerTiling) -> str:
    return "output_stationary" if tiling.mapping is None else tiling.mapping.dataflow


class Dense(BroadcastPe):
    Config = Config
