"""SCALE-Sim .cfg files: read unchanged, every bad entry reported in one ConfigError naming file and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsesim.errors import ConfigError
from sparsesim.systolic import SystolicArrayConfig, load_scalesim_config, parse_scalesim_config
from sparsesim.systolic.config import (
    MAX_ARRAY_SIDE,
    MAX_BANKS,
    MAX_CONFIG_BYTES,
    MAX_OFFSET,
    MAX_REQUEST_BUFFER,
    MAX_SRAM_KIB,
    MAX_WORDS_PER_CYCLE,
    explain_scalesim_config,
)

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
        "architecture_presets.Dataflow": "must be one of ws, os, is; got 'WS' (did you mean 'ws'?)",
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
            "must be one of CALC, USER; got 'calc' (did you mean 'CALC'?)",
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
        (("OfmapSramSzkB:   64\n", ""), "architecture_presets.OfmapSramSzkB", "missing required key"),
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


# -- Limits: every number has a documented upper bound; hostile files are refused in one short line -------

# (section, key, line of SCALESIM_REPO_CFG to replace or None to append to the section, largest legal value)
NUMERIC_KEYS = [
    ("architecture_presets", "ArrayHeight", "ArrayHeight:    32", MAX_ARRAY_SIDE),
    ("architecture_presets", "ArrayWidth", "ArrayWidth:     32", MAX_ARRAY_SIDE),
    ("architecture_presets", "IfmapSramSzkB", "IfmapSramSzkB:   64", MAX_SRAM_KIB),
    ("architecture_presets", "FilterSramSzkB", "FilterSramSzkB:  64", MAX_SRAM_KIB),
    ("architecture_presets", "OfmapSramSzkB", "OfmapSramSzkB:   64", MAX_SRAM_KIB),
    ("architecture_presets", "IfmapOffset", "IfmapOffset:    0", MAX_OFFSET),
    ("architecture_presets", "FilterOffset", "FilterOffset:   10000000", MAX_OFFSET),
    ("architecture_presets", "OfmapOffset", "OfmapOffset:    20000000", MAX_OFFSET),
    ("architecture_presets", "Bandwidth", "Bandwidth : 10", MAX_WORDS_PER_CYCLE),
    ("architecture_presets", "MemoryBanks", "MemoryBanks:   1", MAX_BANKS),
    ("architecture_presets", "ReadRequestBuffer", "ReadRequestBuffer: 512", MAX_REQUEST_BUFFER),
    ("architecture_presets", "WriteRequestBuffer", "WriteRequestBuffer: 512", MAX_REQUEST_BUFFER),
    ("layout", "IfmapSRAMBankBandwidth", None, MAX_WORDS_PER_CYCLE),
    ("layout", "IfmapSRAMBankNum", None, MAX_BANKS),
    ("layout", "IfmapSRAMBankPort", None, MAX_BANKS),
    ("layout", "FilterSRAMBankBandwidth", None, MAX_WORDS_PER_CYCLE),
    ("layout", "FilterSRAMBankNum", None, MAX_BANKS),
    ("layout", "FilterSRAMBankPort", None, MAX_BANKS),
    ("sparsity", "BlockSize", None, MAX_BANKS),
    ("sparsity", "NonZeroElems", None, MAX_BANKS),
    ("sparsity", "RandomNumberGeneratorSeed", None, 2**64 - 1),
]


def with_value(section, key, line, value):
    if line is not None:
        return SCALESIM_REPO_CFG.replace(line, f"{key}: {value}")
    return SCALESIM_REPO_CFG + f"[{section}]\n{key}: {value}\n"


@pytest.mark.parametrize(("section", "key", "line", "high"), NUMERIC_KEYS, ids=[k[1] for k in NUMERIC_KEYS])
def test_every_number_is_accepted_up_to_its_limit(section, key, line, high):
    parse_scalesim_config(with_value(section, key, line, high), "x.cfg")


@pytest.mark.parametrize("value", ["plus_one", "1" + "0" * 20, "1" + "0" * 5000])
@pytest.mark.parametrize(("section", "key", "line", "high"), NUMERIC_KEYS, ids=[k[1] for k in NUMERIC_KEYS])
def test_every_number_beyond_its_limit_is_refused_naming_section_and_key(section, key, line, high, value):
    text = str(high + 1) if value == "plus_one" else value
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(with_value(section, key, line, text), "x.cfg")
    assert [path for path, _ in error.value.problems] == [f"{section}.{key}"]
    message = error.value.problems[0][1]
    assert ("at most" in message or "comma-separated" in message) and len(message) < 120


def test_array_width_of_1e11_is_refused_before_any_allocation():
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(
            SCALESIM_REPO_CFG.replace("ArrayWidth:     32", "ArrayWidth: 100000000000"), "x.cfg"
        )
    assert error.value.problems == [
        ("architecture_presets.ArrayWidth", "must be at most 4,096, got 100,000,000,000")
    ]


def test_long_texts_lists_and_floods_of_keys_are_refused_briefly():
    text = SCALESIM_REPO_CFG.replace("Bandwidth : 10", "Bandwidth : " + ",".join(["10"] * 5000))
    with pytest.raises(ConfigError, match="Bandwidth: must have at most 4,096 entries, got 5,000"):
        parse_scalesim_config(text)
    with pytest.raises(ConfigError, match="general.run_name: must be at most 256 characters, got 1,000"):
        parse_scalesim_config(SCALESIM_REPO_CFG.replace("scale_example_run_32x32_ws", "r" * 1000))
    flood = SCALESIM_REPO_CFG + "[sparsity]\n" + "".join(f"key{i}: 1\n" for i in range(10_000))
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(flood, "flood.cfg")
    assert len(error.value.problems) == 10_000 and str(error.value).endswith("... and 9,950 more")
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config("x" * 500_000 + "\n", "noise.cfg")  # configparser quotes the whole line
    assert len(str(error.value)) < 400


def test_config_built_directly_is_bounded_too():
    with pytest.raises(ConfigError) as error:
        SystolicArrayConfig(4096, 4097, 1, 2**25, 2**25 + 1, "ws")
    assert [path for path, _ in error.value.problems] == ["array_cols", "ofmap_sram_bytes"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "scale.cfg"
    os.mkfifo(fifo)
    with pytest.raises(
        ConfigError, match=r"(?s)scale.cfg: .*the config must be a regular file, but this is a FIFO"
    ):
        load_scalesim_config(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_load_refuses_a_link_to_a_device(tmp_path):
    link = tmp_path / "scale.cfg"
    link.symlink_to("/dev/zero")
    with pytest.raises(
        ConfigError, match=r"(?s)scale.cfg: .*must be a regular file, but this is a character device"
    ):
        load_scalesim_config(link)


def test_load_refuses_oversized_and_non_utf8_files(tmp_path):
    big = tmp_path / "big.cfg"
    with open(big, "wb") as handle:  # sparse: no disk space used
        handle.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError, match=r"(?s)big.cfg: .*the config is 1,048,577 bytes; at most 1,048,576"):
        load_scalesim_config(big)
    latin = tmp_path / "latin.cfg"
    latin.write_bytes(SCALESIM_REPO_CFG.replace("scale_example", "caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"(?s)latin.cfg: .*the config is not UTF-8 text"):
        load_scalesim_config(latin)


def test_unknown_sections_and_keys_name_the_closest_known_one():
    text = SCALESIM_REPO_CFG.replace("ArrayWidth:     32", "ArrayWidth: 32\nArrayHeigth: 4") + "[Sparsity]\n"
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(text, "x.cfg")
    problems = dict(error.value.problems)
    assert problems["architecture_presets.arrayheigth"].startswith("unknown key; did you mean 'ArrayHeight'?")
    assert problems["Sparsity"].startswith("unknown section; did you mean 'sparsity'?")


def test_a_missing_section_reports_each_required_key():
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config("[general]\nrun_name = r\n", "x.cfg")
    assert [path for path, _ in error.value.problems] == [
        f"architecture_presets.{key}"
        for key in (
            "ArrayHeight",
            "ArrayWidth",
            "IfmapSramSzkB",
            "FilterSramSzkB",
            "OfmapSramSzkB",
            "Dataflow",
        )
    ]


def test_a_bandwidth_entry_beyond_its_limit_is_named():
    with pytest.raises(ConfigError) as error:
        parse_scalesim_config(SCALESIM_REPO_CFG.replace("Bandwidth : 10", "Bandwidth : 10, 2000000"), "x.cfg")
    assert error.value.problems == [
        ("architecture_presets.Bandwidth", "entry 2 must be at most 1,048,576, got 2,000,000")
    ]


def test_explain_lists_every_key_with_its_spelling_and_bounds():
    text = explain_scalesim_config()
    assert "architecture_presets.ArrayHeight  (int, required, >= 1, <= 4096)" in text
    assert "run_presets.InterfaceBandwidth  (str, default: 'CALC', one of: CALC | USER, not USER)" in text
    assert "sparsity.RandomNumberGeneratorSeed" in text
