"""Cycle-stepped reference of MSB-first ReLU prediction (PredictiveNet): one loop iteration per MAC or cycle.

It follows the rules of :mod:`sparsesim.sparse.msb_first` literally, with Python ints, floats and lists
only, so that the vectorised model can be checked against it exactly on small real tensors.

Per output: the activation integers are split with Python's ``>>`` (floor: two's complement) into the top
``msb_bits`` bits and the rest. The MSB pass walks the positions in index order, one MAC per issued position
(a nonzero weight; with zero skipping also a nonzero activation), adding ``w * (m * 2**-f)`` to a sum that
starts at the bias; zero-weight positions add their zero product without a cycle. Then the decision; then,
unless skipped, the LSB pass the same way with the LSB parts.

The PE lane (:func:`reference_msb_first_tile_cycles`): an MSB unit and an LSB unit, one MAC each per cycle.
The MSB unit walks the lane's outputs in order, one cycle per MSB MAC and at least one per output; an
output whose MSB pass ended in a cycle joins the LSB unit's queue from the next cycle on (if it has LSB MACs),
and the LSB unit works through its queue in order. The lane is done when both units are.
"""

from __future__ import annotations

EXACT_GUARD = 1e-9  # as sparsesim.sparse.msb_first.EXACT_GUARD, restated here on purpose


def reference_output(ints, weights, bias, frac_bits, msb_bits, bits, decision, threshold, skip_zeros):
    """One output, MAC by MAC. Returns (msb_macs, lsb_macs, terminated, output, mispredicted)."""
    low_bits = bits - msb_bits
    scale = 2.0**-frac_bits
    msb = [(x >> low_bits) << low_bits for x in ints]
    lsb = [x - m for x, m in zip(ints, msb, strict=True)]
    issued = [w != 0.0 and (x != 0 or not skip_zeros) for x, w in zip(ints, weights, strict=True)]

    total, msb_macs = float(bias), 0
    for m, w, issue in zip(msb, weights, issued, strict=True):
        total += w * (m * scale)
        msb_macs += 1 if issue else 0
    y_msb = total

    positive_sum = 0.0
    for w in weights:
        positive_sum += w if w > 0.0 else 0.0
    bound = float((2**low_bits - 1) * scale) * positive_sum
    if decision == "predictive":
        skip = y_msb <= threshold
    else:
        magnitude = abs(float(bias))
        for m, low, w in zip(msb, lsb, weights, strict=True):
            magnitude += abs(w) * ((abs(m) + low) * scale)
        magnitude += bound
        skip = y_msb + bound + EXACT_GUARD * magnitude <= 0

    full, lsb_macs = y_msb, 0  # the LSB pass; when skipped, still summed here (not counted) to judge it
    for low, w, issue in zip(lsb, weights, issued, strict=True):
        full += w * (low * scale)
        lsb_macs += 1 if issue and not skip else 0
    return msb_macs, lsb_macs, skip, 0.0 if skip else max(full, 0.0), skip and full > 0.0


def reference_layer(
    ints_pn,
    weights_kn,
    bias_k,
    frac_bits,
    msb_bits,
    bits=16,
    decision="predictive",
    threshold=0.0,
    skip_zeros=False,
):
    """Every output: five (K, P) lists (msb_macs, lsb_macs, terminated, output, mispredicted)."""
    ints = [[int(v) for v in row] for row in ints_pn]
    weights = [[float(v) for v in row] for row in weights_kn]
    results = [
        [
            reference_output(
                window,
                weights[k],
                float(bias_k[k]),
                frac_bits,
                msb_bits,
                bits,
                decision,
                threshold,
                skip_zeros,
            )
            for window in ints
        ]
        for k in range(len(weights))
    ]
    return tuple([[r[field] for r in row] for row in results] for field in range(5))


def reference_msb_first_tile_cycles(msb_kp, lsb_kp, filters, windows, rows):
    """A tile's cycles: lanes (filter k, PE row i) own windows i, i + rows, ...; each lane two units."""
    lanes = []
    for k in filters:
        for row in range(rows):
            lanes.append([[msb_kp[k][p], lsb_kp[k][p]] for p in windows[row::rows]])
    cycles = 0
    for lane in lanes:
        cycles = max(cycles, _lane_cycles(lane))
    return cycles


def _lane_cycles(outputs):
    msb_queue = [[max(a, 1), b] for a, b in outputs]  # at least one cycle per output
    lsb_queue = []
    cycle = 0
    while msb_queue or lsb_queue:
        cycle += 1
        if lsb_queue:  # the LSB unit: one MAC of the oldest output whose MSB pass is over
            lsb_queue[0] -= 1
            if lsb_queue[0] == 0:
                lsb_queue.pop(0)
        if msb_queue:  # the MSB unit: one MAC of its current output
            msb_queue[0][0] -= 1
            if msb_queue[0][0] == 0:
                _, b = msb_queue.pop(0)
                if b:
                    lsb_queue.append(b)  # the LSB unit may start it from the next cycle
    return cycle
