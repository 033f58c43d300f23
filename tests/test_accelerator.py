"""The tile pipeline: overlap, bottlenecks and back-pressure, on small synthetic layers (named as such)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.accelerator import run_layer
from sparsesim.config import parse_hwconfig
from sparsesim.config.overrides import with_parameter
from sparsesim.errors import SimulationError
from sparsesim.simulator import simulate_layer
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.trace import Layer


def synthetic_layer(channels=8, size=12, filters=4, kernel=3, seed=0, zero_fraction=0.5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, size, size)).astype(np.float32)
    x[rng.random(x.shape) < zero_fraction] = 0.0
    w = rng.standard_normal((filters, channels, kernel, kernel)).astype(np.float32)
    b = np.zeros(filters, dtype=np.float32)
    layer = Layer(
        "synthetic", "conv2d", x, w, b, np.zeros((filters, size, size), np.float32), 1, kernel // 2, "relu"
    )
    out = layer_reference(layer).astype(np.float32)
    return Layer("synthetic", "conv2d", x, w, b, out, 1, kernel // 2, "relu")


def hw(**overrides):
    base = {
        "name": "synthetic-test",
        "dram": {"bandwidth_bytes_per_cycle": 64.0, "latency_cycles": 10, "burst_bytes": 64},
        "global_buffer": {
            "capacity_bytes": 4096,
            "banks": 2,
            "read_bandwidth_bytes_per_cycle": 64.0,
            "write_bandwidth_bytes_per_cycle": 64.0,
        },
        "noc": {"bandwidth_bytes_per_cycle": 64.0, "latency_cycles": 1},
        "pe_array": {
            "rows": 1,
            "columns": 2,
            "pe": {"activation_lanes": 4, "filter_lanes": 2, "weight_spad_bytes": 4096},
        },
    }
    for section, values in overrides.items():
        base[section] = {**base[section], **values} if isinstance(values, dict) else values
    return parse_hwconfig(base, source="test")


def stage_times(events):
    times = {}
    for cycle, stage, tile, what in events:
        times.setdefault((stage, what.split()[0]), {})[tile] = cycle
    return times


def test_compute_bound_layer_keeps_the_pes_busy_and_overlaps_transfers():
    run = run_layer(hw(), synthetic_layer())
    pe = run.pe_array
    assert len(run.tiling.tiles) > 2
    # Only the first load and the last write-back are not hidden behind compute.
    assert pe.busy_cycles > 0.8 * run.cycles
    assert pe.busy_cycles + pe.stall_cycles <= run.cycles


def test_dram_bound_layer_is_as_slow_as_its_dram_traffic():
    run = run_layer(hw(dram={"bandwidth_bytes_per_cycle": 0.5}), synthetic_layer())
    dram = run.accelerator.dram.port
    assert dram.busy_cycles > 0.9 * run.cycles
    assert run.pe_array.stall_cycles > run.pe_array.busy_cycles
    # The DRAM moved whole bursts: busy cycles = bursts x burst bytes / bandwidth.
    bursts = run.accelerator.dram.actions["read"] + run.accelerator.dram.actions["write"]
    assert dram.busy_cycles >= bursts * 64 / 0.5 - dram.transactions


def test_buffer_back_pressure_never_lets_the_loader_run_more_than_two_tiles_ahead():
    events = []
    # Slow write-back: outputs pile up, and the loader must wait for a free half of the buffer.
    config = hw(dram={"bandwidth_bytes_per_cycle": 1.0}, global_buffer={"capacity_bytes": 600})
    run = run_layer(config, synthetic_layer(channels=2, filters=4), events)
    times = stage_times(events)
    starts, drained = times[("loader", "start")], times[("writer", "drained")]
    n_tiles = len(run.tiling.tiles)
    assert n_tiles > 3
    for tile in range(2, n_tiles):
        assert starts[tile] >= drained[tile - 2], events
    assert any(starts[tile] == drained[tile - 2] for tile in range(2, n_tiles))


def given(layer, mapping):
    from sparsesim.accelerator import geometry_of
    from sparsesim.mapping.directives import MappingFile, to_directives

    return MappingFile("test", None, {layer.name: ("m", to_directives(mapping, geometry_of(layer)))}, {})


def test_the_buffer_holds_at_most_two_buffer_tiles_whose_pe_tiles_stream_in():
    from sparsesim.mapping import LayerMapping, Loops

    events = []
    layer = synthetic_layer(channels=4, size=12, filters=4)
    # 3 buffer tiles of 4 output rows, each streamed to the PEs in 2 PE tiles of 2 rows.
    mapping = LayerMapping(dram=Loops((1, 1, 3)), pe_tile=(4, 4, 2), global_buffer=Loops((1, 1, 2)))
    config = hw(dram={"bandwidth_bytes_per_cycle": 1.0}, global_buffer={"capacity_bytes": 8192})
    run = run_layer(config, layer, events, mapping_file=given(layer, mapping))
    tiles = run.tiling.tiles
    assert [t.buffer_tile for t in tiles] == [0, 0, 1, 1, 2, 2]
    times = stage_times(events)
    starts, drained = times[("loader", "start")], times[("writer", "drained")]
    # Buffer tile 2 opens only once buffer tile 0's last PE tile has drained; inside a buffer tile, the
    # second PE tile loads without waiting for the first to drain.
    assert starts[4] >= drained[1]
    assert starts[1] < drained[0]
    assert starts[3] < drained[2]


def test_spilled_partial_sums_are_read_back_only_after_they_are_written():
    from sparsesim.mapping import LayerMapping, Loops

    events = []
    layer = synthetic_layer(channels=8, size=8, filters=4)
    channels_outer = LayerMapping(dram=Loops((1, 2, 2), "CKP"), pe_tile=(4, 4, 4))
    run = run_layer(
        hw(global_buffer={"capacity_bytes": 8192}), layer, events, mapping_file=given(layer, channels_outer)
    )
    tiles = run.tiling.tiles
    assert [t.dram_psum_read_words > 0 for t in tiles] == [False, False, True, True]
    times = stage_times(events)
    for tile in tiles[2:]:
        assert times[("loader", "loaded")][tile.index] > times[("writer", "drained")][tile.continues]
    entry = simulate_layer(
        hw(global_buffer={"capacity_bytes": 8192}), layer, mapping_file=given(layer, channels_outer)
    )
    assert entry["functional_check"]["passed"]


def test_partial_sums_wait_for_the_previous_channel_block():
    events = []
    small_spad = hw(
        pe_array={
            "rows": 1,
            "columns": 2,
            "pe": {"activation_lanes": 4, "filter_lanes": 2, "weight_spad_bytes": 2 * 2 * 9 * 3},
        }
    )
    run = run_layer(small_spad, synthetic_layer(channels=8), events)
    assert run.tiling.n_channel_blocks > 1
    times = stage_times(events)
    for tile in run.tiling.tiles:
        if tile.psum_in_words:
            assert times[("distributor", "sent")][tile.index] >= times[("writer", "drained")][tile.continues]


def test_same_layer_same_config_gives_identical_cycles_and_counts():
    a = run_layer(hw(), synthetic_layer())
    b = run_layer(hw(), synthetic_layer())
    assert a.cycles == b.cycles
    assert [c.actions for c in a.components] == [c.actions for c in b.components]


def synthetic_linear_layer(channels=40, filters=24, seed=1):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(channels), 0).astype(np.float32)  # ReLU-like zeros
    w = rng.standard_normal((filters, channels)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    layer = Layer("synthetic_fc", "linear", x, w, b, np.zeros(filters, np.float32), 1, 0, "relu")
    return Layer("synthetic_fc", "linear", x, w, b, layer_reference(layer).astype(np.float32), 1, 0, "relu")


def strided_layer(stride=2, padding=1):
    rng = np.random.default_rng(2)
    x = np.maximum(rng.standard_normal((6, 13, 11)), 0).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    out_h, out_w = (13 + 2 * padding - 3) // stride + 1, (11 + 2 * padding - 3) // stride + 1
    layer = Layer(
        "synthetic_s2", "conv2d", x, w, b, np.zeros((5, out_h, out_w), np.float32), stride, padding, "relu"
    )
    out = layer_reference(layer).astype(np.float32)
    return Layer("synthetic_s2", "conv2d", x, w, b, out, stride, padding, "relu")


@pytest.mark.parametrize("kind", ["dense", "zero_gating", "zero_skip_activations", "csc_columns"])
@pytest.mark.parametrize("make_layer", [synthetic_linear_layer, strided_layer])
def test_linear_and_strided_layers_simulate_and_pass_the_functional_check(make_layer, kind):
    layer = make_layer()
    config = hw(
        pe_array={
            "pe": {
                "activation_lanes": 4,
                "filter_lanes": 2,
                "weight_spad_bytes": 4096,
                "mechanism": {"kind": kind},
            }
        }
    )
    result = simulate_layer(config, layer)
    assert result["functional_check"]["passed"], result["functional_check"]
    computes = result["computes"]
    assert computes["algorithmic"] == layer.algorithmic_macs
    assert computes["actual"] + computes["skipped"] == computes["algorithmic"]
    assert result["cycles"] > 0


@pytest.mark.parametrize(
    "hw_name, kind",
    [
        ("snapea_exact", "relu_early_termination"),
        ("predictivenet", "msb_first"),
        ("ucnn", "weight_repetition"),
    ],
)
def test_a_mechanism_that_walks_whole_outputs_refuses_filters_split_over_channel_blocks(
    hw_name, kind, hwconfigs, vgg16_trace
):
    hw = with_parameter(hwconfigs[hw_name], "pe_array.pe.weight_spad_bytes", 1024)  # 512 of 4608 weights
    with pytest.raises(
        SimulationError,
        match=rf"conv5_3: {kind} needs each filter whole in a PE, but the "
        r"weight scratchpad holds 56 of 512 channels: raise pe_array.pe.weight_spad_bytes",
    ):
        run_layer(hw, vgg16_trace.layer("conv5_3"))
