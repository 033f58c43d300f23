"""Cycle-stepped reference model of SCNN's Cartesian-product PE array: one loop iteration per cycle.

It follows the rules stated in :mod:`sparsesim.sparse.cartesian` and
:mod:`sparsesim.mechanisms.cartesian_product` literally, with Python lists, sets and floats only, so that
the vectorised model can be checked against it exactly on small real tensors:

- the band's output rows and the output columns are split over the PE grid (part ``i`` of ``n`` items over
  ``p`` parts: ``[i*n//p, (i+1)*n//p)``); each input row and column is held by the PE whose part holds its
  home output (``(y + padding - (R-1)//2) // stride``, clipped into the band / the layer), input rows outside
  the band's input rows by none;
- per group of ``Kc`` filters, per PE, per channel: the PE's activations (nonzero, or all when dense) in
  row-major order, cut into vectors of I; the group's weights of the channel (nonzero, or all) in
  ``(r, s, k)`` order, cut into vectors of F; for each activation vector, for each weight vector: the
  products are formed, each kept one (its output inside the band and the layer, exact division by the
  stride) queued at its bank ``(k + F * (x' + W * y')) % A``, ``(y', x')`` the output's place in the
  PE's accumulator region (the set of outputs its products can be kept on: its bounding box, of width
  ``W``); then cycle by cycle every bank with a queue accumulates one product, until all queues are empty
  (at least one cycle). With ``arbitration="queue"`` the PE does not wait: each cycle it issues its next
  step's products into the queues and every bank with a queue accumulates one product; after its last step
  of the group it waits until every queue is empty;
- a PE's accumulator region is the set of outputs its products can be kept on (``largest_region``: the
  largest of a band's, from which the caller derives Kc);
- the group ends when its slowest PE does; its halo partial sums (per PE and filter: the outputs its
  products can reach, inside the band and layer, that it does not own) are then sent, one word per cycle by
  each PE, while the next group computes; a group waits for the previous exchange to end before it starts
  its own; the tile ends with the last exchange.
"""

from __future__ import annotations

COUNTS = (
    "cycles",
    "steps",
    "products",
    "kept_products",
    "halo_products",
    "activation_reads",
    "weight_reads",
    "halo_words",
    "pe_cycles",
    "largest_region",
)


def _part(bounds, value):
    """Index of the part ``[bounds[i], bounds[i+1])`` that holds ``value`` (the last such part)."""
    found = None
    for i in range(len(bounds) - 1):
        if bounds[i] <= value < bounds[i + 1]:
            found = i
    return found


def accumulate_one_per_bank(queues, sums):
    """One cycle of the accumulator banks: each bank with a queue adds its oldest product."""
    for queue in queues:
        if queue:
            k, oy, ox, product = queue.pop(0)
            sums[(k, oy, ox)] = sums.get((k, oy, ox), 0.0) + product


