"""Weight repetition (UCNN).

The lecture's example holds by hand, the fast counts equal the cycle-stepped reference on small real cuts of
the shipped VGG16 trace with quantised weights, the factorised output equals the dense product on whole real
layers, quantisation keeps its promises on real weights, and properties hold on synthetic matrices (named as
such).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.mapping import ConvGeometry
from sparsesim.mechanisms.datapath import im2col
from sparsesim.sparse import weight_repetition
from sparsesim.sparse.weight_repetition import (
    RepetitionWork,
    factorised_output,
    quantize_weights,
    repetition_work,
)
from tests.reference.weight_repetition_reference import COUNTS, indirection_table, reference_layer

CUT_LAYERS = ("conv1_2", "conv2_2", "conv3_1", "conv5_2")
REPORTED_LAYERS = ("conv2_2", "conv3_1", "conv4_2", "conv5_2")


def layer_matrices(trace, layer_name):
    """im2col operands (P, N), the layer's weights as (K, C, R, S) float32 and its bias (float64)."""
    layer = trace.layer(layer_name)
    filters, channels, kernel_r, kernel_s = layer.weights.shape
    _, height, width = layer.input.shape
    geometry = ConvGeometry(channels, height, width, filters, kernel_r, kernel_s, layer.stride, layer.padding)
    operands = im2col(layer.input, geometry, 0, geometry.out_height)
    return operands, layer.weights, layer.bias.astype(np.float64)


@pytest.fixture(scope="module")
def matrices(vgg16_trace):
    """:func:`layer_matrices` of the shipped trace, each layer's built once for the module and shared
    read-only (conv1_2's operands are 82 MB; each test of a layer built them again)."""
    cache: dict[str, tuple] = {}

    def of(layer_name):
        if layer_name not in cache:
            operands, weights, bias = layer_matrices(vgg16_trace, layer_name)
            operands.setflags(write=False)
            cache[layer_name] = (operands, weights, bias)
        operands, weights, bias = cache[layer_name]
        return operands, weights, bias.copy()

    return of


def real_cut(trace, layer_name, bits):
    """A small real cut of a 3x3 layer (stride 1, pad 1) with the layer's weights quantised to ``bits``.

    The layer is quantised whole (one scale per layer); the cut then takes the 4 filters with the most
    nonzero quantised weights, the 4 channels with the most nonzero quantised weights in those filters among
    the channels whose input is >= 10 % nonzero (the channels with the largest weights are often dead), and
    the 5x5 pixels (on a grid of step 5) with the most nonzero activations in those channels: at 2 bits
    almost every weight of a layer is quantised to zero. The cut's windows see only its pixels (zero padding
    around it). Returns operands (P, N), quantised weights (4, N) and bias.
    """
    layer = trace.layer(layer_name)
    quantised = quantize_weights(layer.weights, bits)
    nonzero = quantised != 0
    filters = np.sort(np.argsort(-nonzero.sum(axis=(1, 2, 3)), kind="stable")[:4])
    live = np.count_nonzero(layer.input, axis=(1, 2)) >= 0.1 * layer.input[0].size
    in_filters = np.where(live, nonzero[filters].sum(axis=(0, 2, 3)), -1)
    channels = np.sort(np.argsort(-in_filters, kind="stable")[:4])
    image = layer.input[channels]
    corners = [(y, x) for y in range(0, image.shape[1] - 4, 5) for x in range(0, image.shape[2] - 4, 5)]
    y, x = max(corners, key=lambda c: (np.count_nonzero(image[:, c[0] : c[0] + 5, c[1] : c[1] + 5]), c))
    input_chw = np.ascontiguousarray(image[:, y : y + 5, x : x + 5])
    geometry = ConvGeometry(len(channels), 5, 5, len(filters), 3, 3, 1, 1)
    operands = im2col(input_chw, geometry, 0, geometry.out_height)
    weights = quantised[filters][:, channels].reshape(len(filters), -1).astype(np.float64)
    return operands, weights, layer.bias[filters].astype(np.float64)


