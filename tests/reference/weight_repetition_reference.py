"""Cycle-stepped reference model of weight repetition (UCNN): one loop iteration per activation, for clarity.

It follows the rules stated in :mod:`sparsesim.sparse.weight_repetition` literally, with Python lists and
floats only, so that the vectorised model can be checked against it exactly on small real tensors.

For each output (filter ``k``, window ``p``) the PE holds its filter's indirection table: the ``(position,
weight)`` pairs of the nonzero weights sorted by weight value, then position (built here with Python's
``sorted``, independently of the fast model). Each iteration takes one entry of the table. If zero
activations are skipped and its activation is zero, nothing happens (no read, no cycle). Otherwise the
activation is issued: one read and one cycle; if it has the weight of the open group it is added to the
group's sum (an activation add), else the open group (if any) is closed and a new group starts with it.
Closing a group reads its weight once, multiplies it by the group's sum and adds the product to the output's
running sum, which starts at the bias. The last group is closed after the last entry. Cycles are at least 1.
"""

from __future__ import annotations

COUNTS = ("issued", "multiplies", "activation_adds", "product_adds", "weight_reads", "cycles")


def indirection_table(weights):
    """One filter's ``(position, weight)`` pairs of nonzero weights, by weight value then position."""
    return sorted(((j, w) for j, w in enumerate(weights) if w != 0.0), key=lambda item: (item[1], item[0]))


def reference_output(activations, weights, bias, skip_zero_activations):
    """Walk one output activation by activation. Returns (counts dict, output)."""
    counts = dict.fromkeys(COUNTS, 0)
    total = float(bias)
    group_weight = None  # weight of the open group; None: no group open
    group_sum = 0.0

    def close_group():
        nonlocal total
        counts["weight_reads"] += 1
        counts["multiplies"] += 1
        counts["product_adds"] += 1
        total += group_weight * group_sum

    for position, weight in indirection_table(weights):
        activation = activations[position]
        if skip_zero_activations and activation == 0.0:
            continue  # not issued: no read, no add, no cycle
        counts["issued"] += 1  # one activation read, one cycle
        counts["cycles"] += 1
        if group_weight is not None and weight == group_weight:
            counts["activation_adds"] += 1
            group_sum += activation
        else:
            if group_weight is not None:
                close_group()
            group_weight, group_sum = weight, activation
    if group_weight is not None:
        close_group()
    counts["cycles"] = max(1, counts["cycles"])
    return counts, total


def reference_layer(operands_pn, weights_kn, bias_k, skip_zero_activations=False):
    """Every output of a layer: a dict of (K, P) lists per count, and the (K, P) list of outputs."""
    operands = [[float(v) for v in row] for row in operands_pn]
    weights = [[float(v) for v in row] for row in weights_kn]
    results = [
        [reference_output(window, weights[k], float(bias_k[k]), skip_zero_activations) for window in operands]
        for k in range(len(weights))
    ]
    counts = {name: [[counts[name] for counts, _ in row] for row in results] for name in COUNTS}
    outputs = [[output for _, output in row] for row in results]
    return counts, outputs
