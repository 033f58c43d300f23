"""Cycle-stepped reference of Eyeriss v2's compressed-column PEs (:mod:`sparsesim.mechanisms.csc_columns`).

PE column ``j`` of a tile owns the tile's filters ``first + j*L .. first + (j+1)*L - 1`` (``L`` filter
lanes); PE row ``i`` owns the tile's windows ``i, i + rows, ...``. For each of its windows, a PE walks the
window's operands in ``(c, r, s)`` order; a nonzero activation puts its weight column (the PE's nonzero
weights at that ``(c, r, s)``) into the issue queue, ``L`` MACs per issue; each cycle the PE takes up to
``activation_lanes`` issues; a window that issued nothing still takes one cycle. The tile ends when every
PE is done. Written one loop iteration per cycle, with Python lists only.
"""

from __future__ import annotations


def pe_window_issues(operands_row, weights_rows, filter_lanes):
    """One PE's issues for one window (each a list of the MACs it performs), and the nonzero activations
    it read. ``operands_row``: the window's operands in (c, r, s) order; ``weights_rows``: the PE's
    filters' weights in the same order."""
    issues, reads = [], 0
    for position, activation in enumerate(operands_row):
        if activation == 0.0:
            continue
        reads += 1
        column = [k for k, row in enumerate(weights_rows) if row[position] != 0.0]
        for first in range(0, len(column), filter_lanes):
            issues.append(column[first : first + filter_lanes])
    return issues, reads


def reference_tile(operands, weights, tile_filters, windows, rows, filter_lanes, activation_lanes):
    """``(cycles, MACs, activation reads)`` of one tile. ``operands[p]``: window ``p``'s operands of the
    tile's channel block; ``weights[k]``: filter ``k``'s weights over the same operands."""
    filters = list(tile_filters)
    groups = [filters[g : g + filter_lanes] for g in range(0, len(filters), filter_lanes)]
    pes = []  # per PE: a list of windows, each a list of issues
    macs = reads = 0
    for group in groups:
        for row in range(rows):
            queue = []
            for p in windows[row::rows]:
                issues, read = pe_window_issues(operands[p], [weights[k] for k in group], filter_lanes)
                macs += sum(len(issue) for issue in issues)
                reads += read
                queue.append(issues)
            pes.append(queue)
    cycles = 0
    while any(pes):
        cycles += 1
        for queue in pes:
            if not queue:
                continue
            window = queue[0]
            del window[:activation_lanes]  # this cycle's issues (none: the cycle that hands the window on)
            if not window:
                queue.pop(0)
    return cycles, macs, reads