def relative_rms(values, reference):
    return float(np.sqrt(np.mean((values - reference) ** 2) / np.mean(reference**2)))


def assert_equals_reference(work: RepetitionWork, output, operands, weights, bias, skip):
    counts, reference_outputs = reference_layer(operands, weights, bias, skip)
    for name in COUNTS:
        np.testing.assert_array_equal(
            getattr(work, name), np.array(counts[name], dtype=np.int64), err_msg=name
        )
    scale = np.abs(weights) @ np.abs(operands).T + np.abs(bias)[:, None]
    np.testing.assert_array_less(np.abs(output - np.array(reference_outputs)), 1e-12 * scale + 1e-300)


# --- by hand ------------------------------------------------------------------------------------------------


def test_lecture_example_factorises_a_times_1_plus_3_plus_b_times_2():
    a, b = 0.75, -0.5
    operands = np.array([[1.0, 2.0, 3.0]])
    weights = np.array([[a, b, a]])
    work = repetition_work(operands, weights)
    assert work.issued.tolist() == [[3]]
    assert work.multiplies.tolist() == [[2]]
    assert work.weight_reads.tolist() == [[2]]
    assert work.activation_adds.tolist() == [[1]]  # 1 + 3
    assert work.product_adds.tolist() == [[2]]
    assert work.cycles.tolist() == [[3]]
    assert work.dense_multiplies.tolist() == [[3]] and work.dense_weight_reads.tolist() == [[3]]
    np.testing.assert_array_equal(
        factorised_output(operands, weights, np.array([0.25])), [[a * 4 + b * 2 + 0.25]]
    )


def test_zero_weights_are_never_issued_and_zero_activations_only_when_skipping():
    a = 0.5
    operands = np.array([[1.0, 2.0, 3.0], [0.0, 2.0, 3.0], [0.0, 5.0, 0.0]])  # three windows
    weights = np.array([[a, 0.0, a]])
    plain = repetition_work(operands, weights)
    assert plain.issued.tolist() == [[2, 2, 2]]  # the zero weight is never read
    assert plain.multiplies.tolist() == [[1, 1, 1]]
    assert plain.activation_adds.tolist() == [[1, 1, 1]]
    skipping = repetition_work(operands, weights, skip_zero_activations=True)
    assert skipping.issued.tolist() == [[2, 1, 0]]
    assert skipping.multiplies.tolist() == [[1, 1, 0]]  # an empty group: no weight read, no multiply
    assert skipping.activation_adds.tolist() == [[1, 0, 0]]
    assert skipping.cycles.tolist() == [[2, 1, 1]]  # nothing issued: one cycle to hand on the bias
    np.testing.assert_array_equal(factorised_output(operands, weights, np.zeros(1)), [[2.0, 1.5, 0.0]])


def test_filter_without_nonzero_weights_outputs_its_bias():
    operands = np.array([[1.0, 2.0], [3.0, 4.0]])
    weights = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    work = repetition_work(operands, weights)
    assert work.multiplies.tolist() == [[0, 0], [1, 1], [0, 0]]
    assert work.cycles.tolist() == [[1, 1], [2, 2], [1, 1]]
    np.testing.assert_array_equal(
        factorised_output(operands, weights, np.array([1.0, 2.0, 3.0])), [[1.0, 1.0], [5.0, 9.0], [3.0, 3.0]]
    )


def test_indirection_table_sorts_positions_by_weight_value_then_position():
    assert indirection_table([0.5, -1.0, 0.0, 0.5, -1.0]) == [(1, -1.0), (4, -1.0), (0, 0.5), (3, 0.5)]


# --- quantisation -------------------------------------------------------------------------------------------


