"""The sweep API: one config per value, each validated before anything is simulated."""

from __future__ import annotations

import dataclasses

import pytest

from sparsesim.errors import ConfigError
from sparsesim.sweep import sweep, swept_configs


def test_swept_configs_change_only_the_parameter(hwconfigs):
    hw = hwconfigs["cnvlutin"]
    configs = swept_configs(hw, "pe_array.pe.activation_threshold", [0, 2.0])
    assert [c.pe_array.pe.activation_threshold for c in configs] == [0, 2.0]
    pe = dataclasses.replace(hw.pe_array.pe, activation_threshold=2.0)
    assert configs[1] == dataclasses.replace(hw, pe_array=dataclasses.replace(hw.pe_array, pe=pe))


def test_a_bad_value_fails_the_sweep_before_any_simulation(hwconfigs):
    with pytest.raises(ConfigError, match="must be >= 0"):
        sweep(hwconfigs["cnvlutin"], None, "pe_array.pe.activation_threshold", [0, -1.0])


def test_sweep_tabulates_each_value_against_the_first(hwconfigs, vgg16_trace):
    data = sweep(hwconfigs["cnvlutin"], vgg16_trace, "pe_array.pe.activation_threshold", [0, 8], ["conv5_3"])
    assert data["parameter"] == "pe_array.pe.activation_threshold"
    assert [row["value"] for row in data["rows"]] == [0, 8]
    assert data["rows"][0]["speedup"] == 1.0 and data["rows"][0]["energy_saving"] == 0.0
    assert data["rows"][1]["effectual_computes"] < data["rows"][0]["effectual_computes"]
    assert [layer["name"] for layer in data["rows"][1]["layers"]] == ["conv5_3"]


def test_the_sweep_shows_the_bound_moving_off_dram_as_its_bandwidth_grows(hwconfigs, vgg16_trace):
    from sparsesim.report.sweep import render_sweep

    data = sweep(hwconfigs["cnvlutin"], vgg16_trace, "dram.bandwidth_bytes_per_cycle", [4, 1024], ["conv5_3"])
    narrow, wide = data["rows"]
    assert (
        narrow["bound"]["by"] == narrow["layers"][0]["bound"]["by"] == "dram"
        and narrow["bound"]["share"] > 0.95
    )
    assert wide["bound"]["by"] != "dram" and wide["cycles"] < narrow["cycles"]
    assert f"dram {100 * narrow['bound']['share']:.1f}%" in render_sweep(data)
