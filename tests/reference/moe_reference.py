"""Cycle-stepped reference of a mixture-of-experts tile (router, then the routed outputs).

Phase 1, in the first filter group's tiles only: the router's ``E`` filters are dealt to the filter lanes in
turn (router filter ``e`` to lane ``e % filter_lanes``); lane ``(l, PE row i)`` scores the tile's windows
``i, i + rows, ...`` with each of its router filters, ``macs_per_output`` MACs each. Phase 2, once every lane
has finished phase 1 (the selection gates the experts): lane ``(filter k, PE row i)`` computes its windows
``i, i + rows, ...`` that are routed to ``k``'s expert, ``macs_per_output`` MACs each. A lane performs up to
``lanes`` MACs of its current output per cycle. Written one loop iteration per cycle, with Python lists only.
"""

from __future__ import annotations

from tests.reference.sequential_reference import run_lane_queues


def reference_moe_tile_cycles(
    routed_kp, filters, windows, rows, lanes, macs_per_output, router_experts, filter_lanes
):
    """Cycles of one tile. ``routed_kp[k][p]``: output (k, p) is computed; ``router_experts``: 0 for tiles
    outside the first filter group, else ``E``; ``filter_lanes``: lanes of the array (columns x PE lanes)."""
    router_queues = []
    for lane in range(filter_lanes):
        for row in range(rows):
            mine = [e for e in range(router_experts) if e % filter_lanes == lane]
            router_queues.append([macs_per_output for _ in windows[row::rows] for _ in mine])
    expert_queues = []
    for k in filters:
        for row in range(rows):
            expert_queues.append([macs_per_output for p in windows[row::rows] if routed_kp[k][p]])
    return run_lane_queues(router_queues, lanes) + run_lane_queues(expert_queues, lanes)
