"""A mixture-of-experts network derived from the shipped real trace (MoEfication): the routed outputs are
the layer's, the others 0, the network re-runs on them, each stored output is the layer's reference (as in
every trace), and the simulator rebuilds the same routing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim import load_hwconfig, simulate
from sparsesim.accelerator import geometry_of
from sparsesim.cli import main
from sparsesim.mechanisms.datapath import im2col
from sparsesim.workload.moefication import MoeficationError, layer_operands, moefy_layer, moefy_trace
from sparsesim.workload.ops import layer_reference, maxpool2x2
from tests.conftest import HWCONFIG_DIR

FIRST = ["conv1_1", "conv1_2", "conv2_1"]  # the chain crosses the first max-pool


@pytest.fixture(scope="module")
def moefied(vgg16_trace, tmp_path_factory):
    return moefy_trace(
        vgg16_trace, tmp_path_factory.mktemp("moe") / "moe8top2", experts=8, top_k=2, layers=FIRST
    )


def test_operands_are_the_simulators_windows(vgg16_trace):
    layer = vgg16_trace.layer("conv2_1")
    geometry = geometry_of(layer)
    assert np.array_equal(
        layer_operands(layer, layer.input), im2col(layer.input, geometry, 0, geometry.out_height)
    )


def test_the_network_runs_on_the_moe_outputs(moefied, vgg16_trace):
    layers = moefied.layers
    assert [layer.name for layer in layers] == FIRST
    assert np.array_equal(layers[0].input, vgg16_trace.layer("conv1_1").input)
    moe_outputs = []
    for layer in layers:
        assert np.array_equal(layer.weights, vgg16_trace.layer(layer.name).weights)  # weights untouched
        # Stored: the layer's reference on its (MoE network's) input, the trace format's contract.
        dense = layer_reference(layer)
        assert np.array_equal(layer.output, dense.astype(np.float32))
        output, _ = moefy_layer(layer, 8, 2)
        computed = output != 0
        np.testing.assert_allclose(output[computed], dense[computed], rtol=1e-12)
        # 2 of 8 equal experts per pixel: at most a quarter of the outputs are computed.
        assert computed.mean() <= 0.25
        moe_outputs.append(output.astype(np.float32))
    # Each layer reads the previous MoE layer's output, not the stored reference.
    np.testing.assert_array_equal(layers[1].input, moe_outputs[0].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(layers[2].input, maxpool2x2(moe_outputs[1]).astype(np.float16))


def test_provenance_records_the_construction_and_its_error(moefied):
    moe = moefied.provenance["mixture_of_experts"]
    assert "MoEfication" in moe["construction"] and "No fine-tuning" in moe["construction"]
    assert (moe["experts"], moe["top_k"], moe["seed"]) == (8, 2, 0)
    assert moe["command"].startswith("sparsesim make-trace moefy ") and "--layer conv2_1" in moe["command"]
    first = moe["per_layer"]["conv1_1"]
    # The first layer's input is the source's: its error against the network is its error as a layer
    # (up to the source's float32 storage).
    assert first["relative_rms_error_vs_source_network"] == pytest.approx(
        first["relative_rms_error_vs_dense_layer"]
    )
    assert first["relative_rms_error_vs_dense_layer"] > 0
    for stats in moe["per_layer"].values():
        assert 0 < stats["recall_of_dense_layer"]["mass_recall"] < 1
        assert sum(stats["pixel_share_per_expert"]) == pytest.approx(2.0)


def test_the_simulator_rebuilds_the_same_routing(moefied):
    """Its error against the stored reference is the construction's error against the dense layer."""
    hw = load_hwconfig(HWCONFIG_DIR / "moe.yaml")
    report = simulate(hw, moefied)
    per_layer = moefied.provenance["mixture_of_experts"]["per_layer"]
    for entry in report.layers:
        check = entry["functional_check"]
        assert check["passed"], check
        assert check["lossy_error"]["relative_rms_error"] == pytest.approx(
            per_layer[entry["name"]]["relative_rms_error_vs_dense_layer"], rel=1e-5
        )


def test_a_dense_machine_passes_the_check_on_the_moe_network(moefied, hwconfigs):
    """The stored outputs are references: a machine without experts computes them exactly."""
    report = simulate(hwconfigs["dadiannao"], moefied, layers=["conv2_1"])
    assert report.totals["functional_check_passed"] and report.layers[0]["functional_check"]["exact"]


def test_every_expert_selected_is_the_dense_network(vgg16_trace, tmp_path):
    same = moefy_trace(vgg16_trace, tmp_path / "all", experts=4, top_k=4, layers=["conv1_2"])
    np.testing.assert_allclose(
        same.layers[-1].output, vgg16_trace.layer("conv1_2").output, rtol=1e-6, atol=1e-5
    )


def test_bad_parameters_are_typed_errors(vgg16_trace, tmp_path):
    with pytest.raises(MoeficationError, match="cannot be split into 5 experts"):
        moefy_trace(vgg16_trace, tmp_path / "x", experts=5, top_k=1, layers=["conv1_1"])
    with pytest.raises(MoeficationError, match="top_k must be an integer in"):
        moefy_trace(vgg16_trace, tmp_path / "x", experts=4, top_k=5, layers=["conv1_1"])


def test_cli_writes_the_same_trace_as_the_function(tmp_path, crop_trace):
    """On a small real cut (crop_trace: conv1_1's first 16 filters over 10x12 pixels): the command's plumbing;
    moefying the shipped layers themselves is the function tests' (moefied, above)."""
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        [
            "make-trace",
            "moefy",
            str(crop_trace),
            str(out),
            "--experts",
            "4",
            "--top-k",
            "1",
            "--layer",
            "conv1_1",
        ],
    )
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct"
    moefy_trace(str(crop_trace), direct, experts=4, top_k=1, layers=["conv1_1"])
    made, again = (json.loads((d / "manifest.json").read_text()) for d in (out, direct))
    assert made["layers"] == again["layers"]  # same arrays, byte for byte
    bad = CliRunner().invoke(
        main, ["make-trace", "moefy", str(crop_trace), str(out), "--experts", "7", "--layer", "conv1_1"]
    )
    assert bad.exit_code != 0 and "cannot be split into 7 experts" in bad.output
