"""Winograd F(2x2, 3x3) convolution (Lavin & Gray, CVPR 2016), the lecture's Gauss trick generalised.

The outputs equal numpy's direct convolution on synthetic tensors (named as such) and on real cuts and whole
layers of the shipped VGG16 trace; the fast counts equal the cycle-stepped reference on small real cuts;
dense multiplications per output fall 2.25x; and on magnitude-pruned real weights most zeros vanish in the
transformed weights.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.sparse import winograd
from sparsesim.sparse.winograd import (
    A_T,
    B_T,
    BAND_ELEMENTS,
    SKIP_MODES,
    G,
    input_tile_bands,
    input_tiles,
    tile_row_bands,
    transform_weights,
    unsupported_reason,
    winograd_geometry,
    winograd_output,
    winograd_work,
)
from sparsesim.workload.ops import conv2d_reference
from sparsesim.workload.pruning import prune_weights
from tests.real_cuts import pruned_weights
from tests.reference.winograd_reference import f23_input, f23_weights, reference_layer, transform_2d

# (layer, channel slice, row slice, column slice, filters): zeros and nonzeros, odd sizes (partial tiles).
CUTS = [
    ("conv1_2", slice(0, 5), slice(20, 27), slice(30, 38), 4),
    ("conv3_1", slice(16, 24), slice(3, 9), slice(10, 17), 3),
    ("conv5_2", slice(100, 110), slice(0, 7), slice(0, 6), 3),
]


def real_cut(trace, layer_name, channels, rows, cols, filters, pruning=0.0):
    """A small cut of a real layer: input (C, h, w), weights (filters, C, 3, 3) and bias, as float64. With
    ``pruning``, the whole layer's weights are magnitude-pruned to that fraction first (one-shot, in
    memory), then cut."""
    layer = trace.layer(layer_name)
    weights = pruned_weights(trace, layer_name, pruning) if pruning else layer.weights
    return (
        np.asarray(layer.input[channels, rows, cols], dtype=np.float64),
        np.asarray(weights[:filters, channels], dtype=np.float64),
        np.asarray(layer.bias[:filters], dtype=np.float64),
    )


def density(array):
    return np.count_nonzero(array) / array.size


# --- the algorithm ------------------------------------------------------------------------------------------


def test_f23_gives_two_outputs_of_a_3_tap_filter_with_4_multiplications_instead_of_6():
    # The Gauss trick generalised: add before multiplying. 1-D F(2, 3), synthetic values.
    d = np.array([1.0, -2.0, 3.5, 0.25])
    g = np.array([0.5, -1.0, 2.0])
    products = (G @ g) * (B_T @ d)  # the only 4 multiplications
    np.testing.assert_allclose(A_T @ products, [d[0:3] @ g, d[1:4] @ g], rtol=1e-15)
    assert products.size == 4


def test_each_transformed_weight_mixes_1_3_or_9_spatial_weights():
    # Why a pruned kernel's zeros vanish: U[xi, nu] = sum_{r,s} G[xi, r] G[nu, s] g[r, s].
    mixed = np.einsum("ar,bs->abrs", G != 0, G != 0).sum(axis=(2, 3))
    np.testing.assert_array_equal(mixed, [[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]])
    centre_only = np.zeros((1, 1, 3, 3))
    centre_only[0, 0, 1, 1] = 1.0
    assert density(centre_only) == 1 / 9
    assert density(transform_weights(centre_only)) == 4 / 16


def test_a_dense_tile_takes_16_multiplications_per_channel_instead_of_36():
    x = np.ones((3, 4, 4))  # synthetic: one tile, no padding
    work = winograd_work(x, np.ones((2, 3, 3, 3)), 0)
    assert work.issued.shape == (2, 1, 1)
    assert (work.issued == 16 * 3).all()
    assert work.geometry.direct_multiplies == 36 * 3 * 2


@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_2", "conv4_2"])
def test_dense_multiplications_per_output_fall_2_25x_on_even_real_layers(vgg16_trace, layer_name):
    layer = vgg16_trace.layer(layer_name)
    channels = layer.weights.shape[1]
    work = winograd_work(layer.input, layer.weights, layer.padding)
    geometry = work.geometry
    assert geometry.out_height % 2 == 0 and geometry.out_width % 2 == 0
    assert work.multiplies_per_output == 16 * channels / 4 == 4 * channels
    assert geometry.direct_multiplies / (geometry.filters * geometry.outputs) == 9 * channels
    assert geometry.direct_multiplies / work.total_multiplies == 2.25


def test_partial_tiles_cost_a_full_tile(vgg16_trace):
    layer = vgg16_trace.layer("conv5_3")  # 7x10 outputs: a last row of half-empty tiles
    geometry = winograd_work(layer.input, layer.weights, layer.padding).geometry
    assert (geometry.tile_rows, geometry.tile_cols) == (4, 5)
    assert geometry.dense_multiplies == 16 * 512 * 512 * 20
    assert geometry.direct_multiplies / geometry.dense_multiplies == 9 * 70 / (16 * 20)


# --- values -------------------------------------------------------------------------------------------------


@st.composite
def synthetic_convolutions(draw):
    """Synthetic input (>= 0 with many zeros, like ReLU outputs), weights (many zeros), bias, padding."""
    channels, filters = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    height = draw(st.integers(max(1, 3 - 2 * padding), 9))
    width = draw(st.integers(max(1, 3 - 2 * padding), 9))
    values = st.floats(-4, 4, allow_subnormal=False, width=16)
    nonnegative = st.one_of(st.just(0.0), st.floats(0, 4, allow_subnormal=False, width=16))
    x = draw(arrays(np.float64, (channels, height, width), elements=nonnegative))
    w = draw(arrays(np.float64, (filters, channels, 3, 3), elements=st.one_of(st.just(0.0), values)))
    bias = draw(arrays(np.float64, (filters,), elements=values))
    return x, w, bias, padding


settings_kwargs = {"max_examples": 80, "deadline": None}


@settings(**settings_kwargs)
@given(synthetic_convolutions(), st.one_of(st.none(), st.integers(1, 3)))
def test_winograd_output_equals_direct_convolution_on_synthetic_tensors(convolution, rows_per_band):
    x, w, bias, padding = convolution
    out = winograd_output(x, w, bias, padding, rows_per_band=rows_per_band)
    direct = conv2d_reference(x, w, bias, 1, padding)
    assert (
        out.shape == direct.shape == (w.shape[0], x.shape[1] + 2 * padding - 2, x.shape[2] + 2 * padding - 2)
    )
    scale = conv2d_reference(np.abs(x), np.abs(w), np.abs(bias), 1, padding)
    np.testing.assert_array_less(np.abs(out - direct), 1e-13 * scale + 1e-300)


@settings(**settings_kwargs)
@given(synthetic_convolutions(), st.integers(1, 3))
def test_input_tile_bands_put_together_are_the_whole_layer_s_tiles(convolution, rows_per_band):
    x, _, _, padding = convolution
    whole = input_tiles(x, padding)
    bands = list(input_tile_bands(x, padding, rows_per_band))
    assert [rows.start for rows, _ in bands] == list(range(0, whole.shape[1], rows_per_band))
    np.testing.assert_array_equal(np.concatenate([v for _, v in bands], axis=1), whole)
    # Tile (i, j) is B^T d B of rows 2i.., columns 2j.. of the input padded with zeros (and beyond it).
    padded = np.pad(x, ((0, 0), (padding, padding + 1), (padding, padding + 1)))
    i, j = whole.shape[1] - 1, whole.shape[2] - 1
    np.testing.assert_array_equal(
        whole[:, i, j], B_T @ padded[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4] @ B_T.T
    )


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_winograd_output_equals_direct_convolution_on_real_cuts(vgg16_trace, cut, padding):
    x, w, bias = real_cut(vgg16_trace, *cut)
    direct = conv2d_reference(x, w, bias, 1, padding)
    scale = conv2d_reference(np.abs(x), np.abs(w), np.abs(bias), 1, padding)
    for rows_per_band in (None, 1, 2):
        out = winograd_output(x, w, bias, padding, rows_per_band=rows_per_band)
        np.testing.assert_array_less(np.abs(out - direct), 1e-13 * scale + 1e-300)


@pytest.mark.parametrize("layer_name", ["conv1_1", "conv3_2", "conv5_3"])
def test_winograd_output_equals_the_stored_outputs_of_whole_real_layers(vgg16_trace, layer_name):
    layer = vgg16_trace.layer(layer_name)
    out = np.maximum(winograd_output(layer.input, layer.weights, layer.bias, layer.padding), 0.0)
    # The stored output is float32 of the float64 direct convolution.
    np.testing.assert_allclose(out, layer.output, rtol=1e-6, atol=1e-6 * np.abs(layer.output).max())


def test_transforms_of_float16_operands_are_exact(vgg16_trace):
    # Sums of a few float16 values scaled by powers of two: float64 holds them exactly, so the zeros of U
    # and V (and every count) do not depend on how the sums are associated.
    x, w, _ = real_cut(vgg16_trace, *CUTS[0], pruning=0.8)
    u, v = transform_weights(w), input_tiles(x, 1)

    class NoCount:
        def add(self, a, b):
            return a + b

        def sub(self, a, b):
            return a - b

        def half(self, a):
            return a / 2

    for k in range(w.shape[0]):
        for c in range(w.shape[1]):
            np.testing.assert_array_equal(u[k, c], transform_2d(w[k, c].tolist(), f23_weights, NoCount()))
    padded = np.pad(x, ((0, 0), (1, 2), (1, 2)))
    for i in range(v.shape[1]):
        for j in range(v.shape[2]):
            for c in range(v.shape[0]):
                d = padded[c, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4].tolist()
                np.testing.assert_array_equal(v[c, i, j], transform_2d(d, f23_input, NoCount()))


# --- work: fast counts against the cycle-stepped reference ------------------------------------------------


@pytest.mark.parametrize("lanes", [1, 3, 16])
@pytest.mark.parametrize("skip", SKIP_MODES)
@pytest.mark.parametrize("pruning", [0.0, 0.8], ids=["trained", "pruned80"])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_fast_counts_equal_the_cycle_stepped_reference_on_real_cuts(
    vgg16_trace, cut, padding, pruning, skip, lanes
):
    x, w, bias = real_cut(vgg16_trace, *cut, pruning=pruning)
    work = winograd_work(x, w, padding, skip=skip, lanes=lanes, rows_per_band=1)
    counts, outputs = reference_layer(x, w, bias, padding, skip, lanes)
    np.testing.assert_array_equal(work.issued, counts["issued"])
    np.testing.assert_array_equal(work.multiplies, counts["issued"])
    np.testing.assert_array_equal(work.cycles, counts["cycles"])
    geometry = work.geometry
    assert geometry.input_transform_adds == counts["input_transform_adds"]
    assert geometry.output_transform_adds == counts["output_transform_adds"]
    assert geometry.weight_transform_adds == counts["weight_transform_adds"]
    assert geometry.weight_transform_halvings == counts["weight_transform_halvings"]
    # The reference's values, accumulated product by product, are the fast model's (and numpy's).
    scale = conv2d_reference(np.abs(x), np.abs(w), np.abs(bias), 1, padding)
    fast = winograd_output(x, w, bias, padding)
    np.testing.assert_array_less(np.abs(fast - np.array(outputs)), 1e-13 * scale + 1e-300)


def test_the_reference_cuts_exercise_zero_skipping(vgg16_trace):
    # Otherwise the test above would compare three copies of the dense count.
    x, w, _ = real_cut(vgg16_trace, *CUTS[1], pruning=0.8)
    dense, weights, operands = (winograd_work(x, w, 1, skip=skip).issued for skip in SKIP_MODES)
    assert (weights < dense).any() and (operands < weights).any()
    assert len(np.unique(operands)) > 3


@settings(**settings_kwargs)
@given(synthetic_convolutions(), st.integers(1, 20))
def test_counts_obey_the_rules_on_synthetic_tensors(convolution, lanes):
    x, w, _, padding = convolution
    dense, weights, operands = (winograd_work(x, w, padding, skip=s, lanes=lanes) for s in SKIP_MODES)
    channels = w.shape[1]
    assert (dense.issued == 16 * channels).all()
    per_filter = np.count_nonzero(transform_weights(w), axis=(1, 2, 3))
    np.testing.assert_array_equal(
        weights.issued, np.broadcast_to(per_filter[:, None, None], weights.issued.shape)
    )
    assert (operands.issued <= weights.issued).all()
    for work in (dense, weights, operands):
        np.testing.assert_array_equal(work.cycles, np.maximum(-(-work.issued // lanes), 1))
        np.testing.assert_array_equal(work.skipped, 16 * channels - work.issued)
        assert work.issued.shape == (w.shape[0], work.geometry.tile_rows, work.geometry.tile_cols)
    whole = winograd_work(x, w, padding, skip="transformed_operands", rows_per_band=10**6)
    np.testing.assert_array_equal(whole.issued, operands.issued)


# --- the lecture's point, measured on real weights ----------------------------------------------------------


@pytest.mark.parametrize("pruning", [0.5, 0.8])
@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_2", "conv4_2"])
def test_magnitude_pruned_zeros_mostly_vanish_in_the_transformed_weights(vgg16_trace, layer_name, pruning):
    layer = vgg16_trace.layer(layer_name)
    pruned = pruned_weights(vgg16_trace, layer_name, pruning)
    assert density(pruned) == pytest.approx(1 - pruning, abs=1e-4)
    u = transform_weights(pruned)
    # Measured: U is 65-75 % dense at 50 % pruning, 30-39 % dense at 80 %.
    assert density(u) > 1.3 * density(pruned)
    assert density(u) > density(pruned) + 0.09
    # So skipping zero transformed weights saves less than skipping zero spatial weights: the dense 2.25x
    # shrinks once both machines skip zero weights.
    work = winograd_work(layer.input, pruned, layer.padding, skip="transformed_weights")
    direct = np.count_nonzero(pruned) * work.geometry.outputs
    assert 1.0 < direct / work.total_multiplies < 1.8


def test_whole_zero_kernels_stay_zero_after_the_transform(vgg16_trace):
    pruned = prune_weights(vgg16_trace.layer("conv1_1").weights, 0.8)
    dead = ~pruned.reshape(*pruned.shape[:2], 9).any(axis=2)
    assert dead.any()
    u = transform_weights(pruned)
    assert not u[dead].any()
    assert np.count_nonzero(u[~dead]) / u[~dead].size > 0.5


# --- which layers, and bad input ----------------------------------------------------------------------------


def test_every_layer_of_the_shipped_trace_is_winograd_able(vgg16_trace):
    for layer in vgg16_trace.layers:
        assert unsupported_reason(layer.op, layer.weights.shape, layer.stride) is None, layer.name


@pytest.mark.parametrize(
    ("op", "shape", "stride", "message"),
    [
        ("linear", (10, 20), 1, "linear layer"),
        ("conv2d", (8, 4, 1, 1), 1, "1x1 kernels"),
        ("conv2d", (8, 4, 5, 5), 1, "5x5 kernels"),
        ("conv2d", (8, 4, 3, 3), 2, "stride 2"),
        ("conv2d", (8, 4, 3), 1, "not \\(K, C, R, S\\)"),
    ],
)
def test_other_layers_are_reported_not_winograd_able(op, shape, stride, message):
    reason = unsupported_reason(op, shape, stride)
    assert reason is not None
    assert re.search(message, reason)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: winograd_geometry((2, 5, 5), (3, 2, 1, 1), 1), "must be \\(K, C, 3, 3\\)"),
        (lambda: winograd_geometry((2, 5, 5), (3, 4, 3, 3), 1), "2 channels but the weights have 4"),
        (lambda: winograd_geometry((2, 5), (3, 2, 3, 3), 1), "must be \\(C, H, W\\)"),
        (lambda: winograd_geometry((2, 2, 5), (3, 2, 3, 3), 0), "smaller than the 3x3 kernel"),
        (lambda: winograd_geometry((2, 5, 5), (3, 2, 3, 3), -1), "padding must be an int >= 0"),
        (lambda: winograd_work(np.ones((1, 4, 4)), np.ones((1, 1, 3, 3)), 0, skip="zeros"), "unknown skip"),
        (lambda: winograd_work(np.ones((1, 4, 4)), np.ones((1, 1, 3, 3)), 0, lanes=0), "lanes must be"),
        (lambda: winograd_output(np.full((1, 4, 4), np.nan), np.ones((1, 1, 3, 3)), None, 0), "finite"),
        (lambda: transform_weights(np.full((1, 1, 3, 3), np.inf)), "finite"),
        (lambda: winograd_output(np.ones((1, 4, 4)), np.ones((2, 1, 3, 3)), np.ones(3), 0), "2 filters"),
        (lambda: list(input_tile_bands(np.ones((1, 4, 4)), 0, 0)), "rows_per_band must be"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_default_bands_stay_near_the_bound_on_the_widest_real_layers(vgg16_trace):
    for name in ("conv1_2", "conv3_3", "conv4_3"):
        layer = vgg16_trace.layer(name)
        geometry = winograd_geometry(layer.input.shape, layer.weights.shape, layer.padding)
        bands = list(tile_row_bands(geometry))
        assert sum(rows.stop - rows.start for rows in bands) == geometry.tile_rows
        per_row = 16 * max(geometry.channels, geometry.filters) * geometry.tile_cols
        assert all((rows.stop - rows.start) * per_row <= max(BAND_ELEMENTS, per_row) for rows in bands)
    assert winograd.BAND_ELEMENTS == 1 << 21
