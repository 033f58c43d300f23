"""The command line as a new user meets it: help texts, the main run, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from sparsesim.cli import main
from tests.conftest import HWCONFIG_DIR, TRACE_DIR

CNVLUTIN = str(HWCONFIG_DIR / "cnvlutin.yaml")
DADIANNAO = str(HWCONFIG_DIR / "dadiannao.yaml")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_command_has_help_for_a_newcomer():
    for command in ([], ["run"], ["info"], ["validate"], ["make-trace"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_run_with_baseline_prints_components_speedup_and_writes_json_and_csv(tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    result = invoke(
        "run",
        CNVLUTIN,
        TRACE_DIR,
        "--layer",
        "conv2_2",
        "--baseline",
        DADIANNAO,
        "--json",
        out_json,
        "--csv",
        out_csv,
    )
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output and "pe_array" in result.output and "conv2_2" in result.output
    data = json.loads(out_json.read_text())
    assert data["comparison"]["baseline"] == "dadiannao"
    assert data["comparison"]["layers"]["conv2_2"]["speedup"] > 1
    assert out_csv.read_text().splitlines()[0].startswith("layer,cycles")


def test_info_lists_layers_densities_and_provenance():
    result = invoke("info", TRACE_DIR)
    assert result.exit_code == 0
    assert "conv5_3" in result.output and "provenance" in result.output and "CC BY" in result.output


def test_validate_and_explain():
    assert invoke("validate", CNVLUTIN).exit_code == 0
    result = invoke("validate", "--explain")
    assert result.exit_code == 0 and "pe_array.pe.activation_lanes" in result.output


def test_bad_inputs_give_one_clear_message_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npe_array: {rows: 0}\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "pe_array.rows" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["run", CNVLUTIN, str(tmp_path / "no-such-trace")])
    assert result.exit_code == 2 and "no-such-trace" in result.output
    result = CliRunner().invoke(main, ["run", CNVLUTIN, str(TRACE_DIR), "--layer", "conv9_9"])
    assert result.exit_code == 2 and "conv9_9" in result.output


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "sparsesim", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "sparsesim" in result.stdout


def test_compare_tables_every_config_against_the_baseline(tmp_path):
    out_json = tmp_path / "c.json"
    result = invoke("compare", TRACE_DIR, DADIANNAO, CNVLUTIN, "--layer", "conv3_1", "--json", out_json)
    assert result.exit_code == 0, result.output
    assert "speed-up per layer" in result.output and "eq. 3.4" in result.output
    data = json.loads(out_json.read_text())
    assert data["baseline"] == "dadiannao"
    by_name = {config["hwconfig"]: config for config in data["configs"]}
    assert by_name["dadiannao"]["totals"]["speedup"] == 1.0
    assert by_name["cnvlutin"]["totals"]["speedup"] > 1.0
    assert by_name["cnvlutin"]["layers"][0]["energy_saving"] > 0
