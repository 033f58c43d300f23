"""What a systolic run may cost: memory bounded by the SRAMs and fixed chunks, work by a budget checked first.

Peak memory is measured with :mod:`tracemalloc` (it counts numpy's arrays too, and is deterministic); no
test here times anything.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

import sparsesim.systolic.array as array
from sparsesim.errors import SimulationError
from sparsesim.systolic import SystolicArrayConfig, simulate_systolic, simulate_systolic_layer
from sparsesim.systolic.array import MAX_ORDERED_WORK, MAX_WRITE_STEPS, layer_work
from sparsesim.systolic.config import MAX_ARRAY_SIDE, MAX_SRAM_KIB
from sparsesim.workload.topology import MAX_SIZE, ConvShape, load_topology, parse_topology

KIB, MIB = 1 << 10, 1 << 20
RESNET18 = Path(__file__).parents[2] / "benchmarks" / "scalesim" / "resnet18.csv"


def traced_peak(function):
    """``(result, peak bytes)`` of ``function()``; the result is the exception if it raised one of ours."""
    tracemalloc.start()
    try:
        try:
            result = function()
        except SimulationError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def config(dataflow, rows=32, cols=32, sram_kib=64):
    return SystolicArrayConfig(rows, cols, sram_kib * KIB, sram_kib * KIB, sram_kib * KIB, dataflow)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_a_row_with_every_number_at_the_limit_is_refused_before_any_work(dataflow):
    # 2**20 everywhere: a 2**20 x 2**20 filter over 2**20 channels, K = 2**60 window positions.
    largest = config(dataflow, MAX_ARRAY_SIDE, MAX_ARRAY_SIDE, MAX_SRAM_KIB)
    result, peak = traced_peak(lambda: simulate_systolic_layer(largest, ConvShape("max", *[MAX_SIZE] * 7)))
    assert isinstance(result, SimulationError) and peak < MIB
    assert "words overflow an epoch of the 32,768 KiB" in str(result)


def test_the_largest_closed_form_layer_runs_in_little_memory():
    # Every size at 2**20 but a 1 x 1 filter: 2 x 2 output pixels, K = N = 2**20, on the largest array.
    largest = config("ws", MAX_ARRAY_SIDE, MAX_ARRAY_SIDE, MAX_SRAM_KIB)
    layer = ConvShape("max", MAX_SIZE, MAX_SIZE, 1, 1, MAX_SIZE, MAX_SIZE, MAX_SIZE)
    result, peak = traced_peak(lambda: simulate_systolic_layer(largest, layer))
    assert peak < MIB
    assert result.macs == 1 << 42 and result.ofmap_sram_writes == 1 << 30 and result.folds == 1 << 16


def test_a_million_pixel_tall_ifmap_runs_in_little_memory():
    # A fuzzing run's 1e6-tall IFMAP took 6 GB: the ofmap writes of every cycle were held in an array.
    tall = ConvShape("tall", 1_000_000, 8, 3, 3, 1, 8, 1)
    result, peak = traced_peak(lambda: simulate_systolic_layer(config("ws", sram_kib=MAX_SRAM_KIB), tall))
    assert peak < MIB and result.compute_cycles == 1 * 1 * (2 * 32 + 32 + 999_998 * 6 - 2) - 1


def test_the_largest_array_with_the_smallest_srams_runs_in_little_memory():
    layer = ConvShape("t", 32, 32, 3, 3, 32, 64, 1)
    for dataflow in ("ws", "os", "is"):
        small = config(dataflow, MAX_ARRAY_SIDE, MAX_ARRAY_SIDE, 1)
        result, peak = traced_peak(lambda small=small: simulate_systolic_layer(small, layer))
        assert peak < 24 * MIB, dataflow  # the demand stream's fixed chunks and block walks
        assert result.ifmap_sram_reads > 0


@pytest.mark.parametrize(
    ("name", "small", "large"),
    [
        # A stamp per ifmap address (spaces up to 2**24 words): 131,072 and 524,288 words.
        ("stamps", ConvShape("s", 128, 128, 3, 3, 8, 64, 1), ConvShape("s", 256, 256, 3, 3, 8, 64, 1)),
        # Sorted runs of one epoch (spaces beyond 2**26 words): 2**27 and 2**29 words.
        ("runs", ConvShape("r", 8192, 8192, 1, 1, 2, 8, 8), ConvShape("r", 16384, 16384, 1, 1, 2, 8, 8)),
    ],
)
def test_ordered_dram_read_counts_take_memory_by_the_sram_not_by_the_layer(name, small, large):
    sram = config("ws")
    streams = [array.layer_work(sram, layer).ordered_reads["ifmap"] for layer in (small, large)]
    assert streams[1] > 3.9 * streams[0]
    peaks = [
        traced_peak(lambda layer=layer: simulate_systolic_layer(sram, layer))[1] for layer in (small, large)
    ]
    assert max(peaks) < 16 * MIB and peaks[1] < 1.25 * peaks[0], peaks


def test_many_layers_cost_a_bounded_amount_each():
    # A depthwise row of 4,096 channels: at most 2 KiB a layer with the three renderings, so 256 MiB at the
    # limit of 131,072 layers (the report itself is most of it).
    def run():
        report = simulate_systolic(config("ws"), parse_topology("h\nDPconv, 56, 56, 3, 3, 4096, 1, 1,\n"))
        return len(report.render()) + len(report.to_json()) + len(report.to_csv())

    _, peak = traced_peak(run)
    assert peak < 4096 * 2 * KIB


# -- The work budget ------------------------------------------------------------------------------------


def test_a_read_count_beyond_the_budget_names_the_sram_that_makes_it_a_closed_form():
    gemm = parse_topology("L, M, N, K\nbig, 1048576, 2048, 4096\n", "g.csv", gemm=True)[0]
    with pytest.raises(SimulationError) as error:
        simulate_systolic_layer(config("ws"), gemm)
    message = str(error.value)
    assert message.startswith(
        "g.csv:2: layer 'big': its 4,294,967,296 distinct ifmap words overflow an epoch"
    )
    assert "no SRAM of at most 32,768 KiB holds it" in message
    layer = ConvShape("c", 512, 512, 3, 3, 16, 64, 1)  # 4,194,304 distinct ifmap words
    with pytest.raises(SimulationError, match=r"an IfmapSramSzkB of at least 8,193 makes it a closed form$"):
        simulate_systolic_layer(config("os", rows=4, cols=1), layer)
    assert layer_work(config("os", 4, 1, 8193), layer).ordered_reads["ifmap"] == 0
    assert layer_work(config("os", 4, 1, 8192), layer).ordered_reads["ifmap"] > 0


def test_a_write_buffer_beyond_the_budget_is_refused_before_any_work():
    wide = ConvShape("wide", 1024, 1024, 1, 1, 1, MAX_SIZE, 1)
    small_ofmap = SystolicArrayConfig(32, 32, MAX_SRAM_KIB * KIB, MAX_SRAM_KIB * KIB, KIB, "ws")
    result, peak = traced_peak(lambda: simulate_systolic_layer(small_ofmap, wide))
    assert isinstance(result, SimulationError) and peak < MIB
    assert "draining its outputs through the 1 KiB ofmap SRAM may take" in str(result)


def test_the_budget_counts_the_whole_run_and_each_shape_once(monkeypatch):
    sram = config("os", sram_kib=1)
    one = ConvShape("one", 12, 12, 3, 3, 4, 8, 1, origin="net.csv:2")
    other = ConvShape("other", 12, 12, 3, 3, 5, 8, 1, origin="net.csv:3")
    work = layer_work(sram, one).ordered_work
    assert work > 0
    monkeypatch.setattr(array, "MAX_ORDERED_WORK", work + work // 2)
    copies = [ConvShape(f"copy{i}", 12, 12, 3, 3, 4, 8, 1) for i in range(10)]
    assert len(simulate_systolic(sram, [one, *copies]).layers) == 11  # one shape, counted once
    with pytest.raises(
        SimulationError,
        match=r"^net.csv:3: layer 'other': .*, with the run's earlier layers, over the run's budget",
    ):
        simulate_systolic(sram, [one, *copies, other])


def test_real_networks_stay_well_within_the_budget():
    layers = load_topology(RESNET18)
    for dataflow in ("ws", "os", "is"):
        works = [layer_work(config(dataflow), layer) for layer in layers]  # SCALE-Sim's default 64 KiB SRAMs
        assert sum(work.ordered_work for work in works) < MAX_ORDERED_WORK / 18
        assert sum(work.write_steps for work in works) < MAX_WRITE_STEPS / 4000