def reference_band(
    inputs,
    weights,
    *,
    stride,
    padding,
    band,
    grid,
    group_filters,
    dense,
    arbitration="stall",
    walk=True,
):
    """Walk one band (``band = (start, stop)`` output rows) cycle by cycle.

    ``inputs``: (C, H, W) nested lists; ``weights``: (K, C, R, S) nested lists; ``grid``: (rows, columns,
    F, I, A); ``group_filters``: Kc. Returns (counts dict, {(k, y, x): sum of the kept products}).
    ``walk=False`` stops before the products: the counts then hold only ``largest_region`` (see
    :func:`reference_largest_region`).
    """
    pe_rows, pe_cols, f_width, i_width, banks = grid
    channels, height, width = len(inputs), len(inputs[0]), len(inputs[0][0])
    filters, kernel_r, kernel_s = len(weights), len(weights[0][0]), len(weights[0][0][0])
    out_w = (width + 2 * padding - kernel_s) // stride + 1
    band_start, band_stop = band
    row_bounds = [band_start + i * (band_stop - band_start) // pe_rows for i in range(pe_rows + 1)]
    col_bounds = [i * out_w // pe_cols for i in range(pe_cols + 1)]
    first_row = max(0, band_start * stride - padding)
    stop_row = min(height, (band_stop - 1) * stride - padding + kernel_r)

    def holder(y, x):
        if not first_row <= y < stop_row:
            return None
        home_y = min(max((y + padding - (kernel_r - 1) // 2) // stride, band_start), band_stop - 1)
        home_x = min(max((x + padding - (kernel_s - 1) // 2) // stride, 0), out_w - 1)
        return (_part(row_bounds, home_y), _part(col_bounds, home_x))

    def output_of(y, x, r, s):
        ny, nx = y + padding - r, x + padding - s
        if ny % stride or nx % stride:
            return None
        oy, ox = ny // stride, nx // stride
        if band_start <= oy < band_stop and 0 <= ox < out_w:
            return (oy, ox)
        return None

    pes = [(i, j) for i in range(pe_rows) for j in range(pe_cols)]
    # Halo words per PE and filter: reachable outputs (the accumulator region) not owned by the PE.
    halo_per_filter = {}
    region_box = {}  # per PE: (first row, first column, width) of its accumulator region
    largest_region = 0
    for pe in pes:
        region = set()
        for y in range(height):
            for x in range(width):
                if holder(y, x) == pe:
                    for r in range(kernel_r):
                        for s in range(kernel_s):
                            out = output_of(y, x, r, s)
                            if out is not None:
                                region.add(out)
        own = {
            (oy, ox)
            for oy in range(row_bounds[pe[0]], row_bounds[pe[0] + 1])
            for ox in range(col_bounds[pe[1]], col_bounds[pe[1] + 1])
        }
        halo_per_filter[pe] = len(region - own)
        largest_region = max(largest_region, len(region))
        if region:
            top, left = min(y for y, _ in region), min(x for _, x in region)
            region_box[pe] = (top, left, max(x for _, x in region) - left + 1)

    counts = dict.fromkeys(COUNTS, 0)
    counts["pe_cycles"] = [0] * len(pes)
    counts["largest_region"] = largest_region
    if not walk:
        return {"largest_region": largest_region}, {}
    sums = {}
    groups = [list(range(g, min(filters, g + group_filters))) for g in range(0, filters, group_filters)]
    group_cycles, group_halo = [], []
    for group in groups:
        pe_busy = []
        for pe_index, pe in enumerate(pes):
            busy = 0
            queues = [[] for _ in range(banks)]  # the bank queues, carried over from step to step
            for c in range(channels):
                acts = [
                    (y, x, inputs[c][y][x])
                    for y in range(height)
                    for x in range(width)
                    if holder(y, x) == pe and (dense or inputs[c][y][x] != 0.0)
                ]
                wts = [
                    (k, r, s, weights[k][c][r][s])
                    for r in range(kernel_r)
                    for s in range(kernel_s)
                    for k in group
                    if dense or weights[k][c][r][s] != 0.0
                ]
                counts["activation_reads"] += len(acts)
                for a0 in range(0, len(acts), i_width):
                    act_vector = acts[a0 : a0 + i_width]
                    for w0 in range(0, len(wts), f_width):
                        weight_vector = wts[w0 : w0 + f_width]
                        counts["weight_reads"] += len(weight_vector)
                        counts["steps"] += 1
                        for y, x, a in act_vector:
                            for k, r, s, w in weight_vector:
                                counts["products"] += 1
                                out = output_of(y, x, r, s)
                                if out is None:
                                    continue  # wasted: multiplied, then dropped
                                counts["kept_products"] += 1
                                oy, ox = out
                                owner = (_part(row_bounds, oy), _part(col_bounds, ox))
                                if owner != pe:
                                    counts["halo_products"] += 1
                                top, left, region_width = region_box[pe]
                                address = (ox - left) + region_width * (oy - top)
                                queues[(k + f_width * address) % banks].append((k, oy, ox, a * w))
                        # One iteration per cycle: each bank with a queue accumulates one product. Without
                        # queues (stall) the step holds the multipliers until every bank has taken its
                        # products; with queues the next step issues on the next cycle.
                        cycle = 0
                        while cycle == 0 or (arbitration == "stall" and any(queues)):
                            cycle += 1
                            busy += 1
                            accumulate_one_per_bank(queues, sums)
            while any(queues):  # queue: the PE's last step is issued; the banks drain
                busy += 1
                accumulate_one_per_bank(queues, sums)
            counts["pe_cycles"][pe_index] += busy
            pe_busy.append(busy)
        group_cycles.append(pe_busy)
        group_halo.append(max(halo_per_filter[pe] for pe in pes) * len(group))
        counts["halo_words"] += sum(halo_per_filter[pe] for pe in pes) * len(group)

    # The tile's timeline, cycle by cycle: groups compute while the previous group's halo is exchanged.
    t = 0
    exchange_left = 0
    for pe_busy, halo in zip(group_cycles, group_halo, strict=True):
        left = list(pe_busy)
        while any(left):
            t += 1
            left = [max(0, n - 1) for n in left]
            exchange_left = max(0, exchange_left - 1)
        while exchange_left:
            t += 1
            exchange_left -= 1
        exchange_left = halo
    while exchange_left:
        t += 1
        exchange_left -= 1
    counts["cycles"] = t
    return counts, sums


def reference_largest_region(inputs, weights, *, stride, padding, band, grid):
    """The band's ``largest_region`` (its largest PE accumulator region, from which the caller derives Kc):
    a function of the geometry alone (the PE grid, the band, the kernel, stride and padding), computed as
    :func:`reference_band` computes it, without walking the products."""
    counts, _ = reference_band(
        inputs,
        weights,
        stride=stride,
        padding=padding,
        band=band,
        grid=grid,
        group_filters=1,
        dense=True,
        walk=False,
    )
    return counts["largest_region"]
