"""The functional check cannot be fooled: hostile traces fail on every shipped config, honest ones pass.

Issue 9, items 10 and 11: a trace whose stored output was replaced by ``2*out+1`` (checksums updated), or
whose manifest says ``activation: none`` for a ReLU'd output, passed on the machines that compute with
altered operands or zero outputs. Each test below builds its traces from real tensors of the shipped VGG16
trace and writes them with :func:`save_trace`, so that they load like any trace (valid checksums); only the
stored output or the activation is hostile. Each config simulates each trace once, through the CLI, which
must exit with 1 on a failed check.

The layers (real activations and weights, references recomputed on them):

- ``conv3_1_cut``: 16 input channels x 10 x 12 pixels of conv3_1's input and its first 16 filters (16, so
  that the mixture of experts splits them into 8 experts), 3x3 'same' as in the network, the cut's border
  zero-padded;
- ``conv3_1_centre_window_as_linear``: the 3x3 window of conv3_1's input at the image centre (all 128
  channels) as a linear layer of conv3_1's 256 filters, flattened: the shipped trace has no linear layer.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim import load_trace, simulate
from sparsesim.accelerator import run_layer
from sparsesim.cli import main
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.trace import Layer, save_trace
from tests.conftest import HWCONFIG_DIR, SHIPPED_HWCONFIGS

PROVENANCE = {
    "note": "test input: small real layers derived from the shipped trace traces/vgg16_china (real "
    "activations and weights, references recomputed); hostile variants have an edited output or "
    "activation, as their trace name says"
}
# The configs whose check takes the lossy path on these layers (altered operands or zeroed outputs): the
# ones the issue found fooled, plus SnaPEA's predictive mode, whose mispredicted outputs went unchecked.
LOSSY = ("cnvlutin_pruning", "diffy", "predictivenet", "moe", "snapea_predictive")
HOSTILE = ("output_2x_plus_1", "relu_claimed_none")


def _with_reference(layer: Layer, activation: str) -> Layer:
    layer = dataclasses.replace(layer, activation=activation)
    return dataclasses.replace(layer, output=layer_reference(layer).astype(np.float32))


def real_layers(trace, activation: str = "relu") -> list[Layer]:
    """The module docstring's two layers, their outputs the references for ``activation``."""
    source = trace.layer("conv3_1")
    x = np.ascontiguousarray(source.input[:16, 8:18, 10:22])
    w = np.ascontiguousarray(source.weights[:16, :16])
    cut = Layer("conv3_1_cut", "conv2d", x, w, source.bias[:16].copy(), np.zeros((16, 10, 12)), 1, 1)
    _, height, width = source.input.shape
    rows, cols = slice(height // 2 - 1, height // 2 + 2), slice(width // 2 - 1, width // 2 + 2)
    window = np.ascontiguousarray(source.input[:, rows, cols].reshape(-1))
    filters = np.ascontiguousarray(source.weights.reshape(len(source.weights), -1))
    linear = Layer(
        "conv3_1_centre_window_as_linear", "linear", window, filters, source.bias.copy(), np.zeros(256)
    )
    return [_with_reference(cut, activation), _with_reference(linear, activation)]


@pytest.fixture(scope="module")
def traces(vgg16_trace, tmp_path_factory):
    """Trace directories: two honest ones (ReLU layers; the same layers without ReLU, as a network's last
    layer is) and the hostile ones of ``HOSTILE``."""
    honest = real_layers(vgg16_trace)
    variants = {
        "honest": honest,
        "honest_without_relu": real_layers(vgg16_trace, activation="none"),
        "output_2x_plus_1": [
            dataclasses.replace(layer, output=(2 * layer.output + 1).astype(np.float32)) for layer in honest
        ],
        # A ReLU'd output whose manifest says there is no ReLU.
        "relu_claimed_none": [dataclasses.replace(layer, activation="none") for layer in honest],
    }
    root = tmp_path_factory.mktemp("functional_check")
    for name, layers in variants.items():
        save_trace(root / name, name, PROVENANCE, layers)
    return {name: root / name for name in variants}


def run_cli(hw_name: str, trace_dir, tmp_path) -> tuple[int, str, dict]:
    """``sparsesim run HWCONFIG TRACE --json``: exit code, stderr and the report."""
    out = tmp_path / f"{hw_name}.json"
    hwconfig = HWCONFIG_DIR / f"{hw_name}.yaml"
    result = CliRunner().invoke(
        main, ["run", str(hwconfig), str(trace_dir), "--json", str(out)], catch_exceptions=False
    )
    return result.exit_code, result.stderr, json.loads(out.read_text())


def test_the_real_layers_have_outputs_a_relu_changes(vgg16_trace):
    """Otherwise flipping the activation would change nothing, and the hostile trace would be honest."""
    for relu, none in zip(real_layers(vgg16_trace), real_layers(vgg16_trace, "none"), strict=True):
        assert (none.output < 0).any() and (relu.output > 0).any()


@pytest.mark.parametrize("hw_name", SHIPPED_HWCONFIGS)
def test_every_config_passes_the_untampered_real_layers(hw_name, traces, tmp_path):
    exit_code, stderr, report = run_cli(hw_name, traces["honest"], tmp_path)
    assert exit_code == 0, stderr
    assert report["totals"]["functional_check_passed"]
    for layer in report["layers"]:
        check = layer["functional_check"]
        assert check["passed"] and check["failed"] == [], check
        # Lossy machines verify the stored output directly; exact ones through their datapath.
        assert check["exact"] == (hw_name not in LOSSY)
        assert check["stored_output"]["verified"] == (
            "directly" if hw_name in LOSSY else "through the datapath"
        )


@pytest.mark.parametrize("hw_name", SHIPPED_HWCONFIGS)
def test_every_config_passes_real_layers_without_relu(hw_name, traces, tmp_path):
    """A layer with no ReLU after it (a network's last layer): every datapath applies the layer's own
    activation, and ReLU early termination terminates nothing there."""
    exit_code, stderr, report = run_cli(hw_name, traces["honest_without_relu"], tmp_path)
    assert exit_code == 0, stderr
    for layer in report["layers"]:
        assert layer["functional_check"]["passed"], layer["functional_check"]
        termination = layer["mechanism"]["summary"]
        if termination is not None:  # SnaPEA, PredictiveNet
            assert not termination["relu_follows"] and termination["terminated_outputs"] == 0
            assert layer["computes"]["early_terminated"] == 0


@pytest.mark.parametrize("hw_name", SHIPPED_HWCONFIGS)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_config_fails_a_trace_whose_reference_is_not_its_layers_output(
    hw_name, hostile, traces, tmp_path
):
    exit_code, stderr, report = run_cli(hw_name, traces[hostile], tmp_path)
    assert exit_code == 1
    assert not report["totals"]["functional_check_passed"]
    for layer in report["layers"]:
        check = layer["functional_check"]
        # The machine computed the layer right; the trace's reference is what is wrong, and the check says so.
        assert check["failed"] == ["stored_output"], check
        assert not check["passed"] and check["datapath"]["passed"]
        assert f"{layer['name']}: stored_output" in stderr


def _uncomputed(hw, layer) -> np.ndarray:
    """The outputs the machine does not compute (unrouted or mispredicted), in the output's shape."""
    run = run_layer(hw, layer)
    if run.experts is not None:
        return ~run.experts.routed().reshape(layer.output.shape)
    return run.pe_array.termination.mispredicted.reshape(layer.output.shape)


@pytest.mark.parametrize("hw_name", ["moe", "snapea_predictive", "predictivenet"])
def test_a_stored_output_edited_only_where_the_machine_zeroes_fails(
    hw_name, hwconfigs, vgg16_trace, tmp_path
):
    """The datapath's zeroed outputs say nothing about the stored values there: those are verified too."""
    hw = hwconfigs[hw_name]
    layer = real_layers(vgg16_trace)[0]
    where = _uncomputed(hw, layer)
    assert where.any() and not where.all()
    edited = dataclasses.replace(
        layer, output=np.where(where, layer.output + 1, layer.output).astype(np.float32)
    )
    save_trace(tmp_path / "edited", "edited_where_zeroed", PROVENANCE, [edited])
    check = simulate(hw, load_trace(tmp_path / "edited")).layers[0]["functional_check"]
    assert check["failed"] == ["stored_output"], check


@pytest.mark.parametrize("hw_name", ["dadiannao", "cnvlutin_pruning"])
def test_a_wrong_datapath_fails_the_datapath_part(hw_name, hwconfigs, vgg16_trace, monkeypatch):
    """The other part: a datapath off by one everywhere (exact and lossy machines) is named as such."""
    import sparsesim.simulator as simulator

    datapath_output = simulator._datapath_output

    def off_by_one(*args):
        output, zeroed = datapath_output(*args)
        return output + 1.0, zeroed

    monkeypatch.setattr(simulator, "_datapath_output", off_by_one)
    layer = real_layers(vgg16_trace)[0]
    check = simulator.simulate_layer(hwconfigs[hw_name], layer)["functional_check"]
    assert check["failed"] == ["datapath"] and check["stored_output"]["passed"], check
    assert check["datapath"]["max_abs_error"] == pytest.approx(1.0, abs=1e-3)