def test_uniform_symmetric_quantisation_by_hand():
    weights = np.array([-1.0, -0.4, 0.0, 0.1, 0.26, 1.0])
    np.testing.assert_array_equal(quantize_weights(weights, 2), [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    third = float(np.float16(1 / 3))
    np.testing.assert_array_equal(
        quantize_weights(weights, 3), np.array([-1.0, -third, 0.0, 0.0, third, 1.0], dtype=np.float32)
    )
    assert quantize_weights(np.zeros((2, 3)), 4).tolist() == [[0.0] * 3] * 2


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 11])
def test_quantised_real_weights_have_few_float16_exact_levels(vgg16_trace, bits):
    weights = vgg16_trace.layer("conv3_1").weights
    quantised = quantize_weights(weights, bits)
    assert quantised.dtype == np.float32 and quantised.shape == weights.shape
    levels = np.unique(quantised)
    assert levels.size <= 2**bits - 1
    np.testing.assert_array_equal(levels.astype(np.float16).astype(np.float32), levels)  # float16-exact
    largest = 2 ** (bits - 1) - 1
    scale = np.abs(weights).max() / largest
    table = (scale * np.arange(-largest, largest + 1)).astype(np.float16).astype(np.float32)
    assert np.isin(levels, table).all()  # the symmetric levels scale * i, rounded to float16
    assert (quantised[weights == 0] == 0).all()
    assert (quantised * weights >= 0).all()  # no sign flips
    # nearest level, up to float16's rounding of the level (half an ulp at most: 2**-11 relative)
    error = np.abs(quantised.astype(np.float64) - weights)
    assert (error <= scale / 2 + np.abs(weights).max() * 2**-11).all()


@pytest.mark.parametrize(
    ("weights", "bits", "method", "message"),
    [
        (np.ones(3), 1, "uniform_symmetric", r"bits must be an int in \[2, 16\], got 1"),
        (np.ones(3), 17, "uniform_symmetric", r"bits must be an int in \[2, 16\], got 17"),
        (np.ones(3), True, "uniform_symmetric", "bits must be an int"),
        (np.ones(3), 4, "kmeans", "unknown quantization method 'kmeans'; known: uniform_symmetric"),
        (np.array([1.0, np.nan]), 4, "uniform_symmetric", "weights must be finite"),
        (np.array([1e6, -2.0]), 4, "uniform_symmetric", "beyond float16's range"),
        (np.linspace(-1, 1, 101), 16, "uniform_symmetric", "not distinct in float16"),
        (np.array([1e-9, 0.0]), 8, "uniform_symmetric", "not distinct in float16"),
    ],
)
def test_quantisation_rejects_bad_arguments(weights, bits, method, message):
    with pytest.raises(ValueError, match=message):
        quantize_weights(weights, bits, method)


# --- fast counts == cycle-stepped reference on small real cuts ----------------------------------------------


@pytest.mark.parametrize("skip", [False, True], ids=["no_skip", "skip_zero_activations"])
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("layer_name", CUT_LAYERS)
def test_fast_counts_equal_cycle_stepped_reference_on_real_cuts(vgg16_trace, layer_name, bits, skip):
    operands, weights, bias = real_cut(vgg16_trace, layer_name, bits)
    work = repetition_work(operands, weights, skip_zero_activations=skip)
    assert_equals_reference(work, factorised_output(operands, weights, bias), operands, weights, bias, skip)


@pytest.mark.parametrize(
    ("layer_name", "bits"),
    # Not conv3_1 at 2 bits: 6 of its 295k weights survive, no two in one filter: nothing can repeat.
    [(name, bits) for name in CUT_LAYERS for bits in (2, 3, 4) if (name, bits) != ("conv3_1", 2)],
)
def test_real_cuts_exercise_repetition_and_skipping(vgg16_trace, layer_name, bits):
    """Guards the reference comparison against vacuity: weights repeat, some activations are skipped."""
    operands, weights, bias = real_cut(vgg16_trace, layer_name, bits)
    plain = repetition_work(operands, weights)
    skipping = repetition_work(operands, weights, skip_zero_activations=True)
    assert (plain.multiplies < plain.issued).any()
    assert (skipping.issued > 0).any() and (skipping.issued < plain.issued).any()


