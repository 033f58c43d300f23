"""Cycle-stepped reference of a kernel-pattern PE (PatDNN/PCONV on an output-sequential PE).

The tile's filters are taken in PatDNN's reordered sequence (most connected kernels first, ties by index):
sequence slot ``j`` of the tile holds filter ``order[j]``. Lane ``(slot j, PE row i)`` owns the tile's
windows ``i, i + rows, ...`` in order. For an output it walks the channel block's kernels of its filter:
a removed kernel (pattern id -1) is skipped, a connected one costs one pattern-id read and queues one MAC
slot per position of its pattern. Each cycle a lane issues up to ``lanes`` slots of its current output
(each multiplies the weight at that position, zero or not, with the activation it selects); an output with
no slot still takes one cycle. Without a library (weights that follow no pattern) every kernel queues all
``R*S`` positions, no id is read, and the filters keep their order. One loop iteration per cycle, lists only.
"""

from __future__ import annotations


def _activation(input_chw, c, y, x):
    if 0 <= y < len(input_chw[0]) and 0 <= x < len(input_chw[0][0]):
        return float(input_chw[c][y][x])
    return 0.0


def reference_filter_order(pattern_ids):
    """Filters by decreasing count of connected kernels, ties by index (written out, no numpy)."""
    counts = [sum(1 for i in row if i >= 0) for row in pattern_ids]
    return sorted(range(len(pattern_ids)), key=lambda k: (-counts[k], k))


def reference_pattern_tile(input_chw, weights_kcrs, tile, geometry, rows, lanes, library, pattern_ids, psums):
    """Run one tile; accumulate into ``psums[(k, y, x)]``; return (cycles, MACs issued, ids read).

    ``library``: list of patterns, each a list of ``(r, s)`` positions, or ``None`` (dense fallback);
    ``pattern_ids``: ``K x C`` nested lists (ignored without a library).
    """
    all_positions = [(r, s) for r in range(geometry.kernel_r) for s in range(geometry.kernel_s)]
    if library is None:
        order = list(range(len(weights_kcrs)))
    else:
        order = reference_filter_order(pattern_ids)
    windows = [
        (y, x) for y in range(tile.out_row_start, tile.out_row_stop) for x in range(geometry.out_width)
    ]
    lanes_state = []  # per lane: [filter, list of outputs; each output = [window, slot list]]
    for slot in range(tile.filter_start, tile.filter_stop):
        k = order[slot]
        for row in range(rows):
            outputs = []
            for window in windows[row::rows]:
                slots = []
                for c in range(tile.channel_start, tile.channel_stop):
                    if library is None:
                        slots += [(c, r, s) for r, s in all_positions]
                        continue
                    pattern = pattern_ids[k][c]
                    if pattern < 0:
                        continue
                    slots.append(("id",))  # the pattern id read that expands into the kernel's slots
                    slots += [(c, r, s) for r, s in library[pattern]]
                outputs.append([window, slots])
            lanes_state.append([k, outputs])
    cycles = macs = ids = 0
    while any(outputs for _, outputs in lanes_state):
        cycles += 1
        for k, outputs in lanes_state:
            if not outputs:
                continue
            (y, x), slots = outputs[0]
            issued = 0
            while slots and issued < lanes:
                item = slots.pop(0)
                if item == ("id",):  # read along with the kernel's first MAC: it takes no slot
                    ids += 1
                    continue
                c, r, s = item
                a = _activation(
                    input_chw,
                    c,
                    y * geometry.stride - geometry.padding + r,
                    x * geometry.stride - geometry.padding + s,
                )
                psums[(k, y, x)] = psums.get((k, y, x), 0.0) + a * float(weights_kcrs[k][c][r][s])
                issued += 1
                macs += 1
            if not slots:
                outputs.pop(0)
    return cycles, macs, ids
