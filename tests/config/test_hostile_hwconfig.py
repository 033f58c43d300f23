"""Hostile hardware config files: each class a fuzzing run found is refused with one clear ConfigError, in
bounded time and memory, before anything is simulated (issue 9, items 1, 2 and 6)."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.config import HwConfig, load_hwconfig, mechanism_kinds, parse_hwconfig
from sparsesim.config.hwconfig import MAX_HWCONFIG_BYTES, MAX_HWCONFIG_DEPTH, _iter_params
from sparsesim.errors import ConfigError
from tests.conftest import HWCONFIG_DIR, TRACE_DIR

# Parameters that are values compared with data (thresholds), not sizes, counts, rates or energies: any
# finite number is meaningful, so they have no upper bound.
UNBOUNDED_THRESHOLDS = {
    "pe_array.pe.activation_threshold",
    "pe_array.pe.mechanism[kind=relu_early_termination].threshold",
    "pe_array.pe.mechanism[kind=msb_first].threshold",
    "temporal.key_frame_threshold",
}


def write(tmp_path, text: str, name: str = "hostile.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path) -> str:
    """The message of the ConfigError ``load_hwconfig(path)`` raises; the CLI exits 2 with no traceback."""
    with pytest.raises(ConfigError) as error:
        load_hwconfig(path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") or "\nError: " in result.output  # ours, or click's usage error
    return str(error.value)


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "])
def test_nesting_deeper_than_the_limit_is_a_yaml_error_not_a_recursion_error(tmp_path, opening):
    if opening == "- ":  # block sequences nest by indentation
        text = "name: x\nfoo:\n" + "".join("  " * i + "- \n" for i in range(500))
    else:
        text = "name: x\nfoo: " + opening * 500 + "1" + ("]" if opening == "[" else "}") * 500
    assert f"nested deeper than {MAX_HWCONFIG_DEPTH} levels" in refused(write(tmp_path, text))


def test_nesting_within_the_limit_is_read_and_reported_as_the_wrong_type(tmp_path):
    text = "name: x\npe_array:\n  rows: " + "[" * 20 + "1" + "]" * 20
    assert "pe_array.rows: expected an integer, got a list" in refused(write(tmp_path, text))


def test_an_integer_too_long_for_python_is_a_yaml_error(tmp_path):
    message = refused(write(tmp_path, "name: x\npe_array:\n  rows: " + "9" * 5000 + "\n"))
    assert "an integer of 5000 digits is too long" in message


def test_a_huge_integer_is_refused_by_its_bound_and_named_by_its_length(tmp_path):
    message = refused(write(tmp_path, "name: x\npe_array:\n  columns: " + "9" * 40 + "\n"))
    assert "pe_array.columns: must be <= 1024, got an integer of 40 digits" in message


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    comments = ("# " + "c" * 77 + "\n") * (MAX_HWCONFIG_BYTES // 80 + 1)
    message = refused(write(tmp_path, comments + "name: x\n"))
    assert f"at most {MAX_HWCONFIG_BYTES:,} are accepted" in message


def test_thousands_of_unknown_keys_are_counted_and_the_first_fifty_shown(tmp_path):
    text = "name: x\n" + "".join(f"unknown_{i}: {i}\n" for i in range(5000))
    with pytest.raises(ConfigError) as error:
        load_hwconfig(write(tmp_path, text))
    assert len(error.value.problems) == 5000
    lines = str(error.value).splitlines()
    assert len(lines) == 1 + ConfigError.SHOWN_PROBLEMS + 1 and lines[-1] == "  ... and 4,950 more"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert "must be a regular file, but this is a FIFO" in refused(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_link_to_an_endless_device_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "config.yaml"
    link.symlink_to("/dev/zero")
    assert "must be a regular file, but this is a character device" in refused(link)


def test_a_directory_is_refused(tmp_path):
    assert "must be a regular file, but this is a directory" in refused(tmp_path)


# --- every size, count, rate and energy has an upper bound ------------------------------------------------


def numeric_parameters():
    """(path, field) of every numeric parameter; a mechanism's as ``pe_array.pe.mechanism[kind=K].name``."""
    params = list(_iter_params(HwConfig))
    for kind, cls in mechanism_kinds().items():
        params += _iter_params(cls, f"pe_array.pe.mechanism[kind={kind}].")
    return [
        (path, f)
        for path, f, kind in params
        if kind in ("int", "float", "float?") and path not in UNBOUNDED_THRESHOLDS
    ]


def tree_setting(path: str, value) -> dict:
    """A config mapping setting ``path`` (a mechanism's parameter selects its kind) to ``value``."""
    tree: dict = {"name": "x"}
    node = tree
    *blocks, key = path.split(".")
    for block in blocks:
        name, _, kind = block.partition("[kind=")
        node = node.setdefault(name, {})
        if kind:
            node["kind"] = kind.rstrip("]")
    node[key] = value
    return tree


def test_every_size_count_rate_and_energy_declares_an_upper_bound():
    unbounded = [path for path, f in numeric_parameters() if f.metadata.get("le") is None]
    assert unbounded == []


@pytest.mark.parametrize("path", [path for path, _ in numeric_parameters()])
def test_a_value_past_the_upper_bound_is_refused_naming_the_bound(path):
    f = dict(numeric_parameters())[path]
    bound = f.metadata["le"]
    tree = tree_setting(path, int(bound) * 2 + 1 if float(bound).is_integer() else bound * 2)
    with pytest.raises(ConfigError) as error:
        parse_hwconfig(tree)
    named = re.sub(r"\[kind=[a-z_]+\]", "", path)
    assert any(p == named and m.startswith("must be <= ") for p, m in error.value.problems), error.value


def test_more_than_65536_pes_are_refused_even_within_each_bound():
    with pytest.raises(ConfigError, match=r"rows \* columns must be <= 65536, got 512 \* 256"):
        parse_hwconfig({"name": "x", "pe_array": {"rows": 512, "columns": 256}})
    assert parse_hwconfig({"name": "x", "pe_array": {"rows": 256, "columns": 256}}).pe_array.rows == 256


def test_a_python_built_config_is_held_to_the_same_bounds():
    cfg = parse_hwconfig({"name": "x"})
    with pytest.raises(ConfigError, match=r"dram\.burst_bytes: must be <= 2\*\*20"):
        dataclasses.replace(cfg, dram=dataclasses.replace(cfg.dram, burst_bytes=2**21))


def test_the_bounds_are_documented_in_validate_explain():
    text = CliRunner().invoke(main, ["validate", "--explain"]).output
    assert "pe_array.columns  (int, default: 16, >= 1, <= 1024)" in text
    assert "global_buffer.capacity_bytes  (int, default: 131072, >= 1, <= 2**40)" in text
    assert "energy_pj.pe_array.compute  (float, default: 1.0, >= 0, <= 1e9)" in text


# --- sweep values are read as config values are -------------------------------------------------------


@pytest.mark.parametrize(
    "setting, message",
    [
        ("pe_array.rows=" + "9" * 5000, "an integer of 5000 digits is too long"),
        ("pe_array.rows=" + "[" * 500, "nested deeper than"),
        ("pe_array.rows=4096", "pe_array.rows: must be <= 1024, got 4096"),
    ],
)
def test_a_hostile_sweep_value_is_refused_before_any_simulation(setting, message):
    result = CliRunner().invoke(
        main, ["sweep", str(HWCONFIG_DIR / "dadiannao.yaml"), str(TRACE_DIR), "--set", setting]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