# --- whole real layers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [3, 8])
@pytest.mark.parametrize("layer_name", ("conv1_2", "conv3_1", "conv5_2"))
def test_factorised_output_equals_the_dense_product_on_real_layers(matrices, layer_name, bits):
    operands, weights, bias = matrices(layer_name)
    quantised = quantize_weights(weights, bits).reshape(len(weights), -1).astype(np.float64)
    output = factorised_output(operands, quantised, bias)
    dense = quantised @ operands.T + bias[:, None]
    scale = np.abs(quantised) @ np.abs(operands).T + np.abs(bias)[:, None]
    assert (np.abs(output - dense) <= 1e-9 * scale).all()
    np.testing.assert_allclose(output, dense, rtol=1e-9, atol=1e-9 * np.abs(dense).max())


def test_unquantised_factorised_output_reproduces_the_trace_output_of_conv3_1(vgg16_trace, matrices):
    operands, weights, bias = matrices("conv3_1")
    output = np.maximum(factorised_output(operands, weights.reshape(len(weights), -1), bias), 0.0)
    reference = vgg16_trace.layer("conv3_1").output.reshape(len(weights), -1)
    np.testing.assert_allclose(output, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer_name", REPORTED_LAYERS)
def test_quantisation_trades_output_error_for_multiplies_on_real_layers(vgg16_trace, matrices, layer_name):
    """Measured on the shipped trace (one lane walks all C*R*S positions of an output; per-layer scale):

    | bits 2/3/4/8 | weights zeroed   | issued / multiplies: no skip ; skip | rel. RMS error       |
    | conv2_2      | 99.9/90/62/4.7 % | 3.4/46/77/14 ; 2.1/15/24/4.5        | 0.94/0.49/0.17/0.009 |
    | conv3_1      | 100/99.7/94/12 % | 1.2/4.4/29/29 ; 1.2/1.7/4.0/4.6     | 0.98/0.92/0.69/0.036 |
    | conv4_2      | 100/100/99/16 %  | 1.0/2.8/17/146 ; 1.0/1.9/8.2/67     | 0.99/0.96/0.85/0.039 |
    | conv5_2      | 100/99.7/98/14 % | 2.4/15/35/103 ; 1.4/4.8/7.4/16      | 0.90/0.61/0.45/0.021 |

    (error of the ReLU output vs the trace's own output; the unquantised layer gives ~2.5e-8). Weight reads
    are saved in the same ratio as multiplies.
    """
    operands, weights, bias = matrices(layer_name)
    reference = vgg16_trace.layer(layer_name).output.reshape(len(weights), -1)
    errors = []
    for bits in (2, 3, 4, 8):
        quantised = quantize_weights(weights, bits).reshape(len(weights), -1)
        output = np.maximum(factorised_output(operands, quantised, bias), 0.0)
        errors.append(relative_rms(output, reference))
        for skip in (False, True):
            work = repetition_work(operands, quantised, skip_zero_activations=skip)
            assert (work.multiplies <= work.issued).all()
            assert (work.multiplies <= 2**bits - 2).all()  # nonzero levels of the layer
            np.testing.assert_array_equal(work.weight_reads, work.multiplies)
            if bits == 8:
                assert work.issued.sum() / work.multiplies.sum() > 4
    assert errors == sorted(errors, reverse=True)  # fewer bits, larger error
    assert errors[-1] < 0.05 and errors[0] > 0.5


# --- properties on synthetic matrices -----------------------------------------------------------------------

synthetic_shapes = st.tuples(st.integers(1, 9), st.integers(1, 24), st.integers(1, 5))  # P, N, K


@st.composite
def synthetic_layers(draw):
    """Synthetic operands (>= 0, many zeros), weights quantised to 2..8 bits (many repeats), bias."""
    n_windows, n_positions, n_filters = draw(synthetic_shapes)
    nonnegative = st.one_of(st.just(0.0), st.floats(0, 4, allow_subnormal=False))
    values = st.floats(-4, 4, allow_subnormal=False)
    operands = draw(arrays(np.float64, (n_windows, n_positions), elements=nonnegative))
    raw = draw(arrays(np.float64, (n_filters, n_positions), elements=st.one_of(st.just(0.0), values)))
    bits = draw(st.integers(2, 8))
    bias = draw(arrays(np.float64, (n_filters,), elements=values))
    if np.abs(raw).max(initial=0.0) < 1e-3:  # keep the float16 levels distinct
        raw = np.zeros_like(raw)
    return operands, quantize_weights(raw, bits).astype(np.float64), bias, bits


settings_kwargs = {"max_examples": 80, "deadline": None}


@settings(**settings_kwargs)
@given(synthetic_layers(), st.booleans())
def test_counts_obey_the_rules_on_synthetic_matrices(layer, skip):
    operands, weights, bias, bits = layer
    work = repetition_work(operands, weights, skip_zero_activations=skip)
    assert (work.multiplies <= work.issued).all()
    assert (work.multiplies <= 2**bits - 2).all()
    np.testing.assert_array_equal(work.dense_multiplies, work.issued)
    np.testing.assert_array_equal(work.activation_adds + work.multiplies, work.issued)
    np.testing.assert_array_equal(work.weight_reads, work.multiplies)
    np.testing.assert_array_equal(work.product_adds, work.multiplies)
    np.testing.assert_array_equal(work.cycles, np.maximum(work.issued, 1))
    plain = repetition_work(operands, weights)
    assert (work.issued <= plain.issued).all() and (work.multiplies <= plain.multiplies).all()
    distinct = [len(set(row[row != 0].tolist())) for row in weights]
    np.testing.assert_array_equal(plain.multiplies, np.repeat(np.array(distinct)[:, None], len(operands), 1))


@settings(**settings_kwargs)
@given(synthetic_layers(), st.booleans())
def test_fast_model_equals_reference_on_synthetic_matrices(layer, skip):
    operands, weights, bias, _ = layer
    work = repetition_work(operands, weights, skip_zero_activations=skip)
    assert_equals_reference(work, factorised_output(operands, weights, bias), operands, weights, bias, skip)


@settings(**settings_kwargs)
@given(synthetic_layers(), st.booleans(), st.integers(1, 4), st.integers(1, 40))
def test_operand_bands_and_filter_blocks_give_the_reference_results_on_synthetic_matrices(
    layer, skip, band_windows, grouping_weights
):
    """Operands given a band of windows at a time, groups found a few filters at a time."""
    operands, weights, bias, _ = layer

    def bands():
        return (operands[i : i + band_windows] for i in range(0, len(operands), band_windows))

    whole_blocks = weight_repetition._GROUPING_WEIGHTS
    weight_repetition._GROUPING_WEIGHTS = grouping_weights
    try:
        work = repetition_work(bands, weights, skip_zero_activations=skip)
        output = factorised_output(bands, weights, bias)
    finally:
        weight_repetition._GROUPING_WEIGHTS = whole_blocks
    assert_equals_reference(work, output, operands, weights, bias, skip)


@settings(**settings_kwargs)
@given(synthetic_layers())
def test_factorised_output_equals_the_dense_product_on_synthetic_matrices(layer):
    operands, weights, bias, _ = layer
    dense = weights @ operands.T + bias[:, None]
    scale = np.abs(weights) @ operands.T + np.abs(bias)[:, None]
    assert (np.abs(factorised_output(operands, weights, bias) - dense) <= 1e-12 * scale).all()


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operands", "weights", "message"),
    [
        (np.ones((2, 3)), np.ones((1, 4)), "3 positions per window but weights_kn has 4"),
        (np.ones(3), np.ones((1, 3)), "operands_pn must have 2 dimension"),
        (np.full((2, 3), np.nan), np.ones((1, 3)), "operands_pn must be finite"),
        (np.ones((2, 3)), np.full((1, 3), np.inf), "weights_kn must be finite"),
    ],
)
def test_inconsistent_inputs_raise_value_errors(operands, weights, message):
    with pytest.raises(ValueError, match=message):
        repetition_work(operands, weights)
    with pytest.raises(ValueError, match=message):
        factorised_output(operands, weights, np.zeros(len(np.atleast_2d(weights))))


def test_bias_of_the_wrong_length_raises_a_value_error():
    with pytest.raises(ValueError, match="bias_k has 1 entries for 2 filters"):
        factorised_output(np.ones((2, 3)), np.ones((2, 3)), np.zeros(1))
