"""SCALE-Sim .cfg files: read unchanged, every bad entry reported in one ConfigError naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsesim.errors import ConfigError
from sparsesim.systolic import load_scalesim_config, parse_scalesim_config

HWCONFIGS = Path(__file__).parents[2] / "hwconfigs"

# scale-sim-v3's own configs/scale.cfg: no [layout] or [sparsity] section, colon separators.
SCALESIM_REPO_CFG = """[general]
run_name = scale_example_run_32x32_ws

[architecture_presets]
ArrayHeight:    32
ArrayWidth:     32
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : os
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def test_scalesim_repo_config_is_read_unchanged():
    config = parse_scalesim_config(SCALESIM_REPO_CFG, "scale.cfg")
    assert (config.array_rows, config.array_cols, config.dataflow) == (32, 32, "os")
    assert (config.ifmap_sram_bytes, config.filter_sram_bytes, config.ofmap_sram_bytes) == (65536,) * 3
    assert config.run_name == "scale_example_run_32x32_ws"


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_shipped_systolic_templates_load(dataflow):
    config = load_scalesim_config(HWCONFIGS / f"systolic_32x32_{dataflow}.cfg")
    assert (config.array_rows, config.array_cols, config.dataflow) == (32, 32, dataflow)
    assert config.ofmap_sram_bytes == 2048 * 1024


def test_keys_are_case_insensitive_and_equals_signs_work():
    text = (
        "[architecture_presets]\narrayheight = 4\nARRAYWIDTH = 5\nifmapsramszkb=1\nFilterSramSzkB=2\n"
        "OfmapSramSzkB=3\nDataflow=ws\n"
    )
    config = parse_scalesim_config(text)
    assert (config.array_rows, config.array_cols, config.filter_sram_bytes) == (4, 5, 2048)


def test_every_problem_is_reported_at_once_with_section_and_key():
    text = (
        SCALESIM_REPO_CFG.replace("ArrayHeight:    32", "ArrayHeight: 0")
        .replace("Dataflow : os", "Dataflow : WS")
        .replace("Bandwidth : 10", "Bandwidth : 10, x")
        .replace("MemoryBanks:   1", "MemoryBanks: 1\nArrayDepth: 3")
        + "[extras]\nfoo = 1\n"
    )
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(text, "bad.cfg")
    message = str(error.value)
    assert message.startswith("bad.cfg: 5 problem(s)")
    assert dict(error.value.problems) == {
        "architecture_presets.ArrayHeight": "must be >= 1, got 0",
        "architecture_presets.Dataflow": "must be one of ws, os, is (lower case), got 'WS'",
        "architecture_presets.Bandwidth": "must be comma-separated integers >= 1, got '10, x'",
        "architecture_presets.arraydepth": dict(error.value.problems)["architecture_presets.arraydepth"],
        "extras": dict(error.value.problems)["extras"],
    }
    assert "unknown key" in message and "unknown section" in message


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            ("InterfaceBandwidth: CALC", "InterfaceBandwidth: USER"),
            "run_presets.InterfaceBandwidth",
            "USER bandwidth mode is not supported",
        ),
        (
            ("InterfaceBandwidth: CALC", "InterfaceBandwidth: calc"),
            "run_presets.InterfaceBandwidth",
            "must be CALC or USER",
        ),
        (
            ("UseRamulatorTrace: False", "UseRamulatorTrace: True"),
            "run_presets.UseRamulatorTrace",
            "must be False",
        ),
        (
            ("UseRamulatorTrace: False", "UseRamulatorTrace: maybe"),
            "run_presets.UseRamulatorTrace",
            "must be True or False",
        ),
        (
            ("IfmapSramSzkB:   64", "IfmapSramSzkB: 64.5"),
            "architecture_presets.IfmapSramSzkB",
            "must be an integer, got '64.5'",
        ),
        (
            ("FilterOffset:   10000000", "FilterOffset: -1"),
            "architecture_presets.FilterOffset",
            "must be >= 0",
        ),
        (("OfmapSramSzkB:   64\n", ""), "architecture_presets.OfmapSramSzkB", "is required"),
    ],
)
def test_bad_entries_raise_config_error_naming_the_key(change, path, message):
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(SCALESIM_REPO_CFG.replace(*change), "x.cfg")
    assert [p for p, _ in error.value.problems] == [path]
    assert message in error.value.problems[0][1]


def test_sparsity_support_is_rejected():
    with pytest.raises(ConfigError, match="sparsity.SparsitySupport: must be False"):
        parse_scalesim_config(SCALESIM_REPO_CFG + "[sparsity]\nSparsitySupport : true\n")


def test_syntax_errors_and_missing_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)x.cfg: .*not a valid .cfg \(INI\) file"):
        parse_scalesim_config("ArrayHeight: 4\n", "x.cfg")
    with pytest.raises(ConfigError, match=r"(?s)x.cfg: .*not a valid .cfg"):
        parse_scalesim_config("[general]\nrun_name = a\nrun_name = b\n", "x.cfg")
    with pytest.raises(ConfigError, match="(?s)nope.cfg: .*cannot read the config"):
        load_scalesim_config(tmp_path / "nope.cfg")
