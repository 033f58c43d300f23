"""simulate_layer's working set on real layers: bounded by the layer's own operands, freed on return.

Measured with tracemalloc (every numpy allocation, byte-exact and deterministic), never with timings or the
process's resident memory, so these tests pass or fail on the code alone.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from sparsesim.components.pe_array import DATAPATH_BAND_VALUES
from sparsesim.simulator import simulate_layer
from sparsesim.sparse.early_termination import FILTER_BLOCK_WEIGHTS

# Working set allowed on top of one band of the datapath's column matrix, in multiples of the layer's
# operand bytes (input, weights and reference output as held in memory). Today's largest is 1.7x (conv2_1,
# mostly its float64 output); the layer-sized temporaries this guards against (a whole-layer im2col, int64
# window counts, a float64 copy of the reference or of the weights) each cost 2x to 9x.
OPERAND_MULTIPLE = 3


def _operand_bytes(layer) -> int:
    return layer.input.nbytes + layer.weights.nbytes + layer.output.nbytes


# Mechanisms that walk outputs one by one keep per-output (K, P) results: three int64 or float64 arrays (MAC
# counts, outputs) and two flags, 6.5x the reference output's (float32) bytes.
RESULT_MULTIPLE = 7
# Early termination's issue plans, a block of filters at a time: positions in issue order, phase masks, phase
# weights (float64, up to 4 columns a filter) and the negative phase's order: up to 64 bytes a weight.
PLAN_BYTES_PER_WEIGHT = 64


def _peak_bytes(hw, layer) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        start_bytes = tracemalloc.get_traced_memory()[0]
        simulate_layer(hw, layer)
        return tracemalloc.get_traced_memory()[1] - start_bytes
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("hw_name", ["cnvlutin", "dadiannao"])
@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_1", "conv4_2"])
def test_simulate_layer_peak_memory_is_a_few_times_the_layers_operands(
    hw_name, layer_name, hwconfigs, vgg16_trace
):
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = _peak_bytes(hwconfigs[hw_name], layer)
    bound_bytes = OPERAND_MULTIPLE * _operand_bytes(layer) + 8 * DATAPATH_BAND_VALUES
    assert peak_bytes <= bound_bytes, f"{layer_name} on {hw_name}: peak {peak_bytes / 1e6:.1f} MB"


@pytest.mark.parametrize("hw_name", ["snapea_exact", "snapea_predictive"])
@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_1", "conv4_2"])
def test_early_termination_peak_memory_is_its_results_a_band_and_a_block_of_plans(
    hw_name, layer_name, hwconfigs, vgg16_trace
):
    """SnaPEA gets the layer's operands a band of output rows at a time (a whole-layer im2col would cost
    82 MB more on conv1_2) and plans a block of filters at a time (all of conv4_2's at once: over 100 MB
    more)."""
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = _peak_bytes(hwconfigs[hw_name], layer)
    bound_bytes = (
        OPERAND_MULTIPLE * _operand_bytes(layer)
        + RESULT_MULTIPLE * layer.output.nbytes
        + 8 * DATAPATH_BAND_VALUES
        + PLAN_BYTES_PER_WEIGHT * FILTER_BLOCK_WEIGHTS
    )
    assert peak_bytes <= bound_bytes, f"{layer_name} on {hw_name}: peak {peak_bytes / 1e6:.1f} MB"


@pytest.mark.parametrize("hw_name", ["cnvlutin", "dadiannao"])
def test_simulate_layer_leaves_no_array_for_the_garbage_collector(hw_name, hwconfigs, vgg16_trace):
    """A reference cycle around a big array would keep it alive after the layer until a collection runs,
    and several layers' worth could pile up."""
    layer = vgg16_trace.layer("conv1_2")
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        simulate_layer(hwconfigs[hw_name], layer)
        before_collection_bytes = tracemalloc.get_traced_memory()[0]
        gc.collect()
        freed_by_collection_bytes = before_collection_bytes - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    # What is left is simpy's own cycle (an Environment and its events), a few kB.
    assert freed_by_collection_bytes < 100_000


@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_1", "conv4_2"])
def test_msb_first_peak_memory_is_its_results_a_band_and_its_weights(layer_name, hwconfigs, vgg16_trace):
    """PredictiveNet gets the layer's operands a band of output rows at a time (a whole-layer im2col, and
    its int64 copy, would cost 160 MB more on conv1_2); its weights are held as float64, with their
    magnitudes (float64) and nonzero mask (float32): 5x their float32 bytes, 4x beyond the operands."""
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = _peak_bytes(hwconfigs["predictivenet"], layer)
    bound_bytes = (
        OPERAND_MULTIPLE * _operand_bytes(layer)
        + RESULT_MULTIPLE * layer.output.nbytes
        + 4 * layer.weights.nbytes
        + 8 * DATAPATH_BAND_VALUES
    )
    assert peak_bytes <= bound_bytes, f"{layer_name} on predictivenet: peak {peak_bytes / 1e6:.1f} MB"


@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_1", "conv4_2"])
def test_weight_repetition_peak_memory_is_its_results_a_band_and_its_groups(
    layer_name, hwconfigs, vgg16_trace
):
    """UCNN gets the layer's operands a band of output rows at a time (a whole-layer im2col would cost 82 MB
    more on conv1_2, twice: counts and datapath) and finds its weight groups a block of filters at a time (all
    of conv4_2's at once: 80 MB more). Its weights are held as float64, with each position alone in its
    group (float64) and the sparse tables of the other groups: up to 6x their float32 bytes beyond the
    operands."""
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = _peak_bytes(hwconfigs["ucnn"], layer)
    bound_bytes = (
        OPERAND_MULTIPLE * _operand_bytes(layer)
        + RESULT_MULTIPLE * layer.output.nbytes
        + 6 * layer.weights.nbytes
        + 8 * DATAPATH_BAND_VALUES
    )
    assert peak_bytes <= bound_bytes, f"{layer_name} on ucnn: peak {peak_bytes / 1e6:.1f} MB"


@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_1", "conv4_2"])
def test_mixture_of_experts_peak_memory_is_a_few_times_the_layers_operands(
    layer_name, hwconfigs, vgg16_trace
):
    """The router and the routed outputs get the layer's operands a band of output rows at a time (a
    whole-layer im2col would cost 82 MB more on conv1_2). The experts are clustered on float64 copies of the
    weights: up to 4x their float32 bytes beyond the operands."""
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = _peak_bytes(hwconfigs["moe"], layer)
    bound_bytes = (
        OPERAND_MULTIPLE * _operand_bytes(layer) + 4 * layer.weights.nbytes + 8 * DATAPATH_BAND_VALUES
    )
    assert peak_bytes <= bound_bytes, f"{layer_name} on moe: peak {peak_bytes / 1e6:.1f} MB"


@pytest.mark.parametrize("layer_name", ["conv1_2", "conv2_1", "conv4_2"])
def test_delta_datapath_peak_memory_is_a_few_times_the_layers_operands(layer_name, hwconfigs, vgg16_trace):
    """Diffy's datapath converts its operands and their differences to float64 a band of rows at a time
    (the whole layer's at once cost 20 MB more on conv1_2); its per-channel-lane term counts hold up to 6x
    the input's bytes (int64 copies, padded)."""
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = _peak_bytes(hwconfigs["diffy"], layer)
    bound_bytes = OPERAND_MULTIPLE * _operand_bytes(layer) + 6 * layer.input.nbytes + 8 * DATAPATH_BAND_VALUES
    assert peak_bytes <= bound_bytes, f"{layer_name} on diffy: peak {peak_bytes / 1e6:.1f} MB"
