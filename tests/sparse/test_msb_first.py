"""MSB-first ReLU prediction (PredictiveNet).

The fast model equals the cycle-stepped reference on small real cuts of the shipped VGG16 trace (16-bit
fixed-point activations at the layer's own scale), and properties hold on synthetic matrices (named so).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.mapping import ConvGeometry
from sparsesim.mechanisms.datapath import im2col
from sparsesim.sparse.deltas import to_fixed_point
from sparsesim.sparse.msb_first import lsb_bound, msb_first, split_msb_lsb
from tests.reference.msb_first_reference import reference_layer

# (layer, channel slice, row slice, column slice, filters); conv1_1 reads the mean-subtracted photo.
CUTS = [
    ("conv1_2", slice(0, 6), slice(20, 25), slice(30, 35), 4),
    ("conv3_1", slice(16, 22), slice(3, 8), slice(10, 15), 4),
    ("conv5_2", slice(100, 106), slice(1, 6), slice(2, 7), 4),
    ("conv1_1", slice(0, 3), slice(40, 45), slice(60, 65), 4),
]
# (decision, msb_bits, threshold)
SETTINGS = [
    ("predictive", 8, 0.0),
    ("predictive", 4, 0.05),
    ("predictive", 12, -0.02),
    ("exact", 8, 0.0),
    ("exact", 4, 0.0),
    ("predictive", 8, -np.inf),
]


def real_fixed_point_cut(trace, layer_name, channels, rows, cols, filters):
    """im2col fixed-point integers (P, N) at the whole layer's scale, weights (K, N), bias, frac_bits."""
    layer = trace.layer(layer_name)
    ints, frac_bits = to_fixed_point(layer.input, bits=16)
    cut = np.ascontiguousarray(ints[channels, rows, cols])
    n_channels, height, width = cut.shape
    geometry = ConvGeometry(n_channels, height, width, filters, 3, 3, 1, 1)
    operands = im2col(cut, geometry, 0, geometry.out_height).astype(np.int64)
    weights = layer.weights[:filters, channels].reshape(filters, -1).astype(np.float64)
    return operands, weights, layer.bias[:filters].astype(np.float64), frac_bits


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("setting", SETTINGS, ids=[f"{d}-{m}-{t}" for d, m, t in SETTINGS])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_fast_model_equals_the_cycle_stepped_reference_on_real_cuts(vgg16_trace, cut, setting, skip):
    decision, msb_bits, threshold = setting
    operands, weights, bias, frac_bits = real_fixed_point_cut(vgg16_trace, *cut)
    result = msb_first(
        operands,
        weights,
        bias,
        frac_bits=frac_bits,
        msb_bits=msb_bits,
        decision=decision,
        threshold=threshold,
        skip_zero_activations=skip,
    )
    msb, lsb, terminated, output, mispredicted = reference_layer(
        operands, weights, bias, frac_bits, msb_bits, 16, decision, threshold, skip
    )
    np.testing.assert_array_equal(result.msb_macs, np.array(msb))
    np.testing.assert_array_equal(result.lsb_macs, np.array(lsb))
    np.testing.assert_array_equal(result.terminated, np.array(terminated))
    np.testing.assert_array_equal(result.mispredicted, np.array(mispredicted))
    np.testing.assert_allclose(result.output, np.array(output), rtol=0, atol=1e-9)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_operand_bands_equal_the_cycle_stepped_reference_on_real_cuts(vgg16_trace, cut, skip):
    """The operands given a band of 4 windows at a time, worked through 3 windows at a time."""
    operands, weights, bias, frac_bits = real_fixed_point_cut(vgg16_trace, *cut)
    result = msb_first(
        lambda: (operands[i : i + 4] for i in range(0, len(operands), 4)),
        weights,
        bias,
        frac_bits=frac_bits,
        msb_bits=6,
        threshold=0.0,
        skip_zero_activations=skip,
        chunk_windows=3,
    )
    msb, lsb, terminated, output, mispredicted = reference_layer(
        operands, weights, bias, frac_bits, 6, 16, "predictive", 0.0, skip
    )
    np.testing.assert_array_equal(result.msb_macs, np.array(msb))
    np.testing.assert_array_equal(result.lsb_macs, np.array(lsb))
    np.testing.assert_array_equal(result.terminated, np.array(terminated))
    np.testing.assert_array_equal(result.mispredicted, np.array(mispredicted))
    np.testing.assert_allclose(result.output, np.array(output), rtol=0, atol=1e-9)


