"""Cycle-stepped reference of Eyeriss's row-stationary dataflow (:mod:`sparsesim.sparse.row_stationary`).

Written from the rules alone, without the fast model's code: the logical PE sets are laid out explicitly on
a grid of physical PEs, the (pair, strip, pass) units are dealt to them, and then a global clock ticks one
cycle at a time; on each tick every physical PE with work left takes its next slot, a MAC (one weight times
one input, added to its partial-sum row) or an idle cycle. At the end of a unit each PE of a set hands its
row of ``Q`` partial sums up its column; the column's rows add up into the unit's output row, which is
added to the tile's output (float64). Python lists and floats only.

Layout, for an ``H x W`` array, a kernel of ``R x S`` and a tile of ``E`` output rows:

- ``passes = ceil(R / H)``, set height ``h = ceil(R / passes)``; set width ``w = min(E, W)``,
  ``strips = ceil(E / w)``;
- the sets are stacked ``floor(H / h)`` high and ``floor(W / w)`` wide; set ``(i, j)`` occupies PE rows
  ``i h .. i h + h - 1`` and PE columns ``j w .. j w + w - 1``; its PE ``(r, e)`` is the physical PE
  ``(i h + r, j w + e)``;
- pairs ``(filter, channel)`` are numbered filter-major. With at least as many pairs as sets, pair ``j``
  goes to set ``j % sets`` with all its strips and passes; otherwise the units, numbered pair-major, are cut
  into consecutive runs of ``ceil(units / sets)``, run ``i`` to set ``i``;
- on unit ``(pair, strip, pass)`` PE ``(r, e)`` takes filter row ``pass h + r`` and output row
  ``strip w + e``; if both exist it does the 1-D convolution of that filter row with input row
  ``out_row stride + filter_row``: ``Q`` outputs of ``S`` MACs each, one MAC a cycle; otherwise it idles
  the unit's ``Q S`` cycles (a set's PEs move from unit to unit together).

A PE is said to hold a pair's filter rows if it did a MAC of that pair (an idle PE holds none).
"""

from __future__ import annotations

from dataclasses import dataclass


