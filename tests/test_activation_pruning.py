"""Activation pruning (Cnvlutin's dynamic pruning, Minerva): lossy, and the loss is measured."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim.accelerator import operand_input
from sparsesim.cli import main
from sparsesim.config.overrides import with_parameter
from tests.conftest import HWCONFIG_DIR, TRACE_DIR

LAYERS = ["conv4_2", "conv5_1"]


def with_threshold(hw, threshold):
    pe = dataclasses.replace(hw.pe_array.pe, activation_threshold=threshold)
    return dataclasses.replace(hw, pe_array=dataclasses.replace(hw.pe_array, pe=pe))


def test_pruning_zeroes_exactly_the_small_activations(vgg16_trace, hwconfigs):
    layer = vgg16_trace.layer("conv4_2")
    pruned = operand_input(with_threshold(hwconfigs["cnvlutin"], 2.0), layer)
    small = np.abs(layer.input) <= 2.0
    assert (pruned[small] == 0).all()
    np.testing.assert_array_equal(pruned[~small], layer.input[~small])
    assert operand_input(hwconfigs["cnvlutin"], layer) is layer.input  # threshold 0: untouched


def test_pruning_buys_cycles_and_energy_and_reports_its_error(simulated):
    # The shipped configs' whole-network runs (shared with the golden tier), on two of their layers.
    exact = [simulated("cnvlutin").layer(name) for name in LAYERS]
    pruned = [simulated("cnvlutin_pruning").layer(name) for name in LAYERS]
    for before, after in zip(exact, pruned, strict=True):
        assert before["functional_check"]["exact"] and "lossy_error" not in before["functional_check"]
        check = after["functional_check"]
        assert check["passed"] and not check["exact"]  # the datapath is exact on the pruned operands ...
        error = check["lossy_error"]  # ... and the pruning's cost is measured, not hidden
        assert 0 < error["relative_rms_error"] < 0.1 and 0 < error["changed_fraction"] < 1
        assert after["computes"]["skipped"] > before["computes"]["skipped"]
        assert after["cycles"] <= before["cycles"]
        assert after["energy_pj"] < before["energy_pj"]


def test_sweep_changes_one_parameter_and_tabulates_speed_energy_and_error(tmp_path):
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(
        main,
        [
            "sweep",
            str(HWCONFIG_DIR / "cnvlutin.yaml"),
            str(TRACE_DIR),
            "--layer",
            "conv5_1",
            "--set",
            "pe_array.pe.activation_threshold=0,2,8",
            "--json",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["value"] for row in rows] == [0, 2, 8]
    assert rows[0]["worst_layer_relative_rms_error"] == 0
    errors = [row["worst_layer_relative_rms_error"] for row in rows]
    assert errors == sorted(errors) and errors[-1] > 0
    assert rows[-1]["effectual_computes"] < rows[0]["effectual_computes"]


def test_sweep_rejects_an_unknown_parameter(hwconfigs):
    from sparsesim.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown parameter"):
        with_parameter(hwconfigs["cnvlutin"], "pe_array.pe.activation_treshold", 1.0)
    with pytest.raises(ConfigError, match="must be >= 0"):
        with_parameter(hwconfigs["cnvlutin"], "pe_array.pe.activation_threshold", -1.0)
