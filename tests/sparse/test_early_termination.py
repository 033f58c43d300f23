"""ReLU early termination (SnaPEA).

The fast model equals the cycle-stepped reference on small real cuts of the shipped VGG16 trace, exact mode
reproduces the dense ReLU output on whole real layers while saving MACs, and properties hold on synthetic
matrices (named as such).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.mapping import ConvGeometry
from sparsesim.mechanisms.datapath import im2col
from sparsesim.sparse import early_termination as early_termination_module
from sparsesim.sparse.early_termination import TerminationResult, early_termination, mac_order
from tests.reference.early_termination_reference import issue_order, reference_layer

# (layer, channel slice, row slice, column slice, filters): 6 channels x 5x5 pixels, with zeros, outputs that
# terminate in each phase and outputs that do not. conv1_1 reads the mean-subtracted image (negative values).
CUTS = [
    ("conv1_2", slice(0, 6), slice(20, 25), slice(30, 35), 4),
    ("conv3_1", slice(16, 22), slice(3, 8), slice(10, 15), 4),
    ("conv5_2", slice(100, 106), slice(1, 6), slice(2, 7), 4),
    ("conv1_1", slice(0, 3), slice(40, 45), slice(60, 65), 4),
]
# (mode, n_speculative, threshold)
SETTINGS = [
    ("exact", 0, 0.0),
    ("predictive", 16, 0.0),
    ("predictive", 4, 0.1),
    ("predictive", 8, -0.05),
    ("predictive", 0, -np.inf),
]
LAYERS_WITH_SAVINGS = ("conv2_2", "conv3_1", "conv4_2", "conv5_2")


def real_cut(trace, layer_name, channels, rows, cols, filters):
    """im2col operands (P, N), weights (K, N) and bias of a small cut of a real 3x3 layer (stride 1, pad 1).

    The cut's windows see only the cut's pixels (zero padding around it) and only its channels."""
    layer = trace.layer(layer_name)
    input_chw = np.ascontiguousarray(layer.input[channels, rows, cols])
    weights = layer.weights[:filters, channels]
    n_channels, height, width = input_chw.shape
    geometry = ConvGeometry(n_channels, height, width, filters, 3, 3, 1, 1)
    operands = im2col(input_chw, geometry, 0, geometry.out_height)
    return operands, weights.reshape(filters, -1).astype(np.float64), layer.bias[:filters].astype(np.float64)


def whole_layer(trace, layer_name):
    layer = trace.layer(layer_name)
    filters, channels, kernel_r, kernel_s = layer.weights.shape
    _, height, width = layer.input.shape
    geometry = ConvGeometry(channels, height, width, filters, kernel_r, kernel_s, layer.stride, layer.padding)
    operands = im2col(layer.input, geometry, 0, geometry.out_height)
    return operands, layer.weights.reshape(filters, -1).astype(np.float64), layer.bias.astype(np.float64)


def dense_relu(operands, weights, bias):
    return np.maximum(weights @ operands.T + bias[:, None], 0.0)


class WholeLayers:
    """The whole real layers' operands, dense ReLU outputs and exact-mode results, each computed once for
    the module (several tests look at the same exact run; nothing here is changed by a test)."""

    def __init__(self, trace):
        self.trace = trace
        self._operands = {}
        self._dense = {}
        self._exact = {}

    def operands(self, layer_name):
        if layer_name not in self._operands:
            self._operands[layer_name] = whole_layer(self.trace, layer_name)
        return self._operands[layer_name]

    def dense(self, layer_name):
        if layer_name not in self._dense:
            self._dense[layer_name] = dense_relu(*self.operands(layer_name))
        return self._dense[layer_name]

    def exact(self, layer_name, skip):
        if (layer_name, skip) not in self._exact:
            result = early_termination(*self.operands(layer_name), mode="exact", skip_zero_activations=skip)
            self._exact[layer_name, skip] = result
        return self._exact[layer_name, skip]


@pytest.fixture(scope="module")
def whole(vgg16_trace):
    return WholeLayers(vgg16_trace)


def assert_equals_reference(
    result: TerminationResult, operands, weights, bias, mode, n_spec, threshold, skip
):
    (macs, terminated, output, mispredicted), sound = reference_layer(
        operands, weights, bias, mode, n_spec, threshold, skip
    )
    assert result.sound == sound
    np.testing.assert_array_equal(result.macs_performed, np.array(macs, dtype=np.int64))
    np.testing.assert_array_equal(result.terminated, np.array(terminated, dtype=bool))
    np.testing.assert_array_equal(result.mispredicted, np.array(mispredicted, dtype=bool))
    np.testing.assert_allclose(result.output, np.array(output), rtol=0, atol=1e-9)


# --- the issue order ----------------------------------------------------------------------------------------


def test_exact_order_issues_positive_weights_by_index_then_negative_by_decreasing_magnitude():
    weights = np.array([[0.5, -1.0, 0.0, 2.0, -1.0, -3.0]])
    np.testing.assert_array_equal(mac_order(weights, "exact"), [[0, 3, 5, 1, 4, -1]])


def test_predictive_order_issues_the_largest_magnitudes_first_then_the_exact_order():
    weights = np.array([[0.5, -1.0, 0.0, 2.0, -1.0, -3.0]])
    np.testing.assert_array_equal(mac_order(weights, "predictive", 2), [[5, 3, 0, 1, 4, -1]])
    # ties by index: of the two -1.0, position 1 is speculative, position 4 is not
    np.testing.assert_array_equal(mac_order(weights, "predictive", 3), [[5, 3, 1, 0, 4, -1]])
    # more speculative MACs than nonzero weights: all by magnitude, zero weights never issued
    np.testing.assert_array_equal(mac_order(weights, "predictive", 9), [[5, 3, 1, 4, 0, -1]])


def test_mac_order_agrees_with_the_reference_order_on_real_weights(vgg16_trace):
    weights = vgg16_trace.layer("conv4_2").weights[:8].reshape(8, -1).astype(np.float64)
    for mode, n_spec in (("exact", 0), ("predictive", 16), ("predictive", 0)):
        order = mac_order(weights, mode, n_spec)
        for k in range(weights.shape[0]):
            sequence, _ = issue_order(weights[k].tolist(), mode, n_spec)
            expected = [position for position, _ in sequence]
            assert order[k, : len(expected)].tolist() == expected
            assert (order[k, len(expected) :] == -1).all()


# --- fast model == cycle-stepped reference on small real cuts -----------------------------------------------


@pytest.mark.parametrize("skip", [False, True], ids=["no_skip", "skip_zero_activations"])
@pytest.mark.parametrize(("mode", "n_spec", "threshold"), SETTINGS)
@pytest.mark.parametrize("cut", CUTS, ids=[cut[0] for cut in CUTS])
def test_fast_model_equals_cycle_stepped_reference_on_real_cuts(
    vgg16_trace, cut, mode, n_spec, threshold, skip
):
    operands, weights, bias = real_cut(vgg16_trace, *cut)
    result = early_termination(
        operands,
        weights,
        bias,
        mode=mode,
        n_speculative=n_spec,
        threshold=threshold,
        skip_zero_activations=skip,
        chunk_windows=7,
    )
    assert_equals_reference(result, operands, weights, bias, mode, n_spec, threshold, skip)


@pytest.mark.parametrize("cut", CUTS[:3], ids=[cut[0] for cut in CUTS[:3]])
def test_real_cuts_exercise_termination(vgg16_trace, cut):
    """Guards the reference comparison against vacuity: outputs stop early, others run to the end."""
    operands, weights, bias = real_cut(vgg16_trace, *cut)
    result = early_termination(operands, weights, bias)
    assert result.sound
    assert 0 < result.terminated.sum() < result.terminated.size
    assert (result.output > 0).any()


# --- whole real layers --------------------------------------------------------------------------------------


def test_exact_mode_reproduces_the_dense_relu_output_of_conv3_1(vgg16_trace, whole):
    weights = whole.operands("conv3_1")[1]
    result = whole.exact("conv3_1", skip=False)
    assert result.sound and not result.mispredicted.any()
    np.testing.assert_allclose(result.output, whole.dense("conv3_1"), rtol=0, atol=1e-9)
    # and the trace's own (float32) reference output
    reference = vgg16_trace.layer("conv3_1").output.reshape(weights.shape[0], -1)
    np.testing.assert_allclose(result.output, reference, rtol=1e-4, atol=1e-4)
    assert (result.output[result.terminated] == 0).all()


@pytest.mark.parametrize("skip", [False, True], ids=["no_skip", "skip_zero_activations"])
@pytest.mark.parametrize("layer_name", LAYERS_WITH_SAVINGS)
def test_exact_mode_saves_macs_on_real_layers(whole, layer_name, skip):
    operands, weights, bias = whole.operands(layer_name)
    result = whole.exact(layer_name, skip)
    nonzero_weights = (weights != 0).astype(np.float64)
    if skip:
        unterminated = np.rint(nonzero_weights @ (operands != 0).T.astype(np.float64)).astype(np.int64)
    else:
        unterminated = np.repeat(nonzero_weights.sum(axis=1, dtype=np.int64)[:, None], len(operands), 1)
    assert (result.macs_performed <= unterminated).all()
    np.testing.assert_array_equal(result.terminated, result.macs_performed < unterminated)
    # Measured on the shipped trace: 17 % (conv4_2) to 63 % (conv2_2) of the MACs are avoided.
    saved = 1 - result.macs_performed.sum() / unterminated.sum()
    assert 0.1 < saved < 0.9
    np.testing.assert_allclose(result.output, whole.dense(layer_name), rtol=0, atol=1e-9)


def test_negative_activations_of_conv1_1_disable_termination(vgg16_trace):
    operands, weights, bias = whole_layer(vgg16_trace, "conv1_1")
    assert (operands < 0).any()  # the mean-subtracted image
    for mode in ("exact", "predictive"):
        result = early_termination(operands, weights, bias, mode=mode, n_speculative=4, threshold=10.0)
        assert not result.sound
        assert not result.terminated.any() and not result.mispredicted.any()
        np.testing.assert_array_equal(
            result.macs_performed, np.repeat(np.count_nonzero(weights, axis=1)[:, None], len(operands), 1)
        )
        np.testing.assert_allclose(result.output, dense_relu(operands, weights, bias), rtol=0, atol=1e-9)


def test_one_negative_synthetic_activation_disables_termination():
    operands = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, -0.25]])  # synthetic
    weights = np.array([[-1.0, -1.0, 1.0]])
    result = early_termination(operands, weights, np.array([0.5]))
    assert not result.sound and not result.terminated.any()
    np.testing.assert_array_equal(result.macs_performed, [[3, 3]])
    positive_only = early_termination(np.abs(operands), weights, np.array([0.5]))
    assert positive_only.sound and positive_only.terminated.any()


def test_predictive_mode_counts_exactly_the_wrong_predictions_on_conv3_1(whole):
    operands, weights, bias = whole.operands("conv3_1")
    dense = whole.dense("conv3_1")
    result = early_termination(operands, weights, bias, mode="predictive", n_speculative=16, threshold=0.0)
    assert result.sound
    # Exact checks never zero a positive output: an output is 0 where the dense one is > 0 iff mispredicted.
    np.testing.assert_array_equal(result.mispredicted, (result.output == 0) & (dense > 1e-9))
    assert result.mispredicted.sum() > 0
    right = ~result.mispredicted
    np.testing.assert_allclose(result.output[right], dense[right], rtol=0, atol=1e-9)
    exact = whole.exact("conv3_1", skip=False)
    assert result.macs_performed.sum() < exact.macs_performed.sum()


def test_predictive_mode_without_speculation_and_threshold_minus_infinity_is_exact_mode(whole):
    operands, weights, bias = whole.operands("conv5_2")
    for skip in (False, True):
        exact = whole.exact("conv5_2", skip)
        never = early_termination(
            operands,
            weights,
            bias,
            mode="predictive",
            n_speculative=0,
            threshold=-np.inf,
            skip_zero_activations=skip,
        )
        for field in ("macs_performed", "terminated", "output", "mispredicted"):
            np.testing.assert_array_equal(getattr(never, field), getattr(exact, field))


@pytest.mark.parametrize("skip", [False, True], ids=["no_skip", "skip_zero_activations"])
@pytest.mark.parametrize(("mode", "n_spec", "threshold"), SETTINGS)
def test_without_relu_nothing_terminates_and_the_output_is_the_pre_activation(
    vgg16_trace, mode, n_spec, threshold, skip
):
    """A layer with no ReLU after it has no output to predict as 0: every MAC of the unterminated order is
    performed (its nonzero weights, times nonzero activations when skipping) and the output keeps its sign."""
    operands, weights, bias = real_cut(vgg16_trace, *CUTS[1])
    result = early_termination(
        operands,
        weights,
        bias,
        mode=mode,
        n_speculative=n_spec,
        threshold=threshold,
        skip_zero_activations=skip,
        relu=False,
    )
    assert not result.relu and not result.terminated.any() and not result.mispredicted.any()
    pre_activation = weights @ operands.T + bias[:, None]
    assert (pre_activation < 0).any()  # the cut has outputs a ReLU would zero
    np.testing.assert_allclose(result.output, pre_activation, rtol=0, atol=1e-9)
    operand_mask = (operands != 0).astype(np.int64) if skip else np.ones_like(operands, dtype=np.int64)
    np.testing.assert_array_equal(result.macs_performed, (weights != 0).astype(np.int64) @ operand_mask.T)
    with_relu = early_termination(
        operands,
        weights,
        bias,
        mode=mode,
        n_speculative=n_spec,
        threshold=threshold,
        skip_zero_activations=skip,
    )
    assert with_relu.relu and with_relu.terminated.any()


# --- properties on synthetic matrices -----------------------------------------------------------------------

synthetic_shapes = st.tuples(st.integers(1, 9), st.integers(1, 24), st.integers(1, 5))  # P, N, K


SYNTHETIC_VALUES = st.floats(-4, 4, allow_subnormal=False)


@st.composite
def synthetic_layers(draw, values=SYNTHETIC_VALUES):
    """Synthetic operands (>= 0, many zeros), weights (many zeros) and bias."""
    n_windows, n_positions, n_filters = draw(synthetic_shapes)
    nonnegative = st.one_of(st.just(0.0), st.floats(0, 4, allow_subnormal=False))
    operands = draw(arrays(np.float64, (n_windows, n_positions), elements=nonnegative))
    weights = draw(arrays(np.float64, (n_filters, n_positions), elements=st.one_of(st.just(0.0), values)))
    bias = draw(arrays(np.float64, (n_filters,), elements=values))
    return operands, weights, bias


# Small integers: many exact ties and sums exactly 0, which the fast model replays sequentially.
synthetic_integer_layers = synthetic_layers(values=st.integers(-3, 3).map(float))
settings_kwargs = {"max_examples": 80, "deadline": None}


@settings(**settings_kwargs)
@given(synthetic_layers(), st.booleans())
def test_exact_output_equals_dense_relu_on_synthetic_matrices(layer, skip):
    operands, weights, bias = layer
    result = early_termination(operands, weights, bias, skip_zero_activations=skip)
    assert result.sound and not result.mispredicted.any()
    np.testing.assert_allclose(result.output, dense_relu(operands, weights, bias), rtol=0, atol=1e-9)
    nonzero_weights = np.count_nonzero(weights, axis=1)[:, None]
    nonzero_products = (weights != 0).astype(int) @ (operands != 0).T.astype(int)
    assert (result.macs_performed <= (nonzero_products if skip else nonzero_weights)).all()
    assert (result.output[result.terminated] == 0).all()


@settings(**settings_kwargs)
@given(
    st.one_of(synthetic_layers(), synthetic_integer_layers),
    st.sampled_from(SETTINGS),
    st.booleans(),
    st.integers(1, 4),
)
def test_fast_model_equals_reference_on_synthetic_matrices(layer, setting, skip, chunk_windows):
    operands, weights, bias = layer
    mode, n_spec, threshold = setting
    result = early_termination(
        operands,
        weights,
        bias,
        mode=mode,
        n_speculative=n_spec % 7,
        threshold=threshold,
        skip_zero_activations=skip,
        chunk_windows=chunk_windows,
    )
    assert_equals_reference(result, operands, weights, bias, mode, n_spec % 7, threshold, skip)


@settings(**settings_kwargs)
@given(
    st.one_of(synthetic_layers(), synthetic_integer_layers),
    st.sampled_from(SETTINGS),
    st.booleans(),
    st.integers(1, 4),
    st.integers(1, 20),
    st.integers(1, 12),
)
def test_operand_bands_filter_blocks_and_checkpoints_give_the_reference_results_on_synthetic_matrices(
    layer, setting, skip, band_windows, block_weights, segments
):
    """Operands given a band of windows at a time, issue plans built a few filters at a time, negative phases
    cut into 1 to 12 checkpoint segments (more segments than MACs included)."""
    operands, weights, bias = layer
    mode, n_spec, threshold = setting
    defaults = early_termination_module.FILTER_BLOCK_WEIGHTS, early_termination_module.CHECKPOINT_SEGMENTS
    early_termination_module.FILTER_BLOCK_WEIGHTS = block_weights
    early_termination_module.CHECKPOINT_SEGMENTS = segments
    try:
        result = early_termination(
            lambda: (operands[i : i + band_windows] for i in range(0, len(operands), band_windows)),
            weights,
            bias,
            mode=mode,
            n_speculative=n_spec % 7,
            threshold=threshold,
            skip_zero_activations=skip,
        )
    finally:
        early_termination_module.FILTER_BLOCK_WEIGHTS, early_termination_module.CHECKPOINT_SEGMENTS = defaults
    assert_equals_reference(result, operands, weights, bias, mode, n_spec % 7, threshold, skip)


@settings(**settings_kwargs)
@given(
    synthetic_layers(),
    st.integers(0, 8),
    st.floats(-3, 3),
    st.floats(0, 3),
    st.booleans(),
)
def test_a_larger_threshold_never_performs_more_macs_on_synthetic_matrices(layer, n_spec, low, step, skip):
    operands, weights, bias = layer

    def run(threshold):
        return early_termination(
            operands,
            weights,
            bias,
            mode="predictive",
            n_speculative=n_spec,
            threshold=threshold,
            skip_zero_activations=skip,
        )

    lower, higher = run(low), run(low + step)
    assert (higher.macs_performed <= lower.macs_performed).all()
    assert (higher.mispredicted >= lower.mispredicted).all()


# --- errors -------------------------------------------------------------------------------------------------


def test_unknown_mode_lists_the_known_modes():
    with pytest.raises(ValueError, match="unknown early termination mode 'greedy'; known: exact, predictive"):
        early_termination(np.ones((2, 3)), np.ones((1, 3)), np.zeros(1), mode="greedy")


@pytest.mark.parametrize(
    ("operands", "weights", "bias", "message"),
    [
        (np.ones((2, 3)), np.ones((1, 4)), np.zeros(1), "3 positions per window but weights_kn has 4"),
        (np.ones((2, 3)), np.ones((2, 3)), np.zeros(1), "bias_k has 1 entries for 2 filters"),
        (np.ones(3), np.ones((1, 3)), np.zeros(1), "operands_pn must have 2 dimension"),
        (np.full((2, 3), np.nan), np.ones((1, 3)), np.zeros(1), "operands_pn must be finite"),
    ],
)
def test_inconsistent_inputs_raise_value_errors(operands, weights, bias, message):
    with pytest.raises(ValueError, match=message):
        early_termination(operands, weights, bias)


def test_negative_speculation_and_bad_chunks_raise_value_errors():
    with pytest.raises(ValueError, match="n_speculative must be >= 0, got -1"):
        mac_order(np.ones((1, 3)), "predictive", -1)
    with pytest.raises(ValueError, match="chunk_windows must be an int >= 1, got 0"):
        early_termination(np.ones((2, 3)), np.ones((1, 3)), np.zeros(1), chunk_windows=0)
