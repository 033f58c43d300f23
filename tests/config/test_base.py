"""A hardware config that extends another (``base: other.yaml``): deep merge, then the usual validation;
every error names the file loaded, the dotted path and, when it lies there, the base file."""

from __future__ import annotations

import dataclasses
import os

import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.config import explain_hwconfig, load_hwconfig
from sparsesim.config.hwconfig import MAX_HWCONFIG_BASES
from sparsesim.errors import ConfigError
from tests.conftest import HWCONFIG_DIR, TRACE_DIR

BASE = """\
name: small
clock_hz: 1e9
dram: {bandwidth_bytes_per_cycle: 16, latency_cycles: 50}
pe_array:
  rows: 2
  columns: 4
  pe:
    activation_lanes: 1
    mechanism: {kind: relu_early_termination, mode: exact, skip_zero_activations: false}
"""


def write(folder, name: str, text: str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def refused(path) -> ConfigError:
    """The ConfigError of ``load_hwconfig(path)``; the CLI exits 2 with one clear message, no traceback."""
    with pytest.raises(ConfigError) as error:
        load_hwconfig(path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error: ")
    return error.value


def test_the_extending_file_is_merged_over_its_base_block_by_block(tmp_path):
    write(tmp_path, "small.yaml", BASE)
    child = write(
        tmp_path,
        "child.yaml",
        "base: small.yaml\nname: child\ndram: {latency_cycles: 80}\n"
        "pe_array: {pe: {mechanism: {mode: predictive}}}\n",
    )
    base, hw = load_hwconfig(tmp_path / "small.yaml"), load_hwconfig(child)
    assert hw.name == "child"
    assert hw.clock_hz == 1e9  # read from the base, in the base's exponent notation
    assert (hw.dram.latency_cycles, hw.dram.bandwidth_bytes_per_cycle) == (80, 16)  # merged key by key
    assert (hw.pe_array.rows, hw.pe_array.pe.activation_lanes) == (2, 1)
    mechanism = hw.pe_array.pe.mechanism  # the same kind: its block merged key by key too
    assert (mechanism.kind, mechanism.mode, mechanism.skip_zero_activations) == (
        "relu_early_termination",
        "predictive",
        False,
    )
    pe = dataclasses.replace(
        base.pe_array.pe, mechanism=dataclasses.replace(base.pe_array.pe.mechanism, mode="predictive")
    )
    expected = dataclasses.replace(
        base,
        name="child",
        dram=dataclasses.replace(base.dram, latency_cycles=80),
        pe_array=dataclasses.replace(base.pe_array, pe=pe),
    )
    assert hw == expected


def test_a_block_of_another_kind_replaces_the_bases_whole(tmp_path):
    write(tmp_path, "small.yaml", BASE)
    other = "base: small.yaml\nname: other\npe_array: {pe: {mechanism: {kind: zero_gating}}}\n"
    hw = load_hwconfig(write(tmp_path, "other.yaml", other))
    written_out = BASE.replace("name: small", "name: other").replace(
        "{kind: relu_early_termination, mode: exact, skip_zero_activations: false}", "{kind: zero_gating}"
    )
    assert hw == load_hwconfig(write(tmp_path, "written_out.yaml", written_out))


def test_files_parsed_once_per_process_load_the_same_whatever_was_loaded_before(tmp_path):
    """A file's YAML is parsed once per process and each load gets its own copy: merging the files that
    extend a base never changes what the next load of the base, or of another file extending it, reads."""
    from sparsesim.config.hwconfig import _parsed_yaml

    write(tmp_path, "small.yaml", BASE)
    extending = {
        "gating.yaml": "base: small.yaml\nname: gating\npe_array: {pe: {mechanism: {kind: zero_gating}}}\n",
        "w.yaml": "base: small.yaml\nname: wide\npe_array: {columns: 8, pe: {mechanism: {threshold: 1}}}\n",
        "small_again.yaml": "base: small.yaml\n",
    }
    for name, text in extending.items():
        write(tmp_path, name, text)
    order = ["small.yaml", *extending, "small.yaml", *reversed(extending), "small.yaml"]
    loaded = [repr(load_hwconfig(tmp_path / name)) for name in order]
    for name, config in zip(order, loaded, strict=True):
        _parsed_yaml.cache_clear()
        assert config == repr(load_hwconfig(tmp_path / name)), name  # as a fresh process loads it


def test_a_value_replaces_a_block_and_an_empty_block_keeps_the_base(tmp_path):
    write(tmp_path, "small.yaml", BASE)
    kept = load_hwconfig(write(tmp_path, "kept.yaml", "base: small.yaml\nname: kept\npe_array:\n"))
    assert kept.pe_array == load_hwconfig(tmp_path / "small.yaml").pe_array
    replaced = refused(write(tmp_path, "bad.yaml", "base: small.yaml\nname: bad\npe_array: 4\n"))
    assert "pe_array: expected a mapping of pe_array's parameters, got the integer 4" in str(replaced)
    assert "base file" not in str(replaced)  # the wrong value is the extending file's


def test_a_chain_of_bases_resolves_each_path_relative_to_its_own_file(tmp_path):
    write(tmp_path, "machines/small.yaml", BASE)
    write(
        tmp_path,
        "machines/gated.yaml",
        "base: small.yaml\nname: gated\npe_array: {pe: {mechanism: {kind: zero_gating}}}\n",
    )
    hw = load_hwconfig(
        write(tmp_path, "study/slow.yaml", "base: ../machines/gated.yaml\nname: slow\nclock_hz: 5e8\n")
    )
    assert (hw.name, hw.clock_hz, hw.pe_array.pe.mechanism.kind, hw.pe_array.columns) == (
        "slow",
        5e8,
        "zero_gating",
        4,
    )


def test_errors_name_the_loaded_file_the_path_and_the_base_file_that_set_the_value(tmp_path):
    write(tmp_path, "small.yaml", BASE.replace("rows: 2", "rows: 0").replace("clock_hz: 1e9", "clok_hz: 1e9"))
    child = write(tmp_path, "child.yaml", "base: small.yaml\nname: child\npe_array: {columns: 0}\n")
    error = refused(child)
    assert error.source == str(child)
    where = f"(in base file {tmp_path / 'small.yaml'})"
    problems = dict(error.problems)
    assert problems["pe_array.rows"] == f"must be >= 1, got 0 {where}"
    assert problems["clok_hz"].startswith("unknown key; did you mean 'clock_hz'?")
    assert problems["clok_hz"].endswith(where)
    assert problems["pe_array.columns"] == "must be >= 1, got 0"  # the extending file's own value


def test_a_bad_base_file_is_named_with_its_own_line_and_column(tmp_path):
    write(tmp_path, "small.yaml", "name: small\npe_array: [\n")
    message = str(refused(write(tmp_path, "child.yaml", "base: small.yaml\nname: child\n")))
    assert message.startswith(f"{tmp_path / 'child.yaml'}: invalid YAML at line 3")
    assert message.endswith(f"(in base file {tmp_path / 'small.yaml'})")


def test_a_base_file_must_hold_a_mapping(tmp_path):
    write(tmp_path, "list.yaml", "- 1\n- 2\n")
    write(tmp_path, "empty.yaml", "# nothing\n")
    message = str(refused(write(tmp_path, "a.yaml", "base: list.yaml\nname: a\n")))
    assert "the top level must be a mapping of parameter names to values, got a list" in message
    assert "in base file" in message
    assert "the file is empty" in str(refused(write(tmp_path, "b.yaml", "base: empty.yaml\nname: b\n")))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", "base: must be the path of a config file (a string), got the integer 3"),
        ("[small.yaml]", "base: must be the path of a config file (a string), got a list"),
        ("{file: small.yaml}", "base: must be the path of a config file (a string), got a mapping"),
        ("null", "base: must be the path of a config file (a string), got null"),
        ("''", "base: must be the path of a config file, got an empty string"),
        ('"small\\0.yaml"', "base: must be the path of a config file, got a string with a NUL character"),
        (
            "missing.yaml",
            "base: {dir}/missing.yaml: cannot read the hardware config: No such file or directory",
        ),
        ("folder", "base: {dir}/folder: the hardware config must be a regular file, but this is a directory"),
        ("child.yaml", "base: 'child.yaml' closes a cycle of base files:"),
    ],
)
def test_a_hostile_base_is_refused_with_one_clear_message(tmp_path, value, expected):
    (tmp_path / "folder").mkdir()
    write(tmp_path, "small.yaml", BASE)
    message = str(refused(write(tmp_path, "child.yaml", f"base: {value}\nname: child\n")))
    assert message.startswith(f"{tmp_path / 'child.yaml'}: {expected.format(dir=tmp_path)}"), message


