"""Cycle-stepped reference of an N:M sparse PE (sparse tensor core), one loop iteration per cycle.

Each lane owns whole groups of M channels of the channel block (groups dealt out like channels are, lane
``l`` owning groups ``[floor(l*g/L), floor((l+1)*g/L))``). For a window, a lane's FIFO holds, for each of
its groups and each kernel position, N slots. Every cycle every lane issues one slot: for each filter, slot
``i`` multiplies the filter's ``i``-th nonzero weight of that group and position (if it has one) with the
activation its index selects. PE rows take consecutive windows in lockstep, as in the dense PE.
"""

from __future__ import annotations


def _activation(input_chw, c, y, x):
    if 0 <= y < len(input_chw[0]) and 0 <= x < len(input_chw[0][0]):
        return float(input_chw[c][y][x])
    return 0.0


def reference_n_m_tile(input_chw, weights_kcrs, tile, geometry, rows, lanes, n, m, psums):
    """Run one tile; accumulate into ``psums[(k, y, x)]``; return (cycles, MACs issued)."""
    n_groups = (tile.channel_stop - tile.channel_start) // m
    owned = [range((lane * n_groups) // lanes, ((lane + 1) * n_groups) // lanes) for lane in range(lanes)]
    windows = [
        (y, x) for y in range(tile.out_row_start, tile.out_row_stop) for x in range(geometry.out_width)
    ]
    filters = range(tile.filter_start, tile.filter_stop)
    cycles = issued = 0
    for first in range(0, len(windows), rows):
        group = windows[first : first + rows]
        fifos = [
            [
                [
                    (g, r, s, i)
                    for g in owned[lane]
                    for r in range(geometry.kernel_r)
                    for s in range(geometry.kernel_s)
                    for i in range(n)
                ]
                for lane in range(lanes)
            ]
            for _ in group
        ]
        while any(fifo for row in fifos for fifo in row):
            cycles += 1
            for (y, x), row in zip(group, fifos, strict=True):
                for fifo in row:
                    if not fifo:
                        continue
                    g, r, s, i = fifo.pop(0)
                    issued += len(filters)
                    first_channel = tile.channel_start + g * m
                    for k in filters:
                        stored = [
                            c
                            for c in range(first_channel, first_channel + m)
                            if weights_kcrs[k][c][r][s] != 0
                        ]
                        if i < len(stored):
                            c = stored[i]
                            a = _activation(
                                input_chw,
                                c,
                                y * geometry.stride - geometry.padding + r,
                                x * geometry.stride - geometry.padding + s,
                            )
                            psums[(k, y, x)] = psums.get((k, y, x), 0.0) + a * float(weights_kcrs[k][c][r][s])
    return cycles, issued
