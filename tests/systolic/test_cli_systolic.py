"""`sparsesim systolic CFG TOPOLOGY`: SCALE-Sim's files in, per-layer table / JSON / CSV out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
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


# -- Hostile inputs: exit status 2 and a short message naming the file and the line or key, no traceback --

HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
)
COLUMNS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter")
COLUMNS += ("Strides",)


def cfg_text(**values):
    entries = {"ArrayHeight": 32, "ArrayWidth": 32, "IfmapSramSzkB": 64, "FilterSramSzkB": 64}
    entries |= {"OfmapSramSzkB": 64, "Dataflow": "ws"} | values
    return "[architecture_presets]\n" + "".join(f"{key}: {value}\n" for key, value in entries.items())


def refused(*args):
    """Run the command; check it exits with 2 and a short message without a traceback; return it."""
    result = invoke("systolic", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error: ")
    assert len(result.output.splitlines()) <= 3 and len(result.output) < 600
    return result.output


@pytest.mark.parametrize("column", range(7))
def test_huge_topology_numbers_in_any_column_exit_2(tmp_path, column):
    values = ["8", "8", "3", "3", "2", "4", "1"]
    values[column] = str(10**19)
    topology = tmp_path / "net.csv"
    topology.write_text(HEADER + "ok, 8, 8, 3, 3, 2, 4, 1,\nbig, " + ", ".join(values) + ",\n")
    output = refused(WS_CFG, topology)
    assert f"net.csv:3: column {COLUMNS[column]!r} must be at most 1,048,576" in output


@pytest.mark.parametrize(
    "key", ["ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB"]
)
@pytest.mark.parametrize(
    "value", ["100000000000", "1" + "0" * 19, "9" * 5000], ids=["1e11", "1e19", "5000 digits"]
)
def test_huge_cfg_numbers_exit_2(tmp_path, key, value):
    cfg = tmp_path / "x.cfg"
    cfg.write_text(cfg_text(**{key: value}))
    output = refused(cfg, RESNET18)
    assert "x.cfg" in output and f"architecture_presets.{key}: must be at most" in output


def test_depthwise_rows_that_would_make_too_many_layers_exit_2(tmp_path):
    topology = tmp_path / "dw.csv"
    topology.write_text(HEADER + "DPconv, 8, 8, 3, 3, 100000000, 1, 1,\n")
    assert "dw.csv:2: column 'Channels' must be at most 1,048,576" in refused(WS_CFG, topology)
    topology.write_text(HEADER + "DPconv, 8, 8, 3, 3, 1000000, 1, 1,\n")
    assert "dw.csv:2: too many layers: its 1,000,000 channels make" in refused(WS_CFG, topology)


def test_5000_digit_integers_exit_2(tmp_path):
    topology, cfg = tmp_path / "net.csv", tmp_path / "x.cfg"
    topology.write_text(HEADER + "big, 8, 8, 3, 3, " + "9" * 5000 + ", 4, 1,\n")
    assert "got a 5,000-digit number" in refused(WS_CFG, topology)
    cfg.write_text(cfg_text(ArrayHeight="9" * 5000))
    assert "architecture_presets.ArrayHeight: must be at most 4,096, got a 5,000-digit number" in refused(
        cfg, RESNET18
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_exit_2_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "must be a regular file, but this is a FIFO" in refused(fifo, RESNET18)
    assert "must be a regular file, but this is a FIFO" in refused(WS_CFG, fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_links_to_devices_exit_2(tmp_path):
    link = tmp_path / "zero"
    link.symlink_to("/dev/zero")
    assert "zero" in refused(link, RESNET18) and "character device" in refused(WS_CFG, link)


def test_oversized_files_exit_2(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as handle:  # sparse: no disk space used
        handle.truncate(1 << 30)
    assert "the config is 1,073,741,824 bytes; at most 1,048,576" in refused(big, RESNET18)
    assert "the topology is 1,073,741,824 bytes; at most 16,777,216" in refused(WS_CFG, big)


def test_work_beyond_the_budget_exits_2_before_running(tmp_path):
    gemm = tmp_path / "gemm.csv"
    gemm.write_text("Layer, M, N, K,\nhuge, 1000000, 1000000, 1000000,\n")
    output = refused(WS_CFG, gemm, "--gemm")
    assert "gemm.csv:2: layer 'huge': its 1,000,000,000,000 distinct ifmap words overflow" in output
    cfg = tmp_path / "small_ofmap.cfg"
    cfg.write_text(cfg_text(IfmapSramSzkB=32768, OfmapSramSzkB=1))
    gemm.write_text("Layer, M, N, K,\nwide, 1048576, 1048576, 1,\n")
    output = refused(cfg, gemm, "--gemm")
    assert "gemm.csv:2: layer 'wide': draining its outputs through the 1 KiB ofmap SRAM" in output


def test_unwritable_outputs_exit_2_before_running(tmp_path):
    (tmp_path / "file").write_text("")
    output = refused(WS_CFG, RESNET18, "--json", tmp_path / "file" / "r.json")
    assert "file is not a directory" in output and "conv1" not in output
