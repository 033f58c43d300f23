"""Hardware configs: YAML → validated frozen dataclasses, and every way a config can be wrong."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.config import (
    DramEnergyConfig,
    HwConfig,
    explain_hwconfig,
    hwconfig_to_dict,
    load_hwconfig,
    mechanism_kinds,
    parse_hwconfig,
)
from sparsesim.config.schema import flat_defaults
from sparsesim.errors import ConfigError

HWCONFIG_DIR = Path(__file__).resolve().parents[2] / "hwconfigs"
SHIPPED = tuple(path.stem for path in sorted(HWCONFIG_DIR.glob("*.yaml")))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "machine.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(data: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_hwconfig(data, source="test")
    return caught.value.problems


def leaf_paths(cls: type = HwConfig, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any], Any]]:
    """(dotted path, field, type hint) of every leaf parameter, from the declarations."""
    hints = typing.get_type_hints(cls)
    leaves = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            leaves += leaf_paths(hint, prefix + f.name + ".")
        else:
            leaves.append((prefix + f.name, f, hint))
    return leaves


def lookup(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[key]
    return data


# --- the shipped configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name):
    cfg = load_hwconfig(HWCONFIG_DIR / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.description


def test_shipped_configs_have_the_documented_numbers():
    dadiannao = load_hwconfig(HWCONFIG_DIR / "dadiannao.yaml")
    assert dadiannao.clock_hz == 606e6
    assert (dadiannao.pe_array.rows, dadiannao.pe_array.columns) == (1, 16)
    assert (dadiannao.pe_array.pe.activation_lanes, dadiannao.pe_array.pe.filter_lanes) == (16, 16)
    assert dadiannao.pe_array.pe.weight_spad_bytes == 2 * 2**20
    assert dadiannao.global_buffer.capacity_bytes == 36 * 2**20
    assert dadiannao.pe_array.pe.mechanism.kind == "dense"

    eyeriss = load_hwconfig(HWCONFIG_DIR / "eyeriss_v1.yaml")
    assert eyeriss.clock_hz == 200e6
    assert (eyeriss.pe_array.rows, eyeriss.pe_array.columns) == (12, 14)
    pe = eyeriss.pe_array.pe
    assert (pe.activation_lanes, pe.filter_lanes, pe.mechanism.kind) == (1, 1, "zero_gating")
    assert (pe.input_spad_bytes, pe.weight_spad_bytes, pe.psum_spad_bytes) == (24, 448, 48)
    assert (eyeriss.global_buffer.capacity_bytes, eyeriss.global_buffer.banks) == (108 * 1024, 27)


def test_cnvlutin_differs_from_dadiannao_only_in_its_sparsity_mechanism_and_activation_format():
    dadiannao = hwconfig_to_dict(load_hwconfig(HWCONFIG_DIR / "dadiannao.yaml"))
    cnvlutin = hwconfig_to_dict(load_hwconfig(HWCONFIG_DIR / "cnvlutin.yaml"))
    assert cnvlutin["pe_array"]["pe"]["mechanism"] == {"kind": "zero_skip_activations"}
    for level in ("dram", "global_buffer", "pe"):
        assert cnvlutin["formats"][level]["inputs"] == "ZFB"
        assert dadiannao["formats"][level]["inputs"] == "U"
    for data in (dadiannao, cnvlutin):
        del data["name"], data["description"], data["pe_array"]["pe"]["mechanism"], data["formats"]
    assert cnvlutin == dadiannao


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_round_trips_through_yaml(tmp_path, name):
    cfg = load_hwconfig(HWCONFIG_DIR / f"{name}.yaml")
    assert load_hwconfig(write(tmp_path, yaml.safe_dump(hwconfig_to_dict(cfg)))) == cfg


# --- defaults, derived values, normalisation ----------------------------------------------------------


def test_missing_keys_take_their_declared_defaults():
    cfg = parse_hwconfig({"name": "minimal", "pe_array": {"pe": {"filter_lanes": 8}}})
    assert cfg.pe_array.pe.filter_lanes == 8
    assert cfg.pe_array.pe.activation_lanes == 16
    assert cfg.clock_hz == 1.0e9
    assert cfg.dram == HwConfig(name="other").dram
    as_dict = hwconfig_to_dict(cfg)
    for path, f, _ in leaf_paths():
        if path not in ("name", "pe_array.pe.filter_lanes") and f.default is not None:
            assert lookup(as_dict, path) == f.default, path


def test_dram_energy_default_is_200_pj_per_word_of_a_burst():
    cfg = parse_hwconfig({"name": "x", "word_bytes": 1, "dram": {"burst_bytes": 32}})
    assert cfg.energy_table()["dram"] == {"read": 200.0 * 32 / 1, "write": 200.0 * 32 / 1}
    assert parse_hwconfig({"name": "x"}).energy_table()["dram"]["read"] == 6400.0


def test_dram_energy_given_explicitly_is_kept():
    cfg = parse_hwconfig({"name": "x", "energy_pj": {"dram": {"read": 1000, "write": None}}})
    assert cfg.energy_table()["dram"] == {"read": 1000.0, "write": 6400.0}


def test_a_derived_dram_energy_follows_the_parameters_it_is_derived_from():
    cfg = parse_hwconfig({"name": "x"})
    assert cfg.energy_pj.dram == DramEnergyConfig()  # what was given: nothing, derived when used
    wider = dataclasses.replace(cfg, dram=dataclasses.replace(cfg.dram, burst_bytes=128))
    assert wider.energy_table()["dram"]["read"] == 12800.0
    narrower_words = dataclasses.replace(cfg, word_bytes=4)
    assert narrower_words.energy_table()["dram"]["write"] == 3200.0


def test_a_sweep_of_burst_bytes_changes_the_dram_energy_and_keeps_an_explicit_one():
    from sparsesim.config.overrides import with_parameter

    cfg = load_hwconfig(HWCONFIG_DIR / "dadiannao.yaml")
    swept = with_parameter(cfg, "dram.burst_bytes", 2 * cfg.dram.burst_bytes)
    assert swept.energy_table()["dram"]["read"] == 2 * cfg.energy_table()["dram"]["read"]
    explicit = parse_hwconfig({"name": "x", "energy_pj": {"dram": {"read": 1000.0, "write": 2000.0}}})
    kept = with_parameter(explicit, "dram.burst_bytes", 128)
    assert kept.energy_table()["dram"] == {"read": 1000.0, "write": 2000.0}


def test_energy_table_is_the_dicts_energy_section():
    cfg = load_hwconfig(HWCONFIG_DIR / "eyeriss_v1.yaml")
    table = cfg.energy_table()
    assert table == hwconfig_to_dict(cfg, fill_derived=True)["energy_pj"]
    assert hwconfig_to_dict(cfg)["energy_pj"]["dram"] == {"read": None, "write": None}
    assert table["pe_array"]["skipped_compute"] == 0.0
    assert table["noc"]["transfer"] == 2.0
    assert table["global_buffer"]["read"] == 6.0


def test_integers_are_accepted_for_floats_and_become_floats():
    cfg = parse_hwconfig({"name": "x", "clock_hz": 1000, "dram": {"bandwidth_bytes_per_cycle": 8}})
    assert type(cfg.clock_hz) is float and cfg.clock_hz == 1000.0
    assert type(cfg.dram.bandwidth_bytes_per_cycle) is float


def test_exponent_notation_loads_as_a_float(tmp_path):
    text = (
        "name: x\n"
        "clock_hz: 606e6\n"
        "dram: {bandwidth_bytes_per_cycle: 1.5e1}\n"
        "noc: {bandwidth_bytes_per_cycle: 2E+1}\n"
    )
    cfg = load_hwconfig(write(tmp_path, text))
    assert cfg.clock_hz == 606e6
    assert cfg.dram.bandwidth_bytes_per_cycle == 15.0
    assert cfg.noc.bandwidth_bytes_per_cycle == 20.0
    assert type(cfg.clock_hz) is float and type(cfg.dram.bandwidth_bytes_per_cycle) is float


def test_exponent_notation_in_a_string_parameter_stays_the_text(tmp_path):
    # yaml.safe_dump writes the string "0E0" without quotes (YAML 1.1 reads it as a string); our loader
    # reads it as a float, so a string parameter must take the scalar's text back.
    cfg = load_hwconfig(write(tmp_path, "name: 0E0\ndescription: 1_0e+5\n"))
    assert (cfg.name, cfg.description) == ("0E0", "1_0e+5")
    assert type(cfg.name) is str


def test_a_null_block_means_all_of_its_defaults(tmp_path):
    cfg = load_hwconfig(write(tmp_path, "name: x\ndram:\n  # everything commented out\n"))
    assert cfg.dram == HwConfig(name="x").dram


def test_constructing_in_python_validates_too():
    cfg = parse_hwconfig({"name": "x"})
    with pytest.raises(ConfigError, match=r"pe_array\.rows: must be >= 1, got 0"):
        dataclasses.replace(cfg, pe_array=dataclasses.replace(cfg.pe_array, rows=0))
    with pytest.raises(ConfigError, match=r"pe_array\.pe\.psum_spad_bytes: must be >= "):
        dataclasses.replace(cfg, word_bytes=16)


def test_a_mixture_of_experts_selects_at_most_all_of_its_experts():
    mechanism = {"kind": "mixture_of_experts", "experts": 4, "top_k": 5}
    with pytest.raises(
        ConfigError,
        match=r"pe_array\.pe\.mechanism\.top_k: must be <= pe_array\.pe\.mechanism\.experts = 4",
    ):
        parse_hwconfig({"name": "x", "pe_array": {"pe": {"mechanism": mechanism}}})
    # The keys belong to the mechanism that uses the experts.
    [(path, message)] = problems_of(
        {"name": "x", "pe_array": {"pe": {"mechanism": {**mechanism, "kind": "dense"}}}}
    )[:1]
    assert path == "pe_array.pe.mechanism.experts" and message.startswith("unknown key")


# --- explain and to_dict --------------------------------------------------------------------------------


def test_explain_lists_every_parameter_with_its_type_default_and_description():
    text = explain_hwconfig()
    lines = text.splitlines()
    for path, f, _ in leaf_paths():
        [index] = [i for i, line in enumerate(lines) if line.strip().startswith(path + "  (")]
        head, description = lines[index], lines[index + 1].strip()
        assert "required" in head if f.default is dataclasses.MISSING else "default:" in head
        assert description == f.metadata["doc"] and description
    for kind, cls in mechanism_kinds().items():  # every mechanism, with each of its own parameters
        assert f"pe_array.pe.mechanism[kind={kind}]:  " in text
        for path, f, _ in leaf_paths(cls, f"pe_array.pe.mechanism[kind={kind}]."):
            if not path.endswith(".kind"):
                [index] = [i for i, line in enumerate(lines) if line.strip().startswith(path + "  (")]
                assert lines[index + 1].strip() == f.metadata["doc"]
    assert "dram.bandwidth_bytes_per_cycle  (float, default: 16.0, >= 1/1024, <= 2**30)" in text
    assert "pe_array.rows  (int, default: 1, >= 1, <= 1024)" in text
    assert "pe_array.rows * pe_array.columns <= 65536" in text
    assert "pe_array.pe.weight_spad_bytes >= pe_array.pe.filter_lanes * word_bytes" in text
    for source in ("Eyeriss", "ISCA 2016", "Horowitz", "ISSCC 2014", "200 * dram.burst_bytes / word_bytes"):
        assert source in text


def test_every_parameter_has_a_one_line_description():
    for path, f, _ in leaf_paths():
        doc = f.metadata.get("doc")
        assert doc and "\n" not in doc, path


def test_to_dict_is_json_serialisable_deterministic_and_in_declaration_order():
    cfg = load_hwconfig(HWCONFIG_DIR / "cnvlutin.yaml")
    first = json.dumps(hwconfig_to_dict(cfg))
    assert first == json.dumps(hwconfig_to_dict(load_hwconfig(HWCONFIG_DIR / "cnvlutin.yaml")))
    assert list(hwconfig_to_dict(cfg)) == [f.name for f in dataclasses.fields(HwConfig)]
    assert parse_hwconfig(json.loads(first)) == cfg
    for path, _, _ in leaf_paths():
        lookup(hwconfig_to_dict(cfg), path)  # every parameter is present


# --- bad inputs: each names the problem and its dotted path ---------------------------------------------


def test_malformed_yaml_reports_its_line(tmp_path):
    path = write(tmp_path, "name: x\ndram:\n  burst_bytes: [64\n  latency_cycles: 1\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+") as caught:
        load_hwconfig(path)
    assert caught.value.source == str(path)


def test_malformed_yaml_names_the_offending_line(tmp_path):
    path = write(tmp_path, "name: x\nclock_hz: 1\n  word_bytes: 2\n")
    with pytest.raises(ConfigError, match=r"line 3"):
        load_hwconfig(path)


def test_unknown_key_is_named_with_the_closest_allowed_key():
    [(path, message)] = problems_of({"name": "x", "pe_array": {"pe": {"activation_lane": 4}}})
    assert path == "pe_array.pe.activation_lane"
    assert "unknown key" in message and "did you mean 'activation_lanes'?" in message
    assert "filter_lanes" in message  # the allowed keys are listed


def test_unknown_top_level_key_lists_the_allowed_keys():
    [(path, message)] = problems_of({"name": "x", "zzz": 1})
    assert path == "zzz"
    assert "did you mean" not in message and "pe_array" in message


def test_zero_bandwidth_is_rejected():
    [(path, message)] = problems_of({"name": "x", "dram": {"bandwidth_bytes_per_cycle": 0}})
    assert (path, message) == ("dram.bandwidth_bytes_per_cycle", "must be >= 1/1024, got 0")


def test_a_boolean_is_not_an_integer():
    [(path, message)] = problems_of({"name": "x", "pe_array": {"rows": True}})
    assert path == "pe_array.rows"
    assert message == "expected an integer, got the boolean true"


def test_a_boolean_is_not_a_number():
    [(path, message)] = problems_of({"name": "x", "clock_hz": False})
    assert (path, message) == ("clock_hz", "expected a number, got the boolean false")


def test_a_string_is_not_a_number(tmp_path):
    path = write(tmp_path, "name: x\nnoc:\n  bandwidth_bytes_per_cycle: '32'\n  latency_cycles: fast\n")
    with pytest.raises(ConfigError) as caught:
        load_hwconfig(path)
    assert caught.value.problems == [
        (
            "noc.bandwidth_bytes_per_cycle",
            "expected a number, got the string '32' (write numbers without quotes)",
        ),
        ("noc.latency_cycles", "expected an integer, got the string 'fast'"),
    ]


def test_a_float_is_not_an_integer():
    [(path, message)] = problems_of({"name": "x", "global_buffer": {"banks": 2.5}})
    assert (path, message) == ("global_buffer.banks", "expected an integer, got the float 2.5")


def test_zero_lanes_are_rejected():
    [(path, message)] = problems_of({"name": "x", "pe_array": {"pe": {"activation_lanes": 0}}})
    assert (path, message) == ("pe_array.pe.activation_lanes", "must be >= 1, got 0")


def test_an_unknown_mechanism_lists_the_known_ones():
    [(path, message)] = problems_of(
        {"name": "x", "pe_array": {"pe": {"mechanism": {"kind": "zero_skip_activation"}}}}
    )
    assert path == "pe_array.pe.mechanism.kind"
    assert message.startswith(
        "unknown mechanism 'zero_skip_activation' (did you mean 'zero_skip_activations'?)"
    )
    assert "known: cartesian_product, cartesian_product_dense, csc_columns, dense, " in message


def test_an_old_config_loads_with_a_warning_that_shows_the_new_block():
    old = {
        "name": "x",
        "pe_array": {
            "pe": {"activation_lanes": 1, "sparsity": "none", "early_termination": "msb_first", "msb_bits": 6}
        },
        "energy_pj": {"pe_array": {"compute": 2.0, "msb_compute": 0.4, "router_compute": 3.0}},
    }
    with pytest.warns(FutureWarning, match=r"\{mechanism: \{kind: msb_first, decision: predictive"):
        cfg = parse_hwconfig(old, source="old.yaml")
    new = {
        "name": "x",
        "pe_array": {
            "pe": {
                "activation_lanes": 1,
                "mechanism": {"kind": "msb_first", "msb_bits": 6, "energy_pj": {"msb_compute": 0.4}},
            }
        },
        "energy_pj": {"pe_array": {"compute": 2.0}},
    }
    assert cfg == parse_hwconfig(new)
    assert cfg.energy_table()["pe_array"]["msb_compute"] == 0.4


def test_noc_kind_must_be_one_of_the_choices():
    [(path, message)] = problems_of({"name": "x", "noc": {"kind": "mesh"}})
    assert path == "noc.kind" and "multicast_bus" in message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_rejected(tmp_path, value):
    with pytest.raises(ConfigError, match=r"clock_hz: must be a finite number"):
        load_hwconfig(write(tmp_path, f"name: x\nclock_hz: {value}\n"))


def test_a_spad_smaller_than_one_word_per_lane_is_rejected():
    [(path, message)] = problems_of(
        {"name": "x", "pe_array": {"pe": {"filter_lanes": 16, "weight_spad_bytes": 16}}}
    )
    assert path == "pe_array.pe.weight_spad_bytes"
    assert message == (
        "must be >= pe_array.pe.filter_lanes * word_bytes = 16 * 2 = 32 (one word per filter lane), got 16"
    )


def test_a_burst_smaller_than_a_word_and_a_buffer_smaller_than_two_bursts_are_rejected():
    problems = dict(problems_of({"name": "x", "word_bytes": 4, "dram": {"burst_bytes": 2}}))
    assert problems["dram.burst_bytes"].startswith("must be >= word_bytes = 4")
    problems = dict(problems_of({"name": "x", "global_buffer": {"capacity_bytes": 100}}))
    assert problems["global_buffer.capacity_bytes"].startswith(
        "must be >= 2 * dram.burst_bytes = 2 * 64 = 128"
    )


def test_several_problems_are_all_listed_in_one_error(tmp_path):
    text = """\