def test_a_cycle_through_several_files_is_shown_and_named_where_it_closes(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "base: sub/../a.yaml\nname: b\n")  # the same file, spelt otherwise
    message = str(refused(tmp_path / "a.yaml"))
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert (
        f"base: 'sub/../a.yaml' closes a cycle of base files: {a} -> {b} -> {tmp_path}/sub/../a.yaml"
        in message
    )
    assert message.endswith(f"(in base file {b})")


def test_a_file_extending_itself_is_a_cycle(tmp_path):
    message = str(refused(write(tmp_path, "self.yaml", "base: self.yaml\nname: self\n")))
    assert "closes a cycle of base files" in message


def test_chains_are_at_most_the_limit_deep(tmp_path):
    write(tmp_path, f"c{MAX_HWCONFIG_BASES}.yaml", BASE)
    for i in range(MAX_HWCONFIG_BASES):
        write(tmp_path, f"c{i}.yaml", f"base: c{i + 1}.yaml\nname: c{i}\n")
    assert load_hwconfig(tmp_path / "c0.yaml").name == "c0"  # the loaded file and MAX bases: fine
    write(tmp_path, "deeper.yaml", "base: c0.yaml\nname: deeper\n")
    message = str(refused(tmp_path / "deeper.yaml"))
    assert f"base: more than {MAX_HWCONFIG_BASES} base files in a chain: " in message


