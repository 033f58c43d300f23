"""Mixture of experts built from a dense layer (MoEfication): partition, router, routing, counts.

Properties on synthetic matrices (named as such), and on the shipped trace's real layers: the router beats
random selection and the construction reproduces the dense layer when every expert is selected.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.accelerator import geometry_of
from sparsesim.mechanisms.datapath import im2col
from sparsesim.sparse.moe import (
    activation_recall,
    balanced_kmeans_partition,
    experts_needed,
    mean_filter_router,
    moe_counts,
    moe_output,
    routed_outputs,
    router_scores,
    top_k_experts,
)

FINITE = st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def synthetic_layers(draw):
    """A synthetic layer: (weights (K, N), bias (K,), operands (P, N), experts E dividing K)."""
    experts = draw(st.integers(1, 6))
    filters = experts * draw(st.integers(1, 5))
    n = draw(st.integers(1, 12))
    pixels = draw(st.integers(1, 20))
    weights = draw(arrays(np.float64, (filters, n), elements=FINITE))
    bias = draw(arrays(np.float64, (filters,), elements=FINITE))
    operands = draw(arrays(np.float64, (pixels, n), elements=st.floats(0, 4, width=32)))
    return weights, bias, operands, experts


@settings(max_examples=150, deadline=None)
@given(synthetic_layers(), st.integers(0, 3))
def test_synthetic_partition_is_balanced_canonical_and_deterministic(layer, seed):
    weights, _, _, experts = layer
    labels = balanced_kmeans_partition(weights, experts, seed)
    assert labels.shape == (weights.shape[0],)
    assert np.array_equal(np.bincount(labels, minlength=experts), np.full(experts, len(weights) // experts))
    assert labels[0] == 0  # experts numbered by their lowest filter
    firsts = [np.flatnonzero(labels == e)[0] for e in range(experts)]
    assert firsts == sorted(firsts)
    assert np.array_equal(labels, balanced_kmeans_partition(weights.copy(), experts, seed))


@settings(max_examples=150, deadline=None)
@given(synthetic_layers(), st.data())
def test_synthetic_routing_selects_k_per_pixel_and_counts_add_up(layer, data):
    weights, bias, operands, experts = layer
    top_k = data.draw(st.integers(1, experts))
    labels = balanced_kmeans_partition(weights, experts)
    router, router_bias = mean_filter_router(weights, bias, labels)
    scores = router_scores(operands, router, router_bias)
    # The router's score is the mean pre-activation of the expert's filters.
    pre = operands @ weights.T + bias
    for e in range(experts):
        np.testing.assert_allclose(scores[:, e], pre[:, labels == e].mean(axis=1), rtol=1e-9, atol=1e-9)
    selected = top_k_experts(scores, top_k)
    assert np.all(selected.sum(axis=1) == top_k)
    sizes = np.bincount(labels, minlength=experts)
    counts = moe_counts(selected, sizes, weights.shape[1])
    routed = routed_outputs(selected, labels)
    assert counts.expert_macs == int(routed.sum()) * weights.shape[1]
    assert counts.expert_macs == len(operands) * top_k * sizes[0] * weights.shape[1]
    assert counts.router_macs == len(operands) * experts * weights.shape[1]
    assert counts.dense_macs == weights.size * len(operands)
    assert counts.total_macs == counts.router_macs + counts.expert_macs
    out = moe_output(operands, weights, bias, routed)
    # The same product as the datapath's (K x N by N x P): two BLAS products summed in another order may
    # differ in the last bit, and a routed output must be exactly the dense one.
    dense = np.maximum(weights @ operands.T + bias[:, None], 0.0)
    assert np.array_equal(out[routed], dense[routed]) and np.all(out[~routed] == 0.0)
    recall = activation_recall(dense, routed)
    assert all(0.0 <= value <= 1.0 for value in recall.values())


@settings(max_examples=100, deadline=None)
@given(synthetic_layers(), st.integers(1, 4))
def test_synthetic_operand_bands_give_the_scores_and_outputs_of_the_whole_matrix(layer, band_windows):
    weights, bias, operands, experts = layer
    labels = balanced_kmeans_partition(weights, experts)
    router, router_bias = mean_filter_router(weights, bias, labels)

    def bands():
        return (operands[i : i + band_windows] for i in range(0, len(operands), band_windows))

    # Equal up to the rounding of matrix products of other shapes (a band of one window is a vector).
    scores = router_scores(operands, router, router_bias)
    np.testing.assert_allclose(router_scores(bands, router, router_bias), scores, rtol=1e-12, atol=1e-12)
    routed = routed_outputs(top_k_experts(scores, 1), labels)
    np.testing.assert_allclose(
        moe_output(bands, weights, bias, routed),
        moe_output(operands, weights, bias, routed),
        rtol=1e-12,
        atol=1e-12,
    )


@settings(max_examples=100, deadline=None)
@given(synthetic_layers())
def test_synthetic_selecting_every_expert_reproduces_the_dense_layer_exactly(layer):
    weights, bias, operands, experts = layer
    labels = balanced_kmeans_partition(weights, experts)
    router, router_bias = mean_filter_router(weights, bias, labels)
    selected = top_k_experts(router_scores(operands, router, router_bias), experts)
    routed = routed_outputs(selected, labels)
    assert routed.all()
    dense = np.maximum(weights @ operands.T + bias[:, None], 0.0)
    assert np.array_equal(moe_output(operands, weights, bias, routed), dense)
    assert activation_recall(dense, routed) == {
        "positive_recall": 1.0,
        "mass_recall": 1.0,
        "top_decile_recall": 1.0,
    }


@settings(max_examples=100, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 6))), st.data())
def test_synthetic_experts_needed_is_the_union_and_grows_with_the_group(selected, data):
    pixels = len(selected)
    starts = sorted(data.draw(st.sets(st.integers(1, max(1, pixels - 1)), max_size=5)) - {pixels})
    groups = [0, *[s for s in starts if 0 < s < pixels]]
    needed = experts_needed(selected, groups)
    bounds = [*groups, pixels]
    for g, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        assert np.array_equal(needed[g], selected[lo:hi].any(axis=0))
    assert np.array_equal(experts_needed(selected, np.arange(pixels)), selected)
    assert np.array_equal(experts_needed(selected, [0])[0], needed.any(axis=0))


def test_bad_arguments_are_value_errors():
    weights = np.ones((6, 3))
    with pytest.raises(ValueError, match="cannot be split into 4 experts"):
        balanced_kmeans_partition(weights, 4)
    with pytest.raises(ValueError, match="top_k must be an integer in"):
        top_k_experts(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="finite"):
        balanced_kmeans_partition(np.full((4, 2), np.nan), 2)
    with pytest.raises(ValueError, match="group_starts"):
        experts_needed(np.zeros((3, 2), dtype=bool), [1])


@pytest.mark.parametrize("layer_name", ["conv2_2", "conv3_1", "conv5_2"])
def test_real_router_keeps_more_activation_than_random_experts(vgg16_trace, layer_name):
    """On the real layers, the top-2 of 8 experts compute a quarter of the filters but keep more than a
    quarter of the dense layer's activation mass (random experts would keep a quarter on average), and the
    mean-filter router stays within reach of the oracle that knows each expert's true activation mass."""
    layer = vgg16_trace.layer(layer_name)
    geometry = geometry_of(layer)
    operands = im2col(layer.input, geometry, 0, geometry.out_height)
    weights = layer.weights.reshape(geometry.filters, -1).astype(np.float64)
    labels = balanced_kmeans_partition(weights, 8)
    router, router_bias = mean_filter_router(weights, layer.bias, labels)
    routed = routed_outputs(top_k_experts(router_scores(operands, router, router_bias), 2), labels)
    dense = layer.output.reshape(geometry.filters, -1).astype(np.float64)
    mass = np.stack([dense[labels == e].sum(axis=0) for e in range(8)], axis=1)
    oracle = routed_outputs(top_k_experts(mass, 2), labels)
    kept, best = (
        activation_recall(dense, routed)["mass_recall"],
        activation_recall(dense, oracle)["mass_recall"],
    )
    assert 0.3 < kept <= best
    assert kept > 0.75 * best
