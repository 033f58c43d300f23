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
        "conv5_3",  # a small layer: this checks the command's plumbing
        "--baseline",
        DADIANNAO,
        "--json",
        out_json,
        "--csv",
        out_csv,
    )
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output and "pe_array" in result.output and "conv5_3" in result.output
    data = json.loads(out_json.read_text())
    assert data["comparison"]["baseline"] == "dadiannao"
    assert data["comparison"]["layers"]["conv5_3"]["speedup"] > 1
    assert out_csv.read_text().splitlines()[0].startswith("layer,cycles")


def test_info_lists_layers_densities_and_provenance():
    result = invoke("info", TRACE_DIR)
    assert result.exit_code == 0
    assert "conv5_3" in result.output and "provenance" in result.output and "CC BY" in result.output


def test_validate_and_explain():
    assert invoke("validate", CNVLUTIN).exit_code == 0
    result = invoke("validate", "--explain")
    assert result.exit_code == 0 and "pe_array.pe.activation_lanes" in result.output


def test_validate_checks_a_scalesim_cfg_too(tmp_path):
    result = invoke("validate", HWCONFIG_DIR / "systolic_32x32_ws.cfg")
    assert result.exit_code == 0 and '"dataflow": "ws"' in result.output
    bad = tmp_path / "bad.cfg"
    bad.write_text("[architecture_presets]\nArrayHeigth: 4\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2 and "did you mean 'ArrayHeight'?" in result.output


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


# --- output paths (issue 9, item 7) ---------------------------------------------------------------------


def test_an_unwritable_output_is_refused_before_any_simulation(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(
        main, ["run", DADIANNAO, str(TRACE_DIR), "--layer", "conv5_3", "--json", str(blocker / "r.json")]
    )
    assert result.exit_code == 2
    assert "cannot write the result" in result.output and "is not a directory" in result.output
    assert "conv5_3" not in result.output  # refused before the run, not after it


def test_an_output_that_is_a_directory_is_refused_before_any_simulation(tmp_path):
    result = CliRunner().invoke(main, ["run", DADIANNAO, str(TRACE_DIR), "--csv", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_two_outputs_are_written_all_or_none(tmp_path, monkeypatch):
    from sparsesim import files

    good, bad = tmp_path / "r.json", tmp_path / "r.csv"
    real_write = files._write_temporary

    def failing_write(target, payload):  # the disk fills up while the second result is written
        if target.name == "r.csv":
            raise OSError(28, "No space left on device")
        return real_write(target, payload)

    monkeypatch.setattr(files, "_write_temporary", failing_write)
    result = invoke("run", DADIANNAO, TRACE_DIR, "--layer", "conv5_3", "--json", good, "--csv", bad)
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither written, no temporary left


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    import fcntl

    from sparsesim.files import write_atomic

    target = tmp_path / "r.json"
    abandoned = tmp_path / ".r.json.k1ll3d00.tmp"
    abandoned.write_text('{"half": ')
    live = tmp_path / ".r.json.writing0.tmp"
    live.write_text("being written")
    with open(live) as handle:  # another writer at work holds its lock: its file must stay
        fcntl.flock(handle, fcntl.LOCK_EX)
        write_atomic(target, "{}\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".r.json.writing0.tmp", "r.json"]
    assert target.read_text() == "{}\n"


def test_an_old_config_validates_with_one_warning_line_saying_how_to_migrate(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("name: old\npe_array:\n  pe:\n    sparsity: zero_skip_activations\n")
    result = subprocess.run(
        [sys.executable, "-m", "sparsesim", "validate", str(old)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stderr == (
        f"warning: {old}: pe_array.pe.sparsity, early_termination and the mechanism's parameters are now one "
        "block: replace them under pe_array.pe with `{mechanism: {kind: zero_skip_activations}}`\n"
    )
