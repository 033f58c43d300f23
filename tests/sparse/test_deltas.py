"""Spatial deltas (Diffy) on a bit-serial effectual-term PE.

The fast per-window term counts equal the cycle-stepped reference on small real cuts of the shipped VGG16
trace (both modes, stride 1 and 2), the term counts equal a digit-by-digit recoding (and the minimal signed
digit count) on synthetic integers (named as such), and the delta-reconstructed convolution equals the
direct one on every whole real layer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.mapping import ConvGeometry
from sparsesim.mechanisms.datapath import im2col
from sparsesim.sparse.deltas import (
    _popcount_swar,
    delta_outputs,
    effectual_terms,
    fixed_point_error,
    from_fixed_point,
    spatial_deltas,
    to_fixed_point,
    window_terms,
)
from tests.reference.deltas_reference import (
    csd_digits,
    positional_digits,
    reference_delta_outputs,
    reference_window_cycles,
)

VGG16_LAYERS = tuple(
    f"conv{block}_{i}" for block, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)
)
# (layer, channel slice, row slice, column slice): 4 channels x 6x7 pixels of real layers, quantised with the
# whole layer's scale. conv1_1 is the mean-subtracted image (negative values, smooth: many small deltas),
# the others are ReLU outputs with zeros.
CUTS = [
    ("conv1_1", slice(0, 3), slice(40, 46), slice(60, 67)),
    ("conv1_2", slice(0, 4), slice(20, 26), slice(30, 37)),
    ("conv3_1", slice(16, 20), slice(3, 9), slice(10, 17)),
    ("conv5_2", slice(100, 104), slice(1, 7), slice(2, 9)),
]
# (kernel_r, kernel_s, stride, padding)
GEOMETRIES = [(3, 3, 1, 1), (3, 3, 2, 1), (3, 3, 1, 0), (3, 3, 2, 0), (2, 3, 2, 2), (1, 1, 1, 0)]


def quantised_layer(trace, layer_name):
    layer = trace.layer(layer_name)
    ints, frac_bits = to_fixed_point(layer.input)
    return layer, ints, frac_bits


def real_cut(trace, layer_name, channels, rows, cols):
    _, ints, _ = quantised_layer(trace, layer_name)
    return np.ascontiguousarray(ints[channels, rows, cols])


def direct_conv(values_chw, weights_kcrs, stride, padding):
    """The convolution of float64 values by im2col and one matrix product: (K, Hout, Wout)."""
    filters, channels, kernel_r, kernel_s = weights_kcrs.shape
    _, height, width = values_chw.shape
    geometry = ConvGeometry(channels, height, width, filters, kernel_r, kernel_s, stride, padding)
    operands = im2col(values_chw, geometry, 0, geometry.out_height)
    out = weights_kcrs.reshape(filters, -1).astype(np.float64) @ operands.T
    return out.reshape(filters, geometry.out_height, geometry.out_width)


def minimal_signed_digit_counts(limit):
    """Fewest signed powers of two summing to n, for 0 <= n < limit, by dynamic programming (no NAF)."""
    fewest = [0] * (limit + 1)
    for n in range(1, limit + 1):
        if n % 2 == 0:
            fewest[n] = fewest[n // 2]
        else:  # an odd n needs a +-1 digit at 2**0: n = 2m + 1 or n = 2m - 1
            fewest[n] = 1 + min(fewest[(n - 1) // 2], fewest[(n + 1) // 2] if n + 1 <= limit else 99)
    return fewest[:limit]


# --- fixed point --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_name", VGG16_LAYERS)
def test_fixed_point_uses_the_largest_scale_that_fits_16_bits_on_real_layers(vgg16_trace, layer_name):
    layer = vgg16_trace.layer(layer_name)
    ints, frac_bits = to_fixed_point(layer.input)
    largest = float(np.abs(layer.input).max())
    assert np.abs(ints).max() <= 2**15 - 1
    assert np.rint(largest * 2.0 ** (frac_bits + 1)) > 2**15 - 1  # one more fractional bit would overflow
    error = fixed_point_error(layer.input, ints, frac_bits)
    assert error <= 2.0 ** -(frac_bits + 1)
    # Values on the fixed-point grid (all zeros, most large values) are exact.
    on_grid = np.ldexp(layer.input, frac_bits) == np.rint(np.ldexp(layer.input, frac_bits))
    np.testing.assert_array_equal(from_fixed_point(ints, frac_bits)[on_grid], layer.input[on_grid])
    assert ((ints == 0) == (layer.input == 0)).mean() > 0.99


def test_fixed_point_steps_down_when_rounding_overflows_on_synthetic_values():
    ints, frac_bits = to_fixed_point(np.array([32767.75, -1.0]))  # synthetic: rint(32767.75) = 32768
    assert frac_bits == -1
    np.testing.assert_array_equal(ints, [16384, 0])
    assert fixed_point_error(np.array([32767.75, -1.0]), ints, frac_bits) == 1.0


def test_fixed_point_of_small_and_zero_synthetic_values():
    ints, frac_bits = to_fixed_point(np.array([0.75, -0.5, 0.0]), bits=8)  # synthetic
    assert frac_bits == 7 and ints.tolist() == [96, -64, 0]
    zeros, zero_frac_bits = to_fixed_point(np.zeros((2, 3)))
    assert zero_frac_bits == 0 and not zeros.any()
    with pytest.raises(ValueError, match=r"bits must be in \[2, 48\], got 1"):
        to_fixed_point(np.ones(2), bits=1)
    with pytest.raises(ValueError, match="x must be finite"):
        to_fixed_point(np.array([1.0, np.inf]))


# --- effectual terms ----------------------------------------------------------------------------------------

INT16_EXTREMES = [-(2**15), -(2**15) + 1, -1, 0, 1, 2**15 - 1, 2**16, -(2**16), 2**61, -(2**61), 2**61 - 1]


def test_csd_terms_equal_a_digit_by_digit_recoding_on_synthetic_integers():
    rng = np.random.default_rng(0)
    synthetic = np.concatenate([rng.integers(-(2**17), 2**17, 5000), INT16_EXTREMES])
    expected = [sum(1 for d in csd_digits(v) if d) for v in synthetic.tolist()]
    np.testing.assert_array_equal(effectual_terms(synthetic, "csd"), expected)
    expected_positional = [sum(positional_digits(v)) for v in synthetic.tolist()]
    np.testing.assert_array_equal(effectual_terms(synthetic, "positional"), expected_positional)


def test_csd_terms_are_the_minimal_signed_digit_counts_for_every_17_bit_magnitude():
    magnitudes = np.arange(2**17)
    fewest = minimal_signed_digit_counts(2**17)
    np.testing.assert_array_equal(effectual_terms(magnitudes), fewest)
    np.testing.assert_array_equal(effectual_terms(-magnitudes), fewest)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**61), 2**61))
def test_reference_csd_digits_are_a_non_adjacent_form_of_synthetic_integers(value):
    digits = csd_digits(value)
    assert sum(d << i for i, d in enumerate(digits)) == value
    assert all(not (a and b) for a, b in zip(digits, digits[1:], strict=False))
    assert effectual_terms(np.array([value]))[0] == sum(1 for d in digits if d)
    assert effectual_terms(np.array([value]))[0] <= effectual_terms(np.array([value]), "positional")[0]


def test_the_portable_popcount_equals_pythons_on_synthetic_words():
    rng = np.random.default_rng(1)
    synthetic = np.concatenate(
        [rng.integers(0, 2**63, 2000, dtype=np.uint64), np.array([0, 1, 2**64 - 1], dtype=np.uint64)]
    )
    np.testing.assert_array_equal(_popcount_swar(synthetic), [bin(v).count("1") for v in synthetic.tolist()])


def test_effectual_terms_keep_the_shape_and_reject_what_they_cannot_count():
    synthetic = np.array([[3, -7], [0, 5]], dtype=np.int16)
    np.testing.assert_array_equal(effectual_terms(synthetic), [[2, 2], [0, 2]])
    with pytest.raises(ValueError, match="unknown term encoding 'booth'; known: csd, positional"):
        effectual_terms(synthetic, "booth")
    with pytest.raises(ValueError, match="ints must hold integers"):
        effectual_terms(np.array([1.5]))
    with pytest.raises(ValueError, match="magnitude above 2\\*\\*61"):
        effectual_terms(np.array([2**61 + 1]))


# --- spatial deltas -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_name", ["conv1_1", "conv2_2", "conv5_3"])
def test_spatial_deltas_sum_back_to_the_real_activations(vgg16_trace, layer_name):
    _, ints, _ = quantised_layer(vgg16_trace, layer_name)
    deltas = spatial_deltas(ints)
    np.testing.assert_array_equal(deltas[:, :, 0], ints[:, :, 0])
    np.testing.assert_array_equal(deltas[:, :, 1:], ints[:, :, 1:] - ints[:, :, :-1])
    np.testing.assert_array_equal(np.cumsum(deltas, axis=2), ints)
    assert np.abs(deltas).max() <= 2**16 - 1  # 17-bit signed range


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.int64,
        st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5)),
        elements=st.integers(-(2**15), 2**15 - 1),
    ),
    st.integers(0, 2),
)
def test_spatial_deltas_round_trip_along_any_axis_on_synthetic_tensors(values, axis):
    np.testing.assert_array_equal(np.cumsum(spatial_deltas(values, axis), axis=axis), values)


# --- work per window ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "r{}s{}_stride{}_pad{}".format(*g))
@pytest.mark.parametrize("mode", ["raw", "delta"])
@pytest.mark.parametrize("cut", CUTS, ids=[cut[0] for cut in CUTS])
def test_window_terms_equal_the_cycle_stepped_reference_on_real_cuts(vgg16_trace, cut, mode, geometry):
    ints = real_cut(vgg16_trace, *cut)
    kernel_r, kernel_s, stride, padding = geometry
    for encoding in ("csd", "positional"):
        fast = window_terms(ints, kernel_r, kernel_s, stride, padding, mode, encoding)
        expected = reference_window_cycles(ints, kernel_r, kernel_s, stride, padding, mode, encoding)
        np.testing.assert_array_equal(fast, np.array(expected, dtype=np.int64))


@pytest.mark.parametrize("layer_name", ["conv1_1", "conv1_2", "conv3_1", "conv5_3"])
def test_delta_window_terms_equal_terms_of_differenced_im2col_operands_on_whole_real_layers(
    vgg16_trace, layer_name
):
    layer, ints, _ = quantised_layer(vgg16_trace, layer_name)
    filters, channels, kernel_r, kernel_s = layer.weights.shape
    _, height, width = ints.shape
    geometry = ConvGeometry(channels, height, width, filters, kernel_r, kernel_s, layer.stride, layer.padding)
    operands = np.rint(im2col(ints, geometry, 0, geometry.out_height)).astype(np.int64)
    operands = operands.reshape(geometry.out_height, geometry.out_width, -1)
    raw = effectual_terms(operands).sum(axis=2)
    differenced = np.concatenate([operands[:, :1], np.diff(operands, axis=1)], axis=1)
    delta = effectual_terms(differenced).sum(axis=2)
    args = (kernel_r, kernel_s, layer.stride, layer.padding)
    np.testing.assert_array_equal(window_terms(ints, *args, mode="raw"), raw.reshape(-1))
    np.testing.assert_array_equal(window_terms(ints, *args, mode="delta"), delta.reshape(-1))


def test_deltas_pay_off_on_the_image_and_not_on_the_sparse_deep_layers(vgg16_trace):
    ratios = {}
    for name in VGG16_LAYERS:
        layer, ints, _ = quantised_layer(vgg16_trace, name)
        _, _, kernel_r, kernel_s = layer.weights.shape
        args = (ints, kernel_r, kernel_s, layer.stride, layer.padding)
        ratios[name] = window_terms(*args, mode="raw").sum() / window_terms(*args, mode="delta").sum()
    # Measured on the shipped trace: conv1_1 (the smooth image) 3.17x, conv1_2 1.15x, then 0.72x (conv5_3) to
    # 1.02x: after ReLU most neighbours of a nonzero are zero, and its delta costs as much as the value.
    assert ratios["conv1_1"] > 2.5
    assert ratios["conv1_2"] > 1.05
    assert ratios["conv5_3"] < 1.0


def test_constant_rows_cost_only_their_first_window_in_delta_mode():
    synthetic = np.full((2, 4, 6), 7, dtype=np.int64)  # synthetic: every row constant
    delta = window_terms(synthetic, 3, 3, 1, 0, mode="delta").reshape(2, 4)
    raw = window_terms(synthetic, 3, 3, 1, 0, mode="raw").reshape(2, 4)
    np.testing.assert_array_equal(raw, 2 * 9 * 2)  # 7 = 8 - 1: two terms
    np.testing.assert_array_equal(delta[:, 0], raw[:, 0])
    np.testing.assert_array_equal(delta[:, 1:], 0)


def test_window_terms_reject_unknown_modes_and_impossible_geometries():
    synthetic = np.ones((1, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="unknown window term mode 'temporal'; known: raw, delta"):
        window_terms(synthetic, 3, 3, 1, 1, mode="temporal")
    with pytest.raises(ValueError, match="stride must be an int >= 1, got 0"):
        window_terms(synthetic, 3, 3, 0, 1)
    with pytest.raises(ValueError, match="a 5x5 kernel does not fit a 3x3 input with padding 0"):
        window_terms(synthetic, 5, 5, 1, 0)
    with pytest.raises(ValueError, match="ints_chw must have 3 dimension"):
        window_terms(np.ones((3, 3), dtype=np.int64), 3, 3, 1, 1)


# --- exactness ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_name", VGG16_LAYERS)
def test_delta_outputs_equal_the_direct_convolution_on_whole_real_layers(vgg16_trace, layer_name):
    layer, ints, frac_bits = quantised_layer(vgg16_trace, layer_name)
    out = delta_outputs(ints, layer.weights, layer.stride, layer.padding, frac_bits)
    direct = direct_conv(from_fixed_point(ints, frac_bits), layer.weights, layer.stride, layer.padding)
    assert out.shape == direct.shape
    assert np.abs(out - direct).max() <= 1e-9 * np.abs(direct).max()


@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (2, 0)])
def test_delta_outputs_equal_the_reference_accumulation_on_a_real_cut(vgg16_trace, stride, padding):
    layer, ints, frac_bits = quantised_layer(vgg16_trace, "conv3_1")
    cut = np.ascontiguousarray(ints[16:20, 3:9, 10:17])
    weights = layer.weights[:3, 16:20]
    out = delta_outputs(cut, weights, stride, padding, frac_bits)
    values = from_fixed_point(cut, frac_bits)
    expected = np.array(reference_delta_outputs(values.tolist(), weights.tolist(), stride, padding))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(out, direct_conv(values, weights, stride, padding), rtol=1e-12, atol=1e-9)


def test_delta_outputs_reject_inconsistent_weights():
    synthetic = np.ones((2, 4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="ints_chw has 2 channels but weights_kcrs has 3"):
        delta_outputs(synthetic, np.ones((1, 3, 3, 3)), 1, 1, 0)
    with pytest.raises(ValueError, match="weights_kcrs must have 4 dimensions"):
        delta_outputs(synthetic, np.ones((1, 2, 3)), 1, 1, 0)