clock_hz: -1
word_bytes: yes
dram:
  bandwith_bytes_per_cycle: 8
global_buffer:
  capacity_bytes: 100
pe_array:
  rows: 0
  pe:
    mechanism: {kind: sometimes}
    psum_spad_bytes: 4
noc: 8
"""
    with pytest.raises(ConfigError) as caught:
        load_hwconfig(write(tmp_path, text))
    paths = [path for path, _ in caught.value.problems]
    assert sorted(paths) == sorted(
        [
            "name",
            "clock_hz",
            "word_bytes",
            "dram.bandwith_bytes_per_cycle",
            "global_buffer.capacity_bytes",
            "pe_array.rows",
            "pe_array.pe.mechanism.kind",
            "noc",
        ]
    )  # psum_spad_bytes is not judged against an invalid word_bytes
    message = str(caught.value)
    assert "8 problem(s)" in message and "name: missing required key" in message


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="the top level must be a mapping .* got a list"):
        load_hwconfig(write(tmp_path, "- name: x\n- clock_hz: 1\n"))


def test_an_empty_file_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="the file is empty"):
        load_hwconfig(write(tmp_path, "# nothing but a comment\n"))


def test_name_is_required_and_not_empty():
    assert problems_of({"clock_hz": 1e9}) == [("name", "missing required key")]
    assert problems_of({"name": "  "}) == [("name", "must not be empty")]


def test_a_block_must_be_a_mapping():
    [(path, message)] = problems_of({"name": "x", "pe_array": [1, 2]})
    assert (path, message) == ("pe_array", "expected a mapping of pe_array's parameters, got a list")


def test_a_repeated_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"found the key 'rows' twice \(first at line 3\)"):
        load_hwconfig(write(tmp_path, "name: x\npe_array:\n  rows: 2\n  rows: 4\n"))


def test_yaml_tags_for_python_objects_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_hwconfig(write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"))


def test_the_error_source_is_the_path_as_given(tmp_path):
    path = write(tmp_path, "name: x\nclock_hz: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_hwconfig(str(path))
    assert caught.value.source == str(path)
    assert str(caught.value) == f"{path}: clock_hz: must be >= 1000, got 0"  # one problem, one line


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the hardware config: No such file"):
        load_hwconfig(tmp_path / "absent.yaml")


# --- property: parse → to_dict → parse is the identity --------------------------------------------------

# Bounds tighter than the declarations for the parameters tied by cross-field rules, chosen so that any
# combination (with the other parameters at their defaults) satisfies every rule.
CROSS_FIELD_SAFE_RANGES = {
    "word_bytes": (1, 4),
    "dram.burst_bytes": (4, 4096),
    "global_buffer.capacity_bytes": (8192, 2**34),
    "pe_array.pe.activation_lanes": (1, 32),
    "pe_array.pe.filter_lanes": (1, 32),
    "pe_array.pe.input_spad_bytes": (128, 2**26),
    "pe_array.pe.weight_spad_bytes": (128, 2**26),
    "pe_array.pe.psum_spad_bytes": (128, 2**26),
    "pe_array.rows": (1, 256),  # rows * columns <= 65536
    "pe_array.columns": (1, 256),
}


ANY_TEXT = st.text(min_size=1).filter(str.strip)
# PyYAML itself does not round-trip some control characters (e.g. U+0085 in a plain scalar).
PLAIN_TEXT = st.from_regex(r"[A-Za-z0-9_ .,()-]*[A-Za-z0-9]", fullmatch=True)


def value_strategy(path: str, f: dataclasses.Field[Any], hint: Any, text: st.SearchStrategy[str]) -> Any:
    meta = f.metadata
    if meta.get("choices"):
        return st.sampled_from(meta["choices"])
    if path == "pe_array.pe.mechanism.pattern":
        return st.sampled_from(["2:4", "1:4", "4:8", "1:2"])
    if hint is bool:
        return st.booleans()
    if hint is str:
        return text
    low = meta.get("ge") if meta.get("ge") is not None else meta.get("gt")
    if low is None:  # an unbounded parameter
        return st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)
    high = meta["le"] if meta.get("le") is not None else 1e15  # sizes, counts, rates, energies have one
    if hint is int:
        low_int, high_int = CROSS_FIELD_SAFE_RANGES.get(path, (int(low), int(high)))
        return st.integers(low_int, high_int)
    floats = st.floats(
        min_value=low,
        max_value=high,
        exclude_min=meta.get("gt") is not None,
        allow_nan=False,
        allow_infinity=False,
    )
    numbers = st.one_of(floats, st.integers(max(1, math.ceil(low)), int(high)))
    return st.one_of(st.none(), numbers) if hint == (float | None) else numbers


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *blocks, key = path.split(".")
        node = tree
        for block in blocks:
            node = node.setdefault(block, {})
        node[key] = value
    return tree


def consistent_formats(tree: dict[str, Any]) -> dict[str, Any]:
    """Make a tensor's format change only where the decoder sits (the one rule across formats)."""
    formats = tree.get("formats", {})
    at = tree.get("decoder", {}).get("at", "none")
    for tensor in ("weights", "inputs"):
        dram = formats.get("dram", {}).get(tensor, "U")
        if at != "global_buffer_input":
            formats.setdefault("global_buffer", {})[tensor] = dram
        buffer = formats.get("global_buffer", {}).get(tensor, "U")
        if at not in ("global_buffer_output", "pe_input"):
            formats.setdefault("pe", {})[tensor] = buffer
    if formats:
        tree["formats"] = formats
    pe = tree.get("pe_array", {}).get("pe", {})
    mechanism = pe.get("mechanism", {})
    if mechanism.get("kind") in ("relu_early_termination", "msb_first"):  # one lane walks an output
        pe["activation_lanes"] = 1
    if mechanism.get("kind") == "mixture_of_experts":  # it selects at most all of its experts
        mechanism["top_k"] = min(mechanism.get("top_k", 2), mechanism.get("experts", 8))
    temporal = tree.get("temporal", {})
    if temporal.get("key_frame_interval", 1) != 1 and not temporal.get("target_layer"):
        temporal["target_layer"] = "conv2_2"  # temporal reuse needs a target layer
    return tree


