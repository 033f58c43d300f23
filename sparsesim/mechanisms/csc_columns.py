"""Both-operand skipping in the compressed domain (Eyeriss v2, Chen et al., JETCAS 2019): a PE holds its
filters' weights as compressed sparse columns (one column per input channel and kernel position, its
nonzero weights over the PE's filters) and its input activations compressed too; for every *nonzero*
activation it reads that activation's weight column and issues one MAC per nonzero weight in it,
``filter_lanes`` of them per cycle (the SIMD MACs). Zero activations and zero weights cost no cycle.

The PE array is the broadcast one of :mod:`sparsesim.mapping.tiling` (PE columns own ``filter_lanes``
filters each, PE rows consecutive output windows), but its PEs do not run in lockstep: each keeps its own
data and works through its windows ``i, i + rows, ...`` on its own (:func:`~sparsesim.mechanisms.datapath.
lane_cycles`), the slowest PE ending the tile. A window of PE ``(row i, column j)`` takes::

    sum over the window's nonzero activations a of
        ceil(nonzero weights of a's column among j's filters / filter_lanes)

cycles, divided over ``activation_lanes`` (``ceil``), and at least 1 (the cycle that hands its partial sums
on, as every PE of sparsesim). With one filter lane this is the number of effectual MACs (both operands
nonzero): exactly the cycles of the Eyeriss v2 PE that Sparseloop's validation (Wu et al., MICRO 2022,
fig. 12) reports on eight pruned MobileNet layers (see README, "Validation").

Assumed, not from the paper: the SIMD lanes take a column's nonzero weights two at a time whatever filters
they belong to (a column of 3 nonzero weights takes 2 cycles). Ignored: the cycles to read a column's
address and count (pipelined with the MACs), and empty columns (no cycle).

Actions: ``compute`` one per effectual MAC; ``skipped_compute`` the rest of the dense loop nest;
``input_spad_read`` and ``input_spad_metadata_read`` one per nonzero activation a PE reads (its value and
its count); ``weight_spad_read`` one per MAC; ``psum_spad_update`` one per MAC (each MAC updates its
filter's partial sum in the psum scratchpad).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsesim.config import MechanismConfig
from sparsesim.errors import SimulationError
from sparsesim.mapping import LayerTiling, Tile
from sparsesim.mechanisms.base import Mechanism, Plan, TileWork
from sparsesim.mechanisms.datapath import DATAPATH_BAND_VALUES, lane_cycles, window_columns
from sparsesim.sparse.geometry import ConvGeometry

__all__ = ["CscColumns", "column_work"]


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="csc_columns"):
    """Per nonzero activation, its compressed weight column: one MAC per nonzero weight (Eyeriss v2)."""


def column_work(
    input_chw: np.ndarray,
    geometry: ConvGeometry,
    weights_kn: np.ndarray,
    group_starts: Sequence[int],
    lanes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per PE and window: its issue cycles, its effectual MACs; and per window the nonzero activations.

    ``weights_kn``: ``(K, C*R*S)`` the filters' weights over the channels of ``input_chw``, in ``(c, r, s)``
    order; ``group_starts``: the first filter of each PE's group (increasing; a group runs to the next
    start, at most ``lanes`` filters). Returns ``(cycles (G, P), macs (G, P), nonzero activations (P,))``,
    int64, for the ``G`` groups.
    """
    nonzero = (weights_kn != 0).astype(np.int64)
    per_column = np.add.reduceat(nonzero, np.asarray(group_starts), axis=0)  # (G, CRS) nonzero weights
    # Both products are exact in float32: integers up to 2**24, far above C*R*S*L.
    issues = (-(-per_column // lanes)).astype(np.float32)
    weights = per_column.astype(np.float32)
    n_windows = geometry.out_height * geometry.out_width
    width = geometry.out_width
    cycles = np.empty((len(group_starts), n_windows), dtype=np.int64)
    macs = np.empty((len(group_starts), n_windows), dtype=np.int64)
    activations = np.empty(n_windows, dtype=np.int64)
    rows_per_band = max(1, DATAPATH_BAND_VALUES // (width * weights_kn.shape[1]))
    for start in range(0, geometry.out_height, rows_per_band):
        stop = min(geometry.out_height, start + rows_per_band)
        band = slice(start * width, stop * width)
        operands = (window_columns(input_chw, geometry, start, stop) != 0).astype(np.float32)
        cycles[:, band] = np.rint(issues @ operands)
        macs[:, band] = np.rint(weights @ operands)
        activations[band] = np.rint(operands.sum(axis=0))
    return cycles, macs, activations


@dataclass(frozen=True)
class ColumnWork:
    """Per channel block (by its first channel): :func:`column_work` of every PE group of the layer, and
    per PE tile's filter range ``(first, stop)`` the rows of its groups."""

    plan: Plan
    blocks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    groups: dict[tuple[int, int], slice]


def _filter_ranges(filters: int, filters_per_group: int) -> list[tuple[int, int]]:
    """The PE tiles' filter ranges: the mapping's blocks of ``filters_per_group`` filters."""
    return [(k, min(filters, k + filters_per_group)) for k in range(0, filters, filters_per_group)]


class CscColumns(Mechanism):
    Config = Config

    def prepare_key(self, tiling: LayerTiling):
        """The work is counted per channel block and PE tile's filters (the PEs' filter groups)."""
        return tiling.channels_per_block, tiling.filters_per_group

    def prepare(self, plan: Plan, tiling: LayerTiling) -> ColumnWork:
        operands = plan.operands
        geometry = operands.geometry
        positions = geometry.kernel_positions
        weights = operands.weights_kcrs.reshape(geometry.filters, -1)
        # Each PE tile's filters are dealt to PEs, filter_lanes at a time from the tile's first filter.
        starts: list[int] = []
        groups = {}
        for first, last in _filter_ranges(geometry.filters, tiling.filters_per_group):
            begin = len(starts)
            starts.extend(range(first, last, self.filter_lanes))
            groups[first, last] = slice(begin, len(starts))
        blocks = {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            blocks[start] = column_work(
                operands.input_chw[start:stop],
                dataclasses.replace(geometry, channels=stop - start),
                weights[:, start * positions : stop * positions],
                starts,
                self.filter_lanes,
            )
        return ColumnWork(plan, blocks, groups)

    def tile_work(self, prepared: ColumnWork, tile: Tile) -> TileWork:
        geometry = prepared.plan.operands.geometry
        cycles, macs, activations = prepared.blocks[tile.channel_start]
        pes = prepared.groups.get((tile.filter_start, tile.filter_stop))
        if pes is None:  # a tiling that does not split the filters in blocks of its filters_per_group
            raise SimulationError(
                f"csc_columns: tile {tile.index}'s filters [{tile.filter_start}, {tile.filter_stop}) are not "
                "a block of the mapping's PE tile"
            )
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        per_window = np.maximum(-(-cycles[pes, windows] // self.activation_lanes), 1)
        tile_macs = int(macs[pes, windows].sum())
        n_pes, n_windows = per_window.shape
        algorithmic = (
            (tile.filter_stop - tile.filter_start)
            * n_windows
            * (tile.channel_stop - tile.channel_start)
            * geometry.kernel_positions
        )
        reads = n_pes * int(activations[windows].sum())
        actions = {
            "compute": tile_macs,
            "gated_compute": 0,
            "skipped_compute": algorithmic - tile_macs,
            "input_spad_read": reads,
            "input_spad_metadata_read": reads,
            "weight_spad_read": tile_macs,
            "psum_spad_update": tile_macs,
        }
        return TileWork(lane_cycles(per_window, self.rows), actions)
