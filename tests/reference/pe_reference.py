"""Cycle-stepped reference model of the PE array: one loop iteration per cycle, written for clarity.

It follows the rules stated in :mod:`sparsesim.sparse.activation_work` and
:mod:`sparsesim.mechanisms.dense` literally, with Python lists and scalars only, so that the vectorised
fast model can be checked against it exactly on small real tensors.

For each tile: the tile's windows (output positions, raster order) are dealt to the PE rows ``rows`` at a
time. Each PE row gets one window; each of its activation lanes gets a FIFO of the operands of its channel
slice (channel-major, then r, then s); a zero-skipping lane's FIFO holds only nonzero operands. Every cycle,
every lane with work pops one operand and multiplies it with each filter of the group (accumulating into the
window's partial sums). The group of windows is done when every FIFO of every row is empty, and takes at
least one cycle.
"""

from __future__ import annotations

from sparsesim.mechanisms import mechanism_class


def _lane_slices(n_channels, lanes):
    return [((lane * n_channels) // lanes, ((lane + 1) * n_channels) // lanes) for lane in range(lanes)]


def _operand(input_chw, c, y, x):
    height, width = len(input_chw[0]), len(input_chw[0][0])
    if 0 <= y < height and 0 <= x < width:
        return float(input_chw[c][y][x])
    return 0.0  # padding


def reference_tile(
    input_chw, weights_kcrs, tile, geometry, rows, activation_lanes, filter_lanes, kind, psums
):
    """Run one tile cycle by cycle on PEs of mechanism ``kind`` (``dense``, ``zero_gating`` or
    ``zero_skip_activations``); accumulate into ``psums[(k, y, x)]``; return (cycles, actions)."""
    skipping = kind == "zero_skip_activations"
    gating = kind == "zero_gating"
    filters = list(range(tile.filter_start, tile.filter_stop))
    n_channels = tile.channel_stop - tile.channel_start
    slices = _lane_slices(n_channels, activation_lanes)
    windows = [
        (y, x) for y in range(tile.out_row_start, tile.out_row_stop) for x in range(geometry.out_width)
    ]
    actions = dict.fromkeys(mechanism_class(kind).actions(), 0)  # the same vocabulary as the fast model
    active_pes = -(-len(filters) // filter_lanes)  # PE columns that own a filter of the group
    cycles = 0
    for first in range(0, len(windows), rows):
        group = windows[first : first + rows]
        # queues[row][lane] = list of (c, r, s, value)
        queues = []
        for y, x in group:
            lanes = []
            for lo, hi in slices:
                fifo = []
                for c in range(tile.channel_start + lo, tile.channel_start + hi):
                    for r in range(geometry.kernel_r):
                        for s in range(geometry.kernel_s):
                            value = _operand(
                                input_chw,
                                c,
                                y * geometry.stride - geometry.padding + r,
                                x * geometry.stride - geometry.padding + s,
                            )
                            if value == 0.0 and skipping:
                                for _ in filters:
                                    actions["skipped_compute"] += 1
                                continue
                            fifo.append((c, r, s, value))
                lanes.append(fifo)
            queues.append(lanes)
        group_cycles = 0
        window_cycles = [0] * len(group)
        while any(fifo for lanes in queues for fifo in lanes) or group_cycles == 0:
            group_cycles += 1  # one cycle
            for row, lanes in enumerate(queues):
                if any(lanes):
                    window_cycles[row] += 1
                for fifo in lanes:
                    if not fifo:
                        continue
                    c, r, s, value = fifo.pop(0)
                    actions["input_spad_read"] += active_pes
                    if skipping:
                        actions["input_spad_metadata_read"] += active_pes
                    y, x = group[row]
                    for k in filters:
                        if gating and value == 0.0:
                            actions["gated_compute"] += 1
                            continue
                        actions["compute"] += 1
                        actions["weight_spad_read"] += 1
                        psums[(k, y, x)] = psums.get((k, y, x), 0.0) + value * float(weights_kcrs[k][c][r][s])
        # A window that had nothing to do still spent the one cycle of its group.
        for row in range(len(group)):
            actions["psum_spad_update"] += len(filters) * max(window_cycles[row], 1)
        cycles += group_cycles
    return cycles, actions