def test_real_cuts_exercise_both_outcomes(vgg16_trace):
    """The cuts are not trivial: some outputs skip their LSB pass, some do not, and 4 MSB bits mispredict."""
    operands, weights, bias, frac_bits = real_fixed_point_cut(vgg16_trace, *CUTS[1])
    exact = msb_first(operands, weights, bias, frac_bits=frac_bits, msb_bits=8, decision="exact")
    assert 0 < exact.terminated.sum() < exact.terminated.size
    coarse = msb_first(operands, weights, bias, frac_bits=frac_bits, msb_bits=2, threshold=0.0)
    assert coarse.terminated.sum() > exact.terminated.sum()


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("setting", SETTINGS, ids=[f"{d}-{m}-{t}" for d, m, t in SETTINGS])
def test_without_relu_every_lsb_pass_is_performed_and_the_output_is_the_pre_activation(
    vgg16_trace, setting, skip
):
    """No ReLU after the layer: no decision to make, so both passes of every output, and y keeps its sign."""
    decision, msb_bits, threshold = setting
    operands, weights, bias, frac_bits = real_fixed_point_cut(vgg16_trace, *CUTS[1])
    common = dict(frac_bits=frac_bits, msb_bits=msb_bits, decision=decision, threshold=threshold)
    result = msb_first(operands, weights, bias, skip_zero_activations=skip, relu=False, **common)
    assert not result.relu and not result.terminated.any() and not result.mispredicted.any()
    np.testing.assert_array_equal(result.lsb_macs, result.msb_macs)
    pre_activation = weights @ (operands * 2.0**-frac_bits).T + bias[:, None]
    assert (pre_activation < 0).any()
    np.testing.assert_allclose(result.output, pre_activation, rtol=0, atol=1e-9)
    with_relu = msb_first(operands, weights, bias, skip_zero_activations=skip, **common)
    np.testing.assert_array_equal(result.msb_macs, with_relu.msb_macs)  # the same MSB passes


# --- properties on synthetic matrices --------------------------------------------------------------------


@st.composite
def synthetic_layers(draw):
    """Synthetic (not real) fixed-point operands, weights with zeros and both signs, bias, scale, msb_bits."""
    n_windows = draw(st.integers(1, 6))
    n_positions = draw(st.integers(1, 12))
    n_filters = draw(st.integers(1, 4))
    signed = draw(st.booleans())
    ints = draw(
        arrays(np.int64, (n_windows, n_positions), elements=st.integers(-32768 if signed else 0, 32767))
    )
    zeros = draw(arrays(np.bool_, (n_windows, n_positions)))
    ints = np.where(zeros, 0, ints)
    weight = st.one_of(st.just(0.0), st.floats(-2, 2, allow_nan=False, width=16).map(float))
    weights = draw(arrays(np.float64, (n_filters, n_positions), elements=weight))
    bias = draw(arrays(np.float64, (n_filters,), elements=st.floats(-4, 4, allow_nan=False, width=16)))
    frac_bits = draw(st.integers(8, 16))
    msb_bits = draw(st.integers(1, 15))
    return ints, weights, bias, frac_bits, msb_bits


def dense_pre_activation(ints, weights, bias, frac_bits):
    return (ints.astype(np.float64) * 2.0**-frac_bits @ weights.T + bias).T  # (K, P)