def mechanism_mappings(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Flat mappings of one mechanism block: a kind, then any of that kind's own parameters."""

    def of_kind(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        prefix = "pe_array.pe.mechanism."
        own = [leaf for leaf in leaf_paths(mechanism_kinds()[kind], prefix) if leaf[0] != prefix + "kind"]
        return st.fixed_dictionaries(
            {prefix + "kind": st.just(kind)},
            optional={path: value_strategy(path, f, hint, text) for path, f, hint in own},
        )

    return st.sampled_from(sorted(mechanism_kinds())).flatmap(of_kind)


def valid_mappings(text: st.SearchStrategy[str] = ANY_TEXT) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings of valid values; every parameter but ``name`` may be left out."""
    [(_, name_field, name_hint), *others] = leaf_paths()
    others = [leaf for leaf in others if not leaf[0].startswith("pe_array.pe.mechanism.")]
    flat = st.fixed_dictionaries(
        {"name": value_strategy("name", name_field, name_hint, text)},
        optional={path: value_strategy(path, f, hint, text) for path, f, hint in others},
    )
    with_mechanism = st.tuples(flat, st.one_of(st.just({}), mechanism_mappings(text)))
    return (
        with_mechanism.map(lambda parts: {**parts[0], **parts[1]})
        .map(nest)
        .map(consistent_formats)
        .filter(mechanism_rules_hold)
        .filter(dataflow_runs)
    )


def dataflow_runs(tree: dict[str, Any]) -> bool:
    """Whether the drawn machine's PEs can run its drawn dataflow (``pe_array.dataflow``): one its mechanism
    lists, row stationary on PEs of one MAC."""
    drawn = {**flat_defaults(HwConfig), **leaves(tree)}
    named = drawn["pe_array.dataflow"]
    if named in ("native", "any"):
        return True
    lanes = (drawn["pe_array.pe.activation_lanes"], drawn["pe_array.pe.filter_lanes"])
    runnable = mechanism_kinds()[drawn.get("pe_array.pe.mechanism.kind", "dense")].DATAFLOWS
    return named in runnable and (named != "row_stationary" or lanes == (1, 1))


def mechanism_rules_hold(tree: dict[str, Any]) -> bool:
    """Whether the drawn machine obeys its mechanism's own cross-field rules (e.g. Winograd's 16
    accumulators per filter lane), asked of the mechanism itself: a new mechanism needs no edit here."""
    prefix = "pe_array.pe.mechanism."
    drawn = leaves(tree)
    cls = mechanism_kinds()[drawn.get(prefix + "kind", "dense")]
    values = {**flat_defaults(HwConfig), **flat_defaults(cls, prefix), **drawn}
    return not cls.cross_field_problems(values, set(), prefix)


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping's leaves by dotted path."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


@settings(max_examples=200, deadline=None)
@given(valid_mappings())
def test_parse_to_dict_parse_is_the_identity(data):
    cfg = parse_hwconfig(data)
    as_dict = hwconfig_to_dict(cfg)
    assert parse_hwconfig(as_dict) == cfg
    assert parse_hwconfig(json.loads(json.dumps(as_dict))) == cfg
    assert hwconfig_to_dict(parse_hwconfig(as_dict)) == as_dict
    for path, _, hint in leaf_paths():
        value = lookup(as_dict, path)
        assert (value is not None or hint == (float | None)) and (
            not isinstance(value, float) or math.isfinite(value)
        )
    assert all(math.isfinite(pj) for actions in cfg.energy_table().values() for pj in actions.values())


@settings(max_examples=50, deadline=None)
@given(valid_mappings(text=PLAIN_TEXT))
def test_yaml_dump_then_load_is_the_identity(data):
    cfg = parse_hwconfig(data)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "machine.yaml"
        path.write_text(yaml.safe_dump(hwconfig_to_dict(cfg), allow_unicode=True), encoding="utf-8")
        assert load_hwconfig(path) == cfg


def test_numpy_scalars_from_a_sweep_become_python_numbers():
    np = pytest.importorskip("numpy")
    cfg = parse_hwconfig({"name": "x"})
    swept = dataclasses.replace(cfg, clock_hz=np.float32(5e8), word_bytes=np.int64(1))
    assert type(swept.clock_hz) is float and type(swept.word_bytes) is int
    json.dumps(hwconfig_to_dict(swept))


# --- formats and the decoder ----------------------------------------------------------------------------


def test_a_format_change_without_a_decoder_at_that_boundary_is_reported():
    problems = problems_of(
        {
            "name": "x",
            "formats": {
                "dram": {"inputs": "RLE"},
                "global_buffer": {"weights": "CSC"},
                "pe": {"weights": "CSC"},
            },
            "decoder": {"at": "pe_input"},
        }
    )
    paths = [path for path, _ in problems]
    assert paths == ["formats.global_buffer.weights", "formats.global_buffer.inputs"]
    assert "decoder.at: global_buffer_input" in problems[0][1]


def test_a_decoder_at_the_boundary_allows_the_change():
    cfg = parse_hwconfig(
        {"name": "x", "formats": {"dram": {"inputs": "RLE"}}, "decoder": {"at": "global_buffer_input"}}
    )
    assert cfg.formats.dram.inputs == "RLE" and cfg.formats.global_buffer.inputs == "U"


def test_zero_free_bricks_are_for_activations_only():
    problems = problems_of({"name": "x", "formats": {"dram": {"weights": "ZFB"}}})
    assert problems[0][0] == "formats.dram.weights" and "must be one of" in problems[0][1]


def test_format_choices_are_the_presets_of_the_formats_library():
    from sparsesim.config.hwconfig import ACTIVATION_FORMATS, WEIGHT_FORMATS
    from sparsesim.sparse.formats import preset_names

    assert set(ACTIVATION_FORMATS) == set(preset_names("activations"))
    assert set(WEIGHT_FORMATS) == set(preset_names("weights"))
