"""Mixture of experts as coarse-grained sparsity: a dense ReLU layer split into experts (MoEfication).

No trained mixture-of-experts model is available offline, so the experts are *constructed* from a trained
dense layer, after MoEfication (Zhang et al., "MoEfication: Transformer Feed-forward Layers are Mixtures of
Experts", Findings of ACL 2022). MoEfication relies on ReLU activation sparsity: for a given input most
neurons of a ReLU layer output zero, so if neurons that fire together sit in the same expert, computing only
the few experts predicted to fire the most loses little. Applied to a convolution: a neuron is an output
filter ``k``, a token is an output pixel (one im2col window ``p``).

What is built here, and how it departs from the paper:

- **Experts** (:func:`balanced_kmeans_partition`): MoEfication's *parameter clustering split*: the filters'
  weight vectors, normalised to unit length, are clustered by k-means into ``E`` clusters of exactly
  ``K / E`` filters. The balanced assignment step is greedy (pairs (filter, cluster) taken in increasing
  distance, a cluster closing when full) rather than an optimal balanced assignment; k-means++ seeding from
  ``numpy.random.default_rng(seed)``; ties broken by index. The paper's other split (co-activation graph
  partitioning) would cluster on the real activations of the very image we then evaluate on, so it is not
  used.
- **Router** (:func:`mean_filter_router`): the paper's *similarity selection* scores an input against each
  expert's representative vector (the cluster centre). Here the representative is the mean of the expert's
  raw filters with the mean of their biases, so an expert's score is exactly the mean pre-activation of its
  filters: ``E`` dot products of length ``C*R*S`` per pixel, no training. The paper's best router (a small
  MLP trained to predict each expert's activation mass) is not built: nothing is trained here.
- **Selection** (:func:`top_k_experts`): each pixel uses its ``k`` highest-scoring experts (ties: lower
  expert index). Unselected experts' filters are not computed: their outputs are 0.
- No fine-tuning after the split (the paper fine-tunes for its best numbers): the error is what the
  construction costs a trained network as it is.

Pure numpy, no timing: partition, router, routing, the layer's output under routing, MAC counts, the union of
experts a group of pixels needs (what weights must move for a tile), and how much of the dense layer's
activation the routing keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sparsesim.sparse.checks import finite_matrix

KMEANS_ITERATIONS = 30
"""Lloyd iterations at most (the assignment usually stops changing after a handful)."""


def _check_experts(filters: int, experts: int) -> int:
    if isinstance(experts, bool) or not isinstance(experts, (int, np.integer)) or experts < 1:
        raise ValueError(f"experts must be an integer >= 1, got {experts!r}")
    if filters % experts:
        raise ValueError(f"{filters} filters cannot be split into {experts} experts of equal size")
    return int(experts)


def _kmeans_plus_plus(points: NDArray[np.float64], clusters: int, rng: np.random.Generator) -> NDArray:
    """k-means++ seeding: the first centre uniformly, each next one with probability ~ squared distance."""
    first = int(rng.integers(len(points)))
    centres = [points[first]]
    distances = np.sum((points - points[first]) ** 2, axis=1)
    for _ in range(1, clusters):
        total = float(distances.sum())
        if total <= 0.0:  # every point sits on a centre already: take the next unused index
            index = len(centres) % len(points)
        else:
            index = int(np.searchsorted(np.cumsum(distances), rng.random() * total, side="right"))
            index = min(index, len(points) - 1)
        centres.append(points[index])
        distances = np.minimum(distances, np.sum((points - points[index]) ** 2, axis=1))
    return np.array(centres)


def _balanced_assignment(distances_ke: NDArray[np.float64], capacity: int) -> NDArray[np.int64]:
    """Greedy balanced assignment: (point, cluster) pairs in increasing distance, each cluster taking at most
    ``capacity`` points; a stable sort breaks ties by point, then cluster index. K*E steps (not per MAC)."""
    points, clusters = distances_ke.shape
    order = np.argsort(distances_ke.ravel(), kind="stable")
    label = np.full(points, -1, dtype=np.int64)
    room = np.full(clusters, capacity, dtype=np.int64)
    left = points
    for flat in order:
        point, cluster = divmod(int(flat), clusters)
        if label[point] < 0 and room[cluster] > 0:
            label[point] = cluster
            room[cluster] -= 1
            left -= 1
            if left == 0:
                break
    return label


def balanced_kmeans_partition(weights_kn: object, experts: int, seed: int = 0) -> NDArray[np.int64]:
    """The expert of each filter: ``(K,)`` ints in ``[0, experts)``, exactly ``K / experts`` per expert.

    ``weights_kn``: one filter per row (``(K, C*R*S)``). Rows are normalised to unit L2 norm (an all-zero
    filter stays the zero vector), then clustered by balanced k-means (see the module docstring). Experts are
    numbered in the order of their lowest filter index, so expert 0 holds filter 0 and the result depends
    only on the weights, ``experts`` and ``seed``.
    """
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    filters = weights.shape[0]
    experts = _check_experts(filters, experts)
    capacity = filters // experts
    if experts == 1:
        return np.zeros(filters, dtype=np.int64)
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    points = np.divide(weights, norms, out=np.zeros_like(weights), where=norms > 0)
    centres = _kmeans_plus_plus(points, experts, np.random.default_rng(seed))
    label = np.full(filters, -1, dtype=np.int64)
    for _ in range(KMEANS_ITERATIONS):
        distances = (
            np.sum(points**2, axis=1)[:, None] - 2.0 * points @ centres.T + np.sum(centres**2, axis=1)[None]
        )
        new_label = _balanced_assignment(distances, capacity)
        if np.array_equal(new_label, label):
            break
        label = new_label
        centres = np.array([points[label == e].mean(axis=0) for e in range(experts)])
    # Canonical numbering: by each expert's lowest filter index.
    first_filter = np.array([np.flatnonzero(label == e)[0] for e in range(experts)])
    renumber = np.empty(experts, dtype=np.int64)
    renumber[np.argsort(first_filter, kind="stable")] = np.arange(experts)
    return renumber[label]


def mean_filter_router(
    weights_kn: object, bias_k: object, expert_of_filter: object
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per expert, the mean of its filters ``(E, N)`` and the mean of their biases ``(E,)``.

    Scoring a window with them gives the mean pre-activation of the expert's filters (a linear function of
    the window, hence one dot product per expert instead of one per filter).
    """
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    bias = finite_matrix(bias_k, "bias_k", 1)
    expert_of = np.asarray(expert_of_filter, dtype=np.int64)
    if expert_of.shape != (weights.shape[0],) or bias.shape != (weights.shape[0],):
        raise ValueError(
            f"expert_of_filter {expert_of.shape} and bias {bias.shape} need one entry per filter "
            f"({weights.shape[0]})"
        )
    experts = int(expert_of.max()) + 1
    counts = np.bincount(expert_of, minlength=experts).astype(np.float64)
    if np.any(counts == 0):
        raise ValueError("every expert needs at least one filter")
    router = np.zeros((experts, weights.shape[1]))
    np.add.at(router, expert_of, weights)
    router_bias = np.bincount(expert_of, weights=bias, minlength=experts)
    return router / counts[:, None], router_bias / counts


