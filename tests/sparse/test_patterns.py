"""Pattern-based kernel pruning (PCONV / PatDNN): properties on synthetic weights (hypothesis), then the
real weights of the shipped trace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.sparse.patterns import (
    assign_patterns,
    build_library,
    candidate_patterns,
    filter_order,
    layer_patterns,
    natural_patterns,
    pattern_id_bits,
    pattern_metadata_bits,
    pattern_prune,
)

# Synthetic weights: small (K, C, 3, 3) arrays of float16-representable values, zeros included.
synthetic_weights = st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda kc: arrays(
        np.float32,
        (kc[0], kc[1], 3, 3),
        elements=st.sampled_from([0.0, 0.5, -0.5, 1.0, -2.0, 0.25, 3.0, -0.125, 1.5]),
    )
)
library_sizes = st.integers(1, 12)
rates = st.sampled_from([0.0, 0.25, 0.5, 0.75])


def kept_positions(weights, mask):
    return (~mask).reshape(*weights.shape[:2], -1)


@settings(max_examples=150, deadline=None)
@given(synthetic_weights, library_sizes, rates)
def test_every_kept_kernel_keeps_exactly_its_library_pattern(weights, size, rate):
    result = pattern_prune(weights, size, rate)
    library, ids = result.patterns.library, result.patterns.pattern_ids
    assert len(library) == min(size, 56)
    assert (library.sum(axis=1) == 4).all() and library[:, 4].all()  # 4 entries, the centre among them
    assert len({row.tobytes() for row in library}) == len(library)  # distinct patterns
    kept = kept_positions(weights, result.mask)
    connected = ids >= 0
    assert (kept[connected] == library[ids[connected]]).all()
    assert not kept[~connected].any()
    pruned = np.where(result.mask, 0.0, weights)
    assert (np.count_nonzero(pruned.reshape(*weights.shape[:2], -1), axis=2) <= 4).all()


@settings(max_examples=100, deadline=None)
@given(synthetic_weights, library_sizes, rates)
def test_connectivity_pruning_removes_the_weakest_kernels_at_the_given_rate(weights, size, rate):
    result = pattern_prune(weights, size, rate)
    connected = result.patterns.connected
    kernels = weights.shape[0] * weights.shape[1]
    assert (~connected).sum() == round(rate * kernels)
    library = build_library(weights, size)
    squares = weights.reshape(*weights.shape[:2], 9).astype(np.float64) ** 2
    kept_norms = (library[assign_patterns(weights, library)] * squares).sum(axis=2)  # before removal
    if connected.any() and (~connected).any():
        assert kept_norms[~connected].max() <= kept_norms[connected].min()


@settings(max_examples=100, deadline=None)
@given(synthetic_weights, library_sizes)
def test_each_kernel_takes_the_pattern_keeping_the_largest_norm(weights, size):
    library = build_library(weights, size)
    ids = assign_patterns(weights, library)
    squares = weights.reshape(-1, 9).astype(np.float64) ** 2
    kept = squares @ library.T
    chosen = kept[np.arange(len(squares)), ids.reshape(-1)]
    assert (chosen >= kept.max(axis=1)).all()


@settings(max_examples=100, deadline=None)
@given(synthetic_weights, library_sizes, rates)
def test_pattern_pruning_is_deterministic(weights, size, rate):
    first, second = pattern_prune(weights, size, rate), pattern_prune(weights.copy(), size, rate)
    assert np.array_equal(first.mask, second.mask)
    assert np.array_equal(first.patterns.pattern_ids, second.patterns.pattern_ids)
    assert np.array_equal(first.patterns.library, second.patterns.library)


# Synthetic weights with no zero: every kept kernel then holds exactly 4 nonzero weights.
synthetic_nonzero_weights = st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda kc: arrays(
        np.float32, (kc[0], kc[1], 3, 3), elements=st.sampled_from([0.5, -0.5, 1.0, -2.0, 0.25, 3.0, -0.125])
    )
)


def assert_library_covers(pruned, patterns):
    support = (pruned != 0).reshape(*pruned.shape[:2], -1)
    connected = patterns.connected
    assert np.array_equal(connected, support.any(axis=2))
    inside = patterns.library[np.where(connected, patterns.pattern_ids, 0)]
    assert not (support & ~inside)[connected].any()
    assert (patterns.library.sum(axis=1) == min(4, support.shape[2])).all()


@settings(max_examples=100, deadline=None)
@given(synthetic_nonzero_weights, library_sizes, rates)
def test_the_hardware_recovers_the_pruning_library_from_the_stored_weights(weights, size, rate):
    pruned = np.where(pattern_prune(weights, size, rate).mask, np.float32(0), weights)
    patterns = layer_patterns(pruned, 4, size)
    assert patterns is not None and len(patterns.library) <= size
    assert_library_covers(pruned, patterns)


@settings(max_examples=150, deadline=None)
@given(synthetic_weights, library_sizes, st.integers(1, 12), rates)
def test_any_library_the_hardware_builds_covers_every_nonzero_weight(weights, size, table, rate):
    """With zero weights inside the patterns, kernels hold fewer than 4 nonzeros; the greedy cover may
    need more patterns than the pruning used (then the layer runs dense) but never misses a weight."""
    pruned = np.where(pattern_prune(weights, size, rate).mask, np.float32(0), weights)
    patterns = layer_patterns(pruned, 4, table)
    if patterns is not None:
        assert len(patterns.library) <= table
        assert_library_covers(pruned, patterns)


def test_kernels_with_fewer_nonzeros_share_one_pattern_when_one_holds_them_all():
    synthetic = np.zeros((1, 2, 3, 3), dtype=np.float32)
    synthetic[0, 0, 0, 0] = synthetic[0, 1, 1, 0] = 0.5  # supports {0} and {3}
    patterns = layer_patterns(synthetic, 4, 1)
    assert patterns is not None and patterns.library.astype(int).tolist() == [[1, 1, 1, 1, 0, 0, 0, 0, 0]]
    assert patterns.pattern_ids.tolist() == [[0, 0]]


@settings(max_examples=60, deadline=None)
@given(synthetic_weights)
def test_weights_with_a_kernel_of_more_than_four_nonzeros_follow_no_pattern(weights):
    counts = np.count_nonzero(weights.reshape(*weights.shape[:2], 9), axis=2)
    assert (layer_patterns(weights, 4, 56) is None) == bool((counts > 4).any())


@settings(max_examples=60, deadline=None)
@given(synthetic_weights, rates)
def test_metadata_is_a_connectivity_bit_per_kernel_an_id_per_connected_kernel_and_the_table(weights, rate):
    patterns = pattern_prune(weights, 8, rate).patterns
    bits = pattern_metadata_bits(patterns)
    kernels = weights.shape[0] * weights.shape[1]
    assert bits["connectivity"] == kernels
    assert bits["pattern_ids"] == int(patterns.connected.sum()) * 3
    assert bits["library"] == 8 * 9
    assert bits["total"] == bits["connectivity"] + bits["pattern_ids"] + bits["library"]
    order = filter_order(patterns)
    per_filter = patterns.connected.sum(axis=1)[order]
    assert sorted(order.tolist()) == list(range(weights.shape[0])) and (np.diff(per_filter) <= 0).all()


def test_candidates_and_id_bits():
    assert len(candidate_patterns(3, 3)) == 56 and len(candidate_patterns(5, 5)) == 2024
    assert candidate_patterns(1, 1).tolist() == [1]
    assert [pattern_id_bits(p) for p in (1, 2, 3, 4, 8, 9)] == [0, 1, 2, 2, 3, 4]


def test_one_by_one_kernels_keep_their_weight_and_only_lose_connectivity():
    synthetic = np.arange(1, 13, dtype=np.float32).reshape(3, 4, 1, 1)
    result = pattern_prune(synthetic, 8, 0.5)
    assert result.patterns.library.tolist() == [[True]]
    assert result.mask.sum() == 6 and not result.mask.reshape(-1)[6:].any()  # the 6 smallest went


def test_bad_arguments_are_value_errors():
    synthetic = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="connectivity"):
        pattern_prune(synthetic, 8, 1.0)
    with pytest.raises(ValueError, match="at least 1 pattern"):
        build_library(synthetic, 0)
    with pytest.raises(ValueError, match=r"\(K, C, R, S\)"):
        natural_patterns(np.ones((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        pattern_prune(np.full((1, 1, 3, 3), np.nan))


def test_real_weights_prune_to_four_ninths_with_a_library_of_eight_centred_patterns(vgg16_trace):
    w = vgg16_trace.layer("conv3_1").weights
    result = pattern_prune(w, 8)
    assert len(result.patterns.library) == 8 and result.patterns.library[:, 4].all()
    assert result.mask.mean() == pytest.approx(5 / 9)
    # The library holds the most frequent natural patterns: together they cover a good share of kernels.
    natural = natural_patterns(w)
    codes = (result.patterns.library * (1 << np.arange(9))).sum(axis=1)
    assert np.isin(natural, codes).mean() > 8 / 56
    half = pattern_prune(w, 8, 0.5)
    assert half.mask.mean() == pytest.approx(1 - 4 / 9 * 0.5)
