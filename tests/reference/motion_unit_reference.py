"""Cycle-stepped reference model of EVA²'s motion unit, written for clarity, not speed.

One loop iteration is one cycle. Motion estimation is the two-stage pipeline of
:mod:`sparsesim.components.motion_unit` stepped literally: the diff-tile producer takes candidates in the
order of :func:`sparsesim.sparse.motion.candidate_vectors` and, for each, the tiles in raster order,
``difference_lanes`` pixel values of the tile per cycle (a tile does not share a cycle with the next); it
writes a finished candidate's tile SADs into one of two buffer slots. The consumer takes the oldest full slot
and, for each activation in raster order, adds ``accumulate_lanes`` of its receptive field's tile SADs per
cycle, and in the activation's last cycle compares the sum with that activation's best so far (strictly
less wins, so the earlier candidate keeps a tie). A slot freed or filled at the end of a cycle is seen in the
next. The warp engine walks the outputs in (c, y, x) order and produces ``warp_lanes`` non-skipped outputs
per cycle; skipped outputs (all sources zero) take no cycle.

Pixel values are summed as Python floats in the order the hardware would; on float16 pixel values every sum
is exact, so the costs equal the vectorised model's.
"""

from __future__ import annotations


def _key_pixel(key, c, y, x):
    """The key frame with its edge replicated."""
    height, width = len(key[0]), len(key[0][0])
    return key[c][min(max(y, 0), height - 1)][min(max(x, 0), width - 1)]


def reference_motion_estimation(key, new, stride, radius_tiles, vectors, difference_lanes, accumulate_lanes):
    """Step the motion-estimation pipeline; return ``(cycles, best vectors, best costs)``.

    ``key`` and ``new`` are nested lists ``[c][y][x]``; ``vectors`` the candidates in tie-break order.
    Best vectors and costs are ``[ty][tx]`` lists.
    """
    channels, height, width = len(new), len(new[0]), len(new[0][0])
    tiles_y, tiles_x = height // stride, width // stride
    tile_list = [(ty, tx) for ty in range(tiles_y) for tx in range(tiles_x)]
    tile_values = [(c, i, j) for c in range(channels) for i in range(stride) for j in range(stride)]
    fields = {}
    for ty, tx in tile_list:
        fields[ty, tx] = [
            (y, x)
            for y in range(max(ty - radius_tiles, 0), min(ty + radius_tiles, tiles_y - 1) + 1)
            for x in range(max(tx - radius_tiles, 0), min(tx + radius_tiles, tiles_x - 1) + 1)
        ]
    best_cost = [[None] * tiles_x for _ in range(tiles_y)]
    best_vector = [[None] * tiles_x for _ in range(tiles_y)]

    slots = [None, None]  # None = free; else {"candidate": i, "sads": {...}, "full": bool}
    producer = None  # {"candidate", "slot", "tile", "offset", "sads", "sum"}
    consumer = None  # {"slot", "activation", "offset", "sum"}
    next_candidate = 0
    cycle = 0
    done_candidates = 0
    while done_candidates < len(vectors):
        freed, filled = [], []
        # --- producer: one cycle of work
        if producer is None and next_candidate < len(vectors) and None in slots:
            slot = slots.index(None)
            slots[slot] = {"candidate": next_candidate, "sads": {}, "full": False}
            producer = {"candidate": next_candidate, "slot": slot, "tile": 0, "offset": 0, "sum": 0.0}
            next_candidate += 1
        if producer is not None:
            dy, dx = vectors[producer["candidate"]]
            ty, tx = tile_list[producer["tile"]]
            chunk = tile_values[producer["offset"] : producer["offset"] + difference_lanes]
            for c, i, j in chunk:
                y, x = ty * stride + i, tx * stride + j
                producer["sum"] += abs(new[c][y][x] - _key_pixel(key, c, y + dy, x + dx))
            producer["offset"] += difference_lanes
            if producer["offset"] >= len(tile_values):
                slots[producer["slot"]]["sads"][ty, tx] = producer["sum"]
                producer["tile"] += 1
                producer["offset"] = 0
                producer["sum"] = 0.0
                if producer["tile"] == len(tile_list):
                    filled.append(producer["slot"])
                    producer = None
        # --- consumer: one cycle of work (on a slot filled in an earlier cycle)
        if consumer is None:
            ready = [s for s in (0, 1) if slots[s] is not None and slots[s]["full"]]
            if ready:
                oldest = min(ready, key=lambda s: slots[s]["candidate"])
                consumer = {"slot": oldest, "activation": 0, "offset": 0, "sum": 0.0}
        if consumer is not None:
            slot = slots[consumer["slot"]]
            ty, tx = tile_list[consumer["activation"]]
            field = fields[ty, tx]
            for tile in field[consumer["offset"] : consumer["offset"] + accumulate_lanes]:
                consumer["sum"] += slot["sads"][tile]
            consumer["offset"] += accumulate_lanes
            if consumer["offset"] >= len(field):
                if best_cost[ty][tx] is None or consumer["sum"] < best_cost[ty][tx]:
                    best_cost[ty][tx] = consumer["sum"]
                    best_vector[ty][tx] = tuple(vectors[slot["candidate"]])
                consumer["activation"] += 1
                consumer["offset"] = 0
                consumer["sum"] = 0.0
                if consumer["activation"] == len(tile_list):
                    freed.append(consumer["slot"])
                    consumer = None
                    done_candidates += 1
        # --- end of cycle: slots filled or freed become visible next cycle
        for s in filled:
            slots[s]["full"] = True
        for s in freed:
            slots[s] = None
        cycle += 1
    return cycle, best_vector, best_cost


def reference_warp_cycles(nonzero_sources, warp_lanes):
    """Step the warp engine over the outputs' flags (True = some source nonzero); return the cycles."""
    pending = [flag for flag in nonzero_sources if flag]  # skipped outputs take no cycle
    cycle = 0
    while pending:
        pending = pending[warp_lanes:]
        cycle += 1
    return cycle