def router_scores(
    operands_pn: object, router_en: NDArray[np.float64], router_bias_e: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``(P, E)``: each window's score for each expert (float64). ``operands_pn``: the (P, N) operands or
    their bands (:data:`~sparsesim.sparse.checks.OperandBands`)."""
    router = np.asarray(router_en, dtype=np.float64)
    scores = np.concatenate([band @ router.T for band in _operand_bands(operands_pn)])
    return scores + np.asarray(router_bias_e)[None, :]


def top_k_experts(scores_pe: object, top_k: int) -> NDArray[np.bool_]:
    """``(P, E)`` mask of the ``top_k`` highest scores of each row; equal scores: lower expert first."""
    scores = finite_matrix(scores_pe, "scores_pe", 2)
    experts = scores.shape[1]
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= experts:
        raise ValueError(f"top_k must be an integer in [1, {experts}], got {top_k!r}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    selected = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(selected, order, True, axis=1)
    return selected


def routed_outputs(selected_pe: NDArray[np.bool_], expert_of_filter: object) -> NDArray[np.bool_]:
    """``(K, P)``: whether output (filter k, window p) is computed: its filter's expert was selected."""
    expert_of = np.asarray(expert_of_filter, dtype=np.int64)
    return np.ascontiguousarray(np.asarray(selected_pe, dtype=bool)[:, expert_of].T)


def moe_output(
    operands_pn: object, weights_kn: object, bias_k: object, routed_kp: NDArray[np.bool_], relu: bool = True
) -> NDArray[np.float64]:
    """``(K, P)``: the layer's output when only routed outputs are computed; the others are 0.

    A routed output is the dense one (its filter's MACs over its whole window, plus bias, then ReLU); an
    unrouted output is never computed, so it is 0 (not ``relu(bias)``). ``operands_pn``: the (P, N)
    operands or their bands (:data:`~sparsesim.sparse.checks.OperandBands`).
    """
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    out = np.empty(np.shape(routed_kp))
    start = 0
    for band in _operand_bands(operands_pn):
        out[:, start : start + band.shape[0]] = weights @ band.T
        start += band.shape[0]
    out += finite_matrix(bias_k, "bias_k", 1)[:, None]
    if relu:
        np.maximum(out, 0.0, out=out)
    np.copyto(out, 0.0, where=~np.asarray(routed_kp, dtype=bool))
    return out


def _operand_bands(operands_pn: object) -> Iterator[NDArray[np.float64]]:
    """The (P, N) operands as one band, or the bands a callable returns (one pass: P is known)."""
    bands = operands_pn() if callable(operands_pn) else (operands_pn,)
    return (finite_matrix(band, "operands_pn", 2) for band in bands)


@dataclass(frozen=True)
class MoeCounts:
    """MACs of a routed layer: the router's, the selected experts', and the dense layer's."""

    router_macs: int
    expert_macs: int
    dense_macs: int

    @property
    def total_macs(self) -> int:
        return self.router_macs + self.expert_macs


def moe_counts(selected_pe: NDArray[np.bool_], expert_sizes: object, macs_per_output: int) -> MoeCounts:
    """MACs of a layer whose pixels use ``selected_pe``: ``E`` router dot products per pixel, plus the
    selected experts' filters; ``expert_sizes[e]`` = filters of expert e; ``macs_per_output`` = ``C*R*S``."""
    selected = np.asarray(selected_pe, dtype=bool)
    sizes = np.asarray(expert_sizes, dtype=np.int64)
    pixels, experts = selected.shape
    expert_outputs = int(selected.sum(axis=0) @ sizes)
    return MoeCounts(
        router_macs=pixels * experts * macs_per_output,
        expert_macs=expert_outputs * macs_per_output,
        dense_macs=pixels * int(sizes.sum()) * macs_per_output,
    )


def experts_needed(selected_pe: NDArray[np.bool_], group_starts: object) -> NDArray[np.bool_]:
    """``(G, E)``: per group of consecutive pixels, the experts selected by at least one of its pixels.

    ``group_starts``: the first pixel of each group, increasing from 0 (a group runs to the next start).
    This is what a tile of those pixels must have in its PEs: the union of its pixels' experts.
    """
    selected = np.asarray(selected_pe, dtype=bool)
    starts = np.asarray(group_starts, dtype=np.int64)
    if starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= len(selected):
        raise ValueError(f"group_starts must increase from 0 and stay below {len(selected)}, got {starts}")
    return np.logical_or.reduceat(selected, starts, axis=0)


def activation_recall(dense_kp: object, routed_kp: NDArray[np.bool_]) -> dict[str, float]:
    """How much of the dense layer's (post-ReLU) activation the routing keeps.

    ``positive_recall``: fraction of the dense layer's positive outputs that are computed;
    ``mass_recall``: fraction of the sum of the dense outputs that is computed; ``top_decile_recall``:
    fraction of the largest 10 % of the positive outputs that are computed. 1.0 when there is nothing to keep.
    """
    dense = finite_matrix(dense_kp, "dense_kp", 2)
    routed = np.asarray(routed_kp, dtype=bool)
    positive = dense > 0
    kept_positive = int(np.count_nonzero(positive & routed))
    total_positive = int(np.count_nonzero(positive))
    mass = float(dense[positive].sum())
    top = np.zeros(dense.shape, dtype=bool)
    if total_positive:
        values = dense[positive]
        threshold = np.sort(values)[-max(1, total_positive // 10)]
        top = dense >= threshold
        top &= positive
    return {
        "positive_recall": kept_positive / total_positive if total_positive else 1.0,
        "mass_recall": float(dense[positive & routed].sum()) / mass if mass > 0 else 1.0,
        "top_decile_recall": float(np.count_nonzero(top & routed)) / np.count_nonzero(top)
        if top.any()
        else 1.0,
    }
