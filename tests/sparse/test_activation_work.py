"""Pure activation-lane work: properties on synthetic tensors (named as such), no timing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.sparse.activation_work import (
    effectual_macs,
    lane_boundaries,
    lane_operand_counts,
    lockstep_cycles,
    window_cycles,
    window_nonzero_counts,
)

synthetic_inputs = arrays(
    np.float32,
    st.tuples(st.integers(1, 5), st.integers(1, 7), st.integers(1, 7)),
    elements=st.sampled_from([0.0, 0.0, 1.5, -2.0, 3.0]),
)


def naive_window_counts(x, r, s, stride, padding):
    padded = np.pad(x != 0, ((0, 0), (padding, padding), (padding, padding)))
    out_h = (x.shape[1] + 2 * padding - r) // stride + 1
    out_w = (x.shape[2] + 2 * padding - s) // stride + 1
    out = np.zeros((x.shape[0], max(out_h, 0), max(out_w, 0)), dtype=np.int64)
    for y in range(out_h):
        for xx in range(out_w):
            out[:, y, xx] = padded[:, y * stride : y * stride + r, xx * stride : xx * stride + s].sum(
                axis=(1, 2)
            )
    return out


@settings(max_examples=60, deadline=None)
@given(synthetic_inputs, st.integers(1, 3), st.integers(1, 2), st.integers(0, 1))
def test_window_counts_equal_a_naive_count_on_synthetic_tensors(x, kernel, stride, padding):
    if x.shape[1] + 2 * padding < kernel or x.shape[2] + 2 * padding < kernel:
        return
    got = window_nonzero_counts(x, kernel, kernel, stride, padding)
    np.testing.assert_array_equal(got, naive_window_counts(x, kernel, kernel, stride, padding))


@given(st.integers(0, 40), st.integers(1, 17))
def test_lane_slices_partition_the_channels_and_differ_by_at_most_one(n_channels, lanes):
    bounds = lane_boundaries(n_channels, lanes)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == n_channels and sizes.sum() == n_channels
    assert sizes.max() - sizes.min() <= 1
    assert sizes.max() == -(-n_channels // lanes)


@given(
    arrays(np.int64, st.tuples(st.integers(1, 20), st.integers(1, 6)), elements=st.integers(0, 9)),
    st.integers(1, 8),
)
def test_lane_counts_conserve_the_operands(counts, lanes):
    per_lane = lane_operand_counts(counts, lanes)
    np.testing.assert_array_equal(per_lane.sum(axis=0), counts.sum(axis=0))


@given(
    arrays(np.int64, st.tuples(st.integers(1, 20), st.integers(1, 6)), elements=st.integers(0, 9)),
    st.integers(1, 8),
    st.integers(1, 9),
)
def test_skipping_never_takes_longer_than_dense_and_at_least_one_cycle(counts, lanes, positions):
    counts = np.minimum(counts, positions)  # a channel has at most R*S operands in a window
    skip = window_cycles(counts, lanes, positions, "zero_skip_activations")
    dense = window_cycles(counts, lanes, positions, "none")
    assert (skip >= 1).all() and (skip <= dense).all()
    np.testing.assert_array_equal(window_cycles(counts, lanes, positions, "zero_gating"), dense)


def test_lockstep_rows_wait_for_the_slowest_window():
    assert lockstep_cycles(np.array([3, 1, 2, 5, 1]), rows=2) == 3 + 5 + 1
    assert lockstep_cycles(np.array([3, 1, 2, 5, 1]), rows=1) == 12
    assert lockstep_cycles(np.array([], dtype=np.int64), rows=4) == 0


@settings(max_examples=40, deadline=None)
@given(synthetic_inputs, st.integers(1, 4), st.integers(1, 2), st.integers(0, 1), st.data())
def test_effectual_macs_count_pairs_of_nonzero_operands(x, filters, stride, padding, data):
    kernel = 3
    if x.shape[1] + 2 * padding < kernel or x.shape[2] + 2 * padding < kernel:
        return
    w = data.draw(
        arrays(np.float32, (filters, x.shape[0], kernel, kernel), elements=st.sampled_from([0.0, 1.0]))
    )
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    out_h = (x.shape[1] + 2 * padding - kernel) // stride + 1
    out_w = (x.shape[2] + 2 * padding - kernel) // stride + 1
    expected = 0
    for y in range(out_h):
        for xx in range(out_w):
            patch = padded[:, y * stride : y * stride + kernel, xx * stride : xx * stride + kernel] != 0
            expected += int(((w != 0) & patch[None]).sum())
    assert effectual_macs(x, w, stride, padding) == expected
