"""`sparsesim systolic CFG TOPOLOGY`: SCALE-Sim's files in, per-layer table / JSON / CSV out."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sparsesim.cli import main

BENCHMARKS = Path(__file__).parents[2] / "benchmarks" / "scalesim"
WS_CFG = str(Path(__file__).parents[2] / "hwconfigs" / "systolic_32x32_ws.cfg")
RESNET18 = str(BENCHMARKS / "resnet18.csv")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_systolic_prints_every_layer_and_writes_json_and_csv(tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    result = invoke("systolic", WS_CFG, RESNET18, "--json", out_json, "--csv", out_csv)
    assert result.exit_code == 0, result.output
    assert "systolic 32x32 WS" in result.output
    assert "layer4.1.conv2" in result.output and "TOTAL" in result.output
    data = json.loads(out_json.read_text())
    assert data["schema_version"] == 1 and len(data["layers"]) == 21
    assert data["totals"]["compute_cycles"] == sum(layer["compute_cycles"] for layer in data["layers"])
    assert data["layers"][0]["layer"] == "conv1" and data["layers"][0]["compute_cycles"] == 126379
    assert len(out_csv.read_text().splitlines()) == 22


def test_systolic_layer_option_selects_layers():
    result = invoke("systolic", WS_CFG, RESNET18, "--layer", "fc")
    assert result.exit_code == 0
    assert "fc " in result.output and "conv1" not in result.output
    result = invoke("systolic", WS_CFG, RESNET18, "--layer", "conv99")
    assert result.exit_code == 2 and "no layer named conv99" in result.output


def test_systolic_bad_files_exit_2_with_the_file_and_key(tmp_path):
    bad_cfg = tmp_path / "bad.cfg"
    bad_cfg.write_text(
        "[architecture_presets]\nArrayHeight: 32\nArrayWidth: 32\nIfmapSramSzkB: 64\n"
        "FilterSramSzkB: 64\nOfmapSramSzkB: 64\nDataflow: rs\n"
    )
    result = invoke("systolic", bad_cfg, RESNET18)
    assert result.exit_code == 2
    assert "bad.cfg" in result.output and "architecture_presets.Dataflow" in result.output
    bad_topology = tmp_path / "bad.csv"
    bad_topology.write_text("header\nconv, 8, 8, 3, 3, 2, x, 1,\n")
    result = invoke("systolic", WS_CFG, bad_topology)
    assert result.exit_code == 2 and "bad.csv:2: column 'Num Filter'" in result.output


def test_systolic_reads_scalesim_gemm_topologies(tmp_path):
    gemm = tmp_path / "gemm.csv"
    gemm.write_text("Layer, M, N, K,\nqkv, 20, 36, 16,\n")
    out_json = tmp_path / "g.json"
    result = invoke("systolic", WS_CFG, gemm, "--gemm", "--json", out_json)
    assert result.exit_code == 0, result.output
    (layer,) = json.loads(out_json.read_text())["layers"]
    assert layer["layer"] == "qkv" and layer["macs"] == 20 * 36 * 16