@given(
    st.data(), arrays(np.int64, st.integers(0, 20), elements=st.integers(-32768, 32767)), st.integers(1, 15)
)
def test_split_parts_add_up_and_the_low_part_is_small_and_non_negative(_, ints, msb_bits):
    msb, lsb = split_msb_lsb(ints, msb_bits)
    np.testing.assert_array_equal(msb + lsb, ints)
    assert ((lsb >= 0) & (lsb < 2 ** (16 - msb_bits))).all()
    assert (msb % 2 ** (16 - msb_bits) == 0).all()


@settings(max_examples=150, deadline=None)
@given(synthetic_layers(), st.booleans())
def test_exact_decision_never_changes_the_output(layer, skip):
    ints, weights, bias, frac_bits, msb_bits = layer
    result = msb_first(
        ints,
        weights,
        bias,
        frac_bits=frac_bits,
        msb_bits=msb_bits,
        decision="exact",
        skip_zero_activations=skip,
    )
    assert not result.mispredicted.any()
    dense = np.maximum(dense_pre_activation(ints, weights, bias, frac_bits), 0.0)
    np.testing.assert_allclose(result.output, dense, rtol=1e-12, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(synthetic_layers(), st.booleans())
def test_threshold_minus_infinity_computes_every_lsb_pass(layer, skip):
    ints, weights, bias, frac_bits, msb_bits = layer
    result = msb_first(
        ints,
        weights,
        bias,
        frac_bits=frac_bits,
        msb_bits=msb_bits,
        threshold=-np.inf,
        skip_zero_activations=skip,
    )
    assert not result.terminated.any()
    np.testing.assert_array_equal(result.lsb_macs, result.msb_macs)
    dense = np.maximum(dense_pre_activation(ints, weights, bias, frac_bits), 0.0)
    np.testing.assert_allclose(result.output, dense, rtol=1e-12, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(synthetic_layers(), st.booleans(), st.floats(-2, 2, allow_nan=False))
def test_counts_add_up_and_mispredictions_are_skipped_positive_outputs(layer, skip, threshold):
    ints, weights, bias, frac_bits, msb_bits = layer
    result = msb_first(
        ints,
        weights,
        bias,
        frac_bits=frac_bits,
        msb_bits=msb_bits,
        threshold=threshold,
        skip_zero_activations=skip,
    )
    nonzero_weights = (weights != 0).astype(np.int64)
    issued = (
        nonzero_weights @ (ints != 0).T if skip else np.repeat(nonzero_weights.sum(1)[:, None], len(ints), 1)
    )
    np.testing.assert_array_equal(result.msb_macs, issued)
    np.testing.assert_array_equal(result.lsb_macs, np.where(result.terminated, 0, issued))
    np.testing.assert_array_equal(result.macs_performed, result.msb_macs + result.lsb_macs)
    assert (result.output[result.terminated] == 0).all()
    assert not (result.mispredicted & ~result.terminated).any()
    y = dense_pre_activation(ints, weights, bias, frac_bits)
    clear = np.abs(y) > 1e-9 * (1 + np.abs(ints) @ np.abs(weights).T).T
    np.testing.assert_array_equal(result.mispredicted[clear], (result.terminated & (y > 0))[clear])
    kept = ~result.terminated
    np.testing.assert_allclose(result.output[kept], np.maximum(y, 0)[kept], rtol=1e-12, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(synthetic_layers(), st.floats(-1, 1, allow_nan=False), st.floats(0, 1, allow_nan=False))
def test_a_higher_threshold_skips_more_and_exact_skips_least(layer, threshold, step):
    ints, weights, bias, frac_bits, msb_bits = layer
    common = dict(frac_bits=frac_bits, msb_bits=msb_bits)
    low = msb_first(ints, weights, bias, threshold=threshold, **common)
    high = msb_first(ints, weights, bias, threshold=threshold + step, **common)
    assert not (low.terminated & ~high.terminated).any()
    exact = msb_first(ints, weights, bias, decision="exact", **common)
    at_zero = msb_first(ints, weights, bias, threshold=0.0, **common)
    assert not (exact.terminated & ~at_zero.terminated).any()  # the bound is >= 0


def test_the_lsb_bound_is_reached_by_all_ones_low_parts_on_positive_weights():
    """Synthetic: the bound is tight; an output at exactly -bound is skipped by nothing but the guard."""
    weights = np.array([[0.5, -1.0, 0.25]])
    bound = lsb_bound(weights, lsb_bits=4, frac_bits=4)
    assert bound[0] == pytest.approx(15 / 16 * 0.75)
    ints = np.array(
        [[15, 0, 15]]
    )  # the largest LSB parts (msb_bits = 12: 4 low bits), on the positive weights
    y = float(dense_pre_activation(ints, weights, np.zeros(1), 4)[0, 0])
    assert y == pytest.approx(bound[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(msb_bits=0), "msb_bits must be in"),
        (dict(msb_bits=16), "msb_bits must be in"),
        (dict(msb_bits=True), "msb_bits must be an int"),
        (dict(decision="sometimes"), "unknown MSB-first decision 'sometimes'; known: predictive, exact"),
        (dict(threshold=np.nan), "threshold must not be NaN"),
        (dict(frac_bits=1.5), "frac_bits must be an int"),
        (dict(chunk_windows=0), "chunk_windows must be an int >= 1"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, message):
    arguments = dict(frac_bits=8, msb_bits=8) | kwargs
    with pytest.raises(ValueError, match=message):
        msb_first(np.zeros((2, 3), dtype=np.int64), np.ones((1, 3)), np.zeros(1), **arguments)


@pytest.mark.parametrize(
    ("operands", "weights", "bias", "message"),
    [
        (np.full((2, 3), 0.5), np.ones((1, 3)), np.zeros(1), "non-integral"),
        (
            np.full((2, 3), 40000),
            np.ones((1, 3)),
            np.zeros(1),
            r"signed 16-bit integers in \[-32768, 32767\]",
        ),
        (np.zeros((2, 3), dtype=bool), np.ones((1, 3)), np.zeros(1), "fixed-point integers, got dtype bool"),
        (np.zeros(3, dtype=np.int64), np.ones((1, 3)), np.zeros(1), "2 dimension"),
        (np.zeros((2, 3), dtype=np.int64), np.ones((1, 4)), np.zeros(1), "3 positions per window"),
        (
            np.zeros((2, 3), dtype=np.int64),
            np.ones((1, 3)),
            np.zeros(2),
            "bias_k has 2 entries for 1 filters",
        ),
        (np.zeros((2, 3), dtype=np.int64), np.full((1, 3), np.inf), np.zeros(1), "finite"),
    ],
)
def test_bad_operands_raise_value_errors(operands, weights, bias, message):
    with pytest.raises(ValueError, match=message):
        msb_first(operands, weights, bias, frac_bits=8, msb_bits=8)


def test_outputs_on_the_decision_boundary_are_decided_by_the_sequential_sum():
    """Synthetic: MSB sums exactly at the threshold (and exact margins of 0) take the replay path."""
    ints = np.array([[0, 0, 0], [256, 0, 0]])
    weights = np.array([[-1.0, -0.5, 0.0]])
    result = msb_first(ints, weights, np.array([0.25]), frac_bits=8, msb_bits=8, threshold=0.25)
    np.testing.assert_array_equal(result.terminated, [[True, True]])  # 0.25 <= 0.25, then -0.75 <= 0.25
    exact = msb_first(ints, weights, np.zeros(1), frac_bits=8, msb_bits=8, decision="exact")
    np.testing.assert_array_equal(exact.terminated, [[True, True]])  # margins 0 and -1: both provably <= 0
    assert not exact.mispredicted.any() and (exact.output == 0).all()
