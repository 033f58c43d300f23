"""Cycle-stepped reference model of ReLU early termination (SnaPEA): one loop iteration per MAC, for clarity.

It follows the rules stated in :mod:`sparsesim.sparse.early_termination` literally, with Python lists and
floats only, so that the vectorised model can be checked against it exactly on small real tensors.

For each output (filter ``k``, window ``p``) the PE holds its filter's nonzero weights as a list of
``(position, weight)`` in issue order (built here with Python's ``sorted``, independently of ``mac_order``).
The running sum starts at the bias. Each iteration issues one position: it costs a cycle and adds
``activation * weight``, unless zero activations are skipped and the activation is zero (no cycle, no check).
Checks (only when every operand of the layer is >= 0):

- prediction (predictive mode, when MACs remain after the speculative ones): before issuing position
  ``n_speculative``, stop if the sum is <= the threshold;
- exact: when the positive phase ends (before issuing its first negative weight, or at once if it has none),
  and after every negative MAC performed, stop if the sum is <= 0.

The output is 0 if a check stopped the PE, else ``relu(sum)``. Terminated = a check stopped the PE while a
position that would cost a cycle remained.
"""

from __future__ import annotations


def issue_order(weights, mode, n_speculative):
    """The ``(position, weight)`` list of one filter, in issue order, and how many are speculative."""
    nonzero = [(j, w) for j, w in enumerate(weights) if w != 0.0]
    by_magnitude = sorted(nonzero, key=lambda item: (-abs(item[1]), item[0]))
    speculative = by_magnitude[:n_speculative] if mode == "predictive" else []
    done = {j for j, _ in speculative}
    rest = [(j, w) for j, w in nonzero if j not in done]
    positives = [(j, w) for j, w in rest if w > 0.0]
    negatives = sorted([(j, w) for j, w in rest if w < 0.0], key=lambda item: (-abs(item[1]), item[0]))
    return speculative + positives + negatives, len(speculative)


def reference_output(
    activations, weights, bias, mode, n_speculative, threshold, skip_zero_activations, sound
):
    """Walk one output MAC by MAC. Returns (macs_performed, terminated, output, mispredicted)."""
    sequence, n_spec = issue_order(weights, mode, n_speculative)
    predicts = mode == "predictive" and n_speculative < len(sequence)
    positive_phase_end = n_spec + sum(1 for _, w in sequence[n_spec:] if w > 0.0)

    total = float(bias)
    cycles = 0
    stopped_at = None  # index of the first position not issued, if a check stopped the PE
    predicted = False
    for i, (position, weight) in enumerate(sequence):
        if sound and predicts and i == n_spec and total <= threshold:
            stopped_at, predicted = i, True
            break
        if sound and i == positive_phase_end and total <= 0.0:
            stopped_at = i
            break
        activation = activations[position]
        if skip_zero_activations and activation == 0.0:
            continue  # skipped: no cycle, the sum does not move
        cycles += 1  # one MAC, one cycle
        total += activation * weight
        if sound and i >= positive_phase_end and total <= 0.0:  # after a negative MAC
            stopped_at = i + 1
            break

    true_total = float(bias)  # what the full sum is, in the same order: to judge a prediction
    for position, weight in sequence:
        true_total += activations[position] * weight

    if stopped_at is None:
        return cycles, False, max(total, 0.0), False
    remaining = sequence[stopped_at:]
    terminated = (
        any(activations[j] != 0.0 for j, _ in remaining) if skip_zero_activations else bool(remaining)
    )
    return cycles, terminated, 0.0, predicted and true_total > 0.0


def reference_layer(
    operands_pn, weights_kn, bias_k, mode, n_speculative=0, threshold=0.0, skip_zero_activations=False
):
    """Every output of a layer: four (K, P) lists (macs, terminated, output, mispredicted), and sound."""
    operands = [[float(v) for v in row] for row in operands_pn]
    weights = [[float(v) for v in row] for row in weights_kn]
    sound = all(v >= 0.0 for row in operands for v in row)
    results = [
        [
            reference_output(
                window,
                weights[k],
                float(bias_k[k]),
                mode,
                n_speculative,
                threshold,
                skip_zero_activations,
                sound,
            )
            for window in operands
        ]
        for k in range(len(weights))
    ]
    return tuple([[r[field] for r in row] for row in results] for field in range(4)), sound
