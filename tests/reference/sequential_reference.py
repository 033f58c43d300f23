"""Cycle-stepped reference of output-sequential PE lanes (weight skipping, both-operand skipping, SnaPEA).

Each output (filter ``k``, window ``p``) is a list of work items (MACs); a lane performs up to ``lanes``
items of its current output per cycle, and an output with no item still takes one cycle. Lane
``(filter k, PE row i)`` owns the tile's windows ``i, i + rows, ...`` in order. The tile ends when every
lane is done. Written one loop iteration per cycle, with Python lists only.
"""

from __future__ import annotations


def reference_items(operands_row, weights_row, skip_zero_activations):
    """An output's work items: its nonzero weights, or its pairs of nonzero weight and activation."""
    return sum(
        1
        for a, w in zip(operands_row, weights_row, strict=True)
        if w != 0.0 and (a != 0.0 or not skip_zero_activations)
    )


def run_lane_queues(queues, lanes):
    """Cycles until every lane has worked through its queue of outputs: each cycle, every lane does up to
    ``lanes`` work items of its current output (an output of 0 items still takes the cycle that hands it
    on)."""
    cycles = 0
    while any(queues):
        cycles += 1
        for queue in queues:
            if queue:
                queue[0] -= min(lanes, queue[0])
                if queue[0] == 0:
                    queue.pop(0)
    return cycles


def reference_tile_cycles(items_kp, filters, windows, rows, lanes=1):
    queues = []
    for k in filters:
        for row in range(rows):
            queues.append([items_kp[k][p] for p in windows[row::rows]])
    return run_lane_queues(queues, lanes)


def reference_vector_items(weights_crs, lanes):
    """A SIMD PE's work items for one output: ``lanes`` per vector of ``lanes`` consecutive input channels
    (at one kernel position) holding a nonzero weight; all-zero vectors are skipped."""
    channels, kernel_r, kernel_s = len(weights_crs), len(weights_crs[0]), len(weights_crs[0][0])
    vectors = 0
    for first in range(0, channels, lanes):
        for r in range(kernel_r):
            for s in range(kernel_s):
                if any(weights_crs[c][r][s] != 0.0 for c in range(first, min(channels, first + lanes))):
                    vectors += 1
    return vectors * lanes
