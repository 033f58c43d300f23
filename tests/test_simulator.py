"""simulate_layer's working set on real layers: bounded by the layer's own operands, freed on return.

Measured with tracemalloc (every numpy allocation, byte-exact and deterministic), never with timings or the
process's resident memory, so these tests pass or fail on the code alone.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from sparsesim.mechanisms.datapath import DATAPATH_BAND_VALUES
from sparsesim.simulator import simulate_layer
from sparsesim.sparse.early_termination import CHECKPOINT_SEGMENTS, FILTER_BLOCK_WEIGHTS
from tests.conftest import PEAK_MEMORY_LAYERS

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
# weights (float64, up to 4 columns a filter) and the negative phase's order (up to 64 bytes a weight), and
# the negative phase's checkpoint weights (float64, a column a filter and checkpoint).
PLAN_BYTES_PER_WEIGHT = 64 + 8 * (CHECKPOINT_SEGMENTS - 1)


# Beyond OPERAND_MULTIPLE x the layer's operands and one band of operands (float64), what each machine may
# hold for the whole layer, and why. The bounds guard against a whole-layer im2col (82 MB on conv1_2) or a
# whole layer's issue plans or weight groups (over 80 MB on conv4_2).
MECHANISM_BYTES = {
    # The datapath's column bands and nothing else.
    "cnvlutin": lambda layer: 0,
    "dadiannao": lambda layer: 0,
    # Pruned operands: the functional check's bands of numpy's outputs of the trace's and of the machine's
    # operands (float64), and of their differences: a few bands of the output, never the whole of it twice.
    "cnvlutin_pruning": lambda layer: 4 * layer.output.nbytes,
    # Per-output results and the issue plans of one block of filters.
    "snapea_exact": lambda layer: (
        RESULT_MULTIPLE * layer.output.nbytes + PLAN_BYTES_PER_WEIGHT * FILTER_BLOCK_WEIGHTS
    ),
    "snapea_predictive": lambda layer: (
        RESULT_MULTIPLE * layer.output.nbytes + PLAN_BYTES_PER_WEIGHT * FILTER_BLOCK_WEIGHTS
    ),
    # Per-output results; weights as float64 with their magnitudes (float64) and nonzero mask (float32).
    "predictivenet": lambda layer: RESULT_MULTIPLE * layer.output.nbytes + 4 * layer.weights.nbytes,
    # Per-output results; weights as float64, each position alone in its group (float64) and the sparse tables
    # of the other groups.
    "ucnn": lambda layer: RESULT_MULTIPLE * layer.output.nbytes + 6 * layer.weights.nbytes,
    # The experts are clustered on float64 copies of the weights.
    "moe": lambda layer: 4 * layer.weights.nbytes,
    # Per-channel-lane term counts (int64 copies of the input, padded).
    "diffy": lambda layer: 6 * layer.input.nbytes,
}


# The layers (PEAK_MEMORY_LAYERS in tests/conftest.py): conv1_2 (the largest activations), conv2_1, and
# conv4_2 (the largest weights with the most pixels). SnaPEA's machines, whose walk of every output took 7-8 s
# of CPU on conv4_2 under tracemalloc, take conv5_1 instead: the same weights (512x512x3x3, so the same issue
# plans), a quarter of the pixels, and their bound as tight there (peak / bound 0.75 and 0.85, against 0.67
# and 0.80 on conv4_2).
LAYERS = PEAK_MEMORY_LAYERS
assert sorted(LAYERS) == sorted(MECHANISM_BYTES)


@pytest.mark.parametrize(
    ("layer_name", "hw_name"),
    [(layers[index], name) for index in range(3) for name, layers in sorted(LAYERS.items())],
)
def test_simulate_layer_peak_memory_is_bounded_by_the_layers_own_sizes(
    hw_name, layer_name, simulated, vgg16_trace
):
    """Each peak is measured (tracemalloc, from a collected heap, around the one simulate_layer call) in the
    golden tier's whole-network run of the config, which simulates each layer on its own: the session cache
    (tests/conftest.py) measures these layers as it simulates them, instead of this test simulating them a
    second time."""
    layer = vgg16_trace.layer(layer_name)
    peak_bytes = simulated.peak_bytes(hw_name, layer_name)
    bound_bytes = (
        OPERAND_MULTIPLE * _operand_bytes(layer) + 8 * DATAPATH_BAND_VALUES + MECHANISM_BYTES[hw_name](layer)
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
        entry = simulate_layer(hwconfigs[hw_name], layer)
        before_collection_bytes = tracemalloc.get_traced_memory()[0]
        gc.collect()
        freed_by_collection_bytes = before_collection_bytes - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    # What is left is simpy's own cycle (an Environment, its events and the tiles' transfers), ~20 kB per
    # simulation of conv1_2's 56 tiles: the mapper simulates several mappings of the layer. (A layer's
    # array is megabytes.)
    assert freed_by_collection_bytes < 25_000 * entry["mapper"]["simulated"]


def test_a_loaded_layers_effectual_macs_are_counted_once_and_a_writable_layers_every_time(
    crop_trace, hwconfigs, monkeypatch
):
    import dataclasses

    import sparsesim.simulator as simulator
    from sparsesim.workload.trace import load_trace

    counted = []

    def counting(*args):
        counted.append(args)
        return effectual_macs(*args)

    effectual_macs = simulator.effectual_macs
    monkeypatch.setattr(simulator, "effectual_macs", counting)
    loaded = load_trace(crop_trace, keep_in_memory=True).layer("conv2_2")
    writable = dataclasses.replace(loaded, input=loaded.input.copy(), weights=loaded.weights.copy())
    for layer, counts in ((loaded, 1), (writable, 3)):
        reports = [simulate_layer(hwconfigs[name], layer) for name in ("cnvlutin", "dadiannao", "eyeriss_v1")]
        assert len(counted) == counts, layer
        effectual = effectual_macs(*counted[0])
        assert [report["computes"]["effectual"] for report in reports] == [effectual] * 3
        counted.clear()