def test_a_symlinked_base_is_followed(tmp_path):
    write(tmp_path, "small.yaml", BASE)
    os.symlink(tmp_path / "small.yaml", tmp_path / "link.yaml")
    assert load_hwconfig(write(tmp_path, "child.yaml", "base: link.yaml\nname: child\n")).pe_array.rows == 2


def test_base_is_documented_in_validate_explain():
    assert "`base: OTHER.yaml` at the top of a file extends OTHER" in explain_hwconfig()


def test_shipped_configs_that_extend_others_run_validate_and_sweep(tmp_path):
    runner = CliRunner()
    extending = [p for p in sorted(HWCONFIG_DIR.glob("*.yaml")) if p.read_text().count("\nbase: ")]
    assert any(p.name == "cnvlutin_pruning.yaml" for p in extending)
    for path in extending:
        result = runner.invoke(main, ["validate", str(path)])
        assert result.exit_code == 0 and f"valid hardware config '{path.stem}'" in result.output, (
            result.output
        )
    pruning = str(HWCONFIG_DIR / "cnvlutin_pruning.yaml")
    ran = runner.invoke(main, ["run", pruning, str(TRACE_DIR), "--layer", "conv5_3"])
    assert ran.exit_code == 0, ran.output
    swept = runner.invoke(
        main,
        [
            "sweep",
            pruning,
            str(TRACE_DIR),
            "--layer",
            "conv5_3",
            "--set",
            "pe_array.pe.activation_threshold=0,2",
        ],
    )
    assert swept.exit_code == 0, swept.output