def ceil_div(a, b):
    return -(-a // b)


@dataclass
class RowStationaryResult:
    cycles: int  # the last physical PE's finishing cycle
    macs: int  # MACs performed (each one cycle on one PE)
    output: list  # [k][E][Q] float partial sums of the tile (no bias, no activation)
    pairs_held: list  # [H][W]: distinct pairs whose filter rows each physical PE held
    filter_rows_held: list  # [H][W]: distinct (pair, filter row) each physical PE held
    sets: int  # logical sets placed on the array
    set_of_pe: list  # [H][W]: the set a physical PE belongs to, or None


def layout(array_rows, array_columns, kernel_rows, out_rows):
    """``(h, passes, w, strips, placements)``: placements[n] = (first PE row, first PE column) of set n,
    set ``n`` being the ``(n // sets_wide, n % sets_wide)``-th rectangle."""
    passes = ceil_div(kernel_rows, array_rows)
    h = ceil_div(kernel_rows, passes)
    w = min(out_rows, array_columns)
    strips = ceil_div(out_rows, w)
    placements = []
    for i in range(array_rows // h):
        for j in range(array_columns // w):
            placements.append((i * h, j * w))
    return h, passes, w, strips, placements


def deal(pairs, sets, units_per_pair, strips, passes):
    """Each set's list of units ``(pair, strip, pass)``, in the order it runs them."""

    def units_of(pair):
        return [(pair, strip, p) for strip in range(strips) for p in range(passes)]

    dealt = [[] for _ in range(sets)]
    if pairs >= sets:
        for pair in range(pairs):
            dealt[pair % sets].extend(units_of(pair))
        return dealt
    everything = []
    for pair in range(pairs):
        everything.extend(units_of(pair))
    run = ceil_div(len(everything), sets)
    for i in range(sets):
        dealt[i] = everything[i * run : (i + 1) * run]
    return dealt


def reference_tile(array_rows, array_columns, weights, x_padded, stride, out_rows):
    """The row-stationary run of one PE tile. ``weights[k][c][r][s]`` (nested lists or an array),
    ``x_padded[c][y][x]`` the tile's input, already padded, with at least ``(out_rows - 1) stride + R``
    rows; ``out_rows`` the tile's ``E`` output rows (output row ``y`` reads input rows ``y stride ..``)."""
    weights = [[[list(map(float, row)) for row in channel] for channel in f] for f in weights]
    x_padded = [[list(map(float, row)) for row in channel] for channel in x_padded]
    k, c = len(weights), len(weights[0])
    kernel_rows, kernel_columns = len(weights[0][0]), len(weights[0][0][0])
    assert len(x_padded) == c
    assert len(x_padded[0]) >= (out_rows - 1) * stride + kernel_rows
    out_columns = (len(x_padded[0][0]) - kernel_columns) // stride + 1
    assert out_columns >= 1
    slots = out_columns * kernel_columns  # cycles of one unit

    h, passes, w, strips, placements = layout(array_rows, array_columns, kernel_rows, out_rows)
    sets = len(placements)
    assert sets >= 1

    # The physical grid: each PE belongs to at most one set.
    set_of_pe = [[None] * array_columns for _ in range(array_rows)]
    for n, (top, left) in enumerate(placements):
        for r in range(h):
            for e in range(w):
                assert top + r < array_rows and left + e < array_columns, "a set off the array"
                assert set_of_pe[top + r][left + e] is None, "two sets on one PE"
                set_of_pe[top + r][left + e] = (n, r, e)

    pairs = [(f, ch) for f in range(k) for ch in range(c)]  # filter-major
    dealt = deal(len(pairs), sets, strips * passes, strips, passes)
    assert sorted(u for units in dealt for u in units) == sorted(
        (p, s, q) for p in range(len(pairs)) for s in range(strips) for q in range(passes)
    ), "every unit dealt exactly once"

    # Each physical PE's jobs, one per unit of its set: (pair, filter row or None, output row or None).
    jobs = [[[] for _ in range(array_columns)] for _ in range(array_rows)]
    for row in range(array_rows):
        for column in range(array_columns):
            if set_of_pe[row][column] is None:
                continue
            n, r, e = set_of_pe[row][column]
            for pair, strip, p in dealt[n]:
                filter_row = p * h + r
                out_row = strip * w + e
                active = filter_row < kernel_rows and out_row < out_rows
                jobs[row][column].append((n, pair, filter_row, out_row, active))

    output = [[[0.0] * out_columns for _ in range(out_rows)] for _ in range(k)]
    held = [[set() for _ in range(array_columns)] for _ in range(array_rows)]
    held_rows = [[set() for _ in range(array_columns)] for _ in range(array_rows)]
    # Partial-sum rows handed up a column, by (set, column e, job index): {PE row r: row of Q sums}.
    handed = {}

    # The PE state: index of its current job, the cycle within it, its partial-sum row.
    job_index = [[0] * array_columns for _ in range(array_rows)]
    step = [[0] * array_columns for _ in range(array_rows)]
    psums = [[[0.0] * out_columns for _ in range(array_columns)] for _ in range(array_rows)]
    finished = [[0] * array_columns for _ in range(array_rows)]
    macs = 0
    cycle = 0
    while any(
        job_index[row][column] < len(jobs[row][column])
        for row in range(array_rows)
        for column in range(array_columns)
    ):
        cycle += 1
        for row in range(array_rows):
            for column in range(array_columns):
                index = job_index[row][column]
                if index >= len(jobs[row][column]):
                    continue
                n, pair, filter_row, out_row, active = jobs[row][column][index]
                t = step[row][column]
                if active:
                    f, ch = pairs[pair]
                    q, s = divmod(t, kernel_columns)
                    weight = weights[f][ch][filter_row][s]
                    activation = x_padded[ch][out_row * stride + filter_row][q * stride + s]
                    psums[row][column][q] += weight * activation
                    macs += 1
                    held[row][column].add(pair)
                    held_rows[row][column].add((pair, filter_row))
                step[row][column] = t + 1
                if t + 1 == slots:  # the unit ends: hand the partial-sum row up the column
                    if active:
                        _, r, e = set_of_pe[row][column]
                        handed.setdefault((n, e, index), {})[r] = (pair, out_row, psums[row][column])
                    psums[row][column] = [0.0] * out_columns
                    step[row][column] = 0
                    job_index[row][column] = index + 1
                    finished[row][column] = cycle

    # Each column of a unit: its rows add up, bottom PE first, then into the output row.
    for column_rows in handed.values():
        total, target = None, None
        for r in sorted(column_rows, reverse=True):
            pair, out_row, row_sums = column_rows[r]
            assert target in (None, (pair, out_row)), "one column, one output row"
            target = (pair, out_row)
            total = list(row_sums) if total is None else [a + b for a, b in zip(total, row_sums, strict=True)]
        f, _ = pairs[target[0]]
        destination = output[f][target[1]]
        for q in range(out_columns):
            destination[q] += total[q]

    # A set's PEs move together: all finish at the same cycle.
    for n in range(sets):
        ends = {
            finished[row][column]
            for row in range(array_rows)
            for column in range(array_columns)
            if set_of_pe[row][column] is not None and set_of_pe[row][column][0] == n
        }
        assert len(ends) == 1, f"set {n}'s PEs finish at cycles {sorted(ends)}"

    return RowStationaryResult(
        cycles=cycle,
        macs=macs,
        output=output,
        pairs_held=[[len(pe) for pe in row] for row in held],
        filter_rows_held=[[len(pe) for pe in row] for row in held_rows],
        sets=sets,
        set_of_pe=set_of_pe,
    )
