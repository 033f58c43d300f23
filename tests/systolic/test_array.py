"""The systolic closed forms: equal to the cycle-stepped reference, and to SCALE-Sim 3.0.0's own numbers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from sparsesim.systolic import (
    SCALESIM_COUNTS,
    SystolicArrayConfig,
    fold_plan,
    simulate_systolic,
    simulate_systolic_layer,
)
from sparsesim.systolic.buffers import EpochReadCounter, read_epoch_capacity, simulate_write_buffer
from sparsesim.workload.topology import ConvShape, load_topology, parse_topology
from tests.reference.systolic_reference import reference_systolic_layer, reference_write_buffer

HERE = Path(__file__).parent
BENCHMARKS = HERE.parents[1] / "benchmarks" / "scalesim"
GOLDEN = json.loads((HERE / "scalesim_golden.json").read_text())
RESNET18_GOLDEN = json.loads((HERE / "scalesim_resnet18_golden.json").read_text())


def _synthetic_layers(count, seed):
    """Synthetic shapes (unit tests only): small enough for the cycle-stepped reference."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        height, width = rng.randint(1, 9), rng.randint(1, 9)
        layer = ConvShape(
            f"synthetic{index}",
            height,
            width,
            rng.randint(1, height),
            rng.randint(1, width),
            rng.randint(1, 5),
            rng.randint(1, 12),
            rng.randint(1, 3),
        )
        array = (rng.randint(1, 6), rng.randint(1, 6))
        # 150 and 230 words: epochs of 50 and 100 addresses, so DRAM reads depend on the demand order.
        sram_words = tuple(rng.choice([150, 230, 1024, 4096]) for _ in range(3))
        cases.append((layer, array, sram_words))
    return cases


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize(("layer", "array", "sram_words"), _synthetic_layers(60, seed=5))
def test_closed_form_equals_cycle_stepped_reference(layer, array, sram_words, dataflow):
    config = SystolicArrayConfig(*array, *sram_words, dataflow)
    result = simulate_systolic_layer(config, layer).to_dict()
    reference = reference_systolic_layer(*array, *sram_words, dataflow, layer)
    assert {key: result[key] for key in reference} == reference


def test_write_buffer_events_equal_word_by_word_reference_including_stalls():
    rng = random.Random(11)
    stalled = 0
    for _ in range(1500):
        profile = np.array([rng.randint(0, 12) for _ in range(rng.randint(1, 150))])
        sram_words, line_words = rng.randint(2, 120), rng.randint(1, 15)
        expected = reference_write_buffer(profile, sram_words, line_words)
        assert simulate_write_buffer(profile, sram_words, line_words) == expected
        stalled += expected[0] > 0
    assert stalled > 200  # the stall path is exercised, not just the drains


def test_read_epochs_forget_everything_at_capacity():
    assert read_epoch_capacity(65536) == 50 * 655
    assert read_epoch_capacity(99) == 0
    counter = EpochReadCounter(capacity=3, address_space=10)
    counter.feed(np.array([1, 2, 1, 3, 1, 2, 4, 4, 5]))  # 1 2 3 | 1 2 4 | 4 5: the second 4 is forgotten
    assert counter.dram_reads == 8


@pytest.mark.parametrize(
    ("dataflow", "fold_cycles"),
    [("ws", 2 * 4 + 4 + 16 - 2), ("is", 2 * 4 + 4 + 8 - 2), ("os", 4 + 4 + 27 - 2)],
)
def test_fold_cycles_follow_scalesim_3_0_0_including_the_short_os_fill(dataflow, fold_cycles):
    # scale-sim-v3 issue 4: the paper's OS fold is 2R + C + T - 2, 3.0.0's code R + C + T - 2.
    # We follow the code.
    layer = ConvShape("tiny", 6, 6, 3, 3, 3, 8, 1)  # M = 16, N = 8, K = 27
    plan = fold_plan(SystolicArrayConfig(4, 4, 65536, 65536, 65536, dataflow), layer)
    assert plan.fold_cycles == fold_cycles


def test_compute_cycles_are_one_less_than_the_schedule_like_scalesim():
    # SCALE-Sim issue 125: it reports the last cycle's index; schedule_cycles is the count.
    result = simulate_systolic_layer(
        SystolicArrayConfig(4, 4, 65536, 65536, 65536, "os"), ConvShape("one_fold", 4, 1, 1, 1, 2, 4, 1)
    )  # M = 4, N = 4, K = 2
    assert result.schedule_cycles == 4 + 4 + 2 - 2
    assert result.compute_cycles == result.schedule_cycles - 1


@pytest.mark.parametrize(
    "case", GOLDEN["cases"], ids=lambda case: f"{case['topology']}_{case['array']}_{case['dataflow']}"
)
def test_small_layers_equal_recorded_scalesim_numbers(case):
    config = SystolicArrayConfig(
        case["rows"],
        case["cols"],
        1024 * case["ifmap_sram_kb"],
        1024 * case["filter_sram_kb"],
        1024 * case["ofmap_sram_kb"],
        case["dataflow"],
    )
    topology = GOLDEN["topologies"][case["topology"]]
    if case["format"] == "conv":
        layers = {shape["name"]: ConvShape(**shape) for shape in topology}
    else:
        rows = "".join(f"{g['name']}, {g['m']}, {g['n']}, {g['k']},\n" for g in topology)
        layers = {shape.name: shape for shape in parse_topology("Layer, M, N, K,\n" + rows, gemm=True)}
    for expected in case["layers"]:
        result = simulate_systolic_layer(config, layers[expected["layer"]]).to_dict()
        name = expected["layer"]
        got = {key: result[key] for key in SCALESIM_COUNTS}
        assert got == {key: expected[key] for key in SCALESIM_COUNTS}, name


@pytest.mark.parametrize("dataflow", sorted(RESNET18_GOLDEN["layers"]))
def test_resnet18_on_32x32_equals_recorded_scalesim_numbers(dataflow):
    config_path = BENCHMARKS.parents[1] / RESNET18_GOLDEN["configs"][dataflow]
    from sparsesim.systolic import load_scalesim_config

    report = simulate_systolic(load_scalesim_config(config_path), load_topology(BENCHMARKS / "resnet18.csv"))
    got = [{key: layer.to_dict()[key] for key in SCALESIM_COUNTS} for layer in report.layers]
    assert got == RESNET18_GOLDEN["layers"][dataflow]
