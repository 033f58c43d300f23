"""ARCHITECTURE.md's worked example runs as written: a mechanism added as one module, with no edit to
sparsesim's files, simulates the shipped trace and passes the functional check."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest
import yaml

from sparsesim import simulate
from sparsesim.config import MechanismConfig, hwconfig_to_dict, parse_hwconfig
from sparsesim.mechanisms import MECHANISMS
from tests.conftest import ROOT

KIND = "example_synced_skipping"


def blocks(language: str) -> list[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## How to add a mechanism", 1)[1]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example's module, imported from a file as a plug-in would be; unregistered afterwards."""
    [code] = blocks("python")
    path = tmp_path_factory.mktemp("plugin") / "example_mechanism.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("example_mechanism", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["example_mechanism"] = module
    spec.loader.exec_module(module)
    yield module
    del MechanismConfig.KINDS[KIND], MECHANISMS[KIND], sys.modules["example_mechanism"]


def machine(hwconfigs, **mechanism):
    """Cnvlutin with the example's mechanism block (as ARCHITECTURE.md's YAML gives it), changed."""
    [text] = blocks("yaml")
    block = yaml.safe_load(text)["pe_array"]["pe"]["mechanism"]
    data = hwconfig_to_dict(hwconfigs["cnvlutin"])
    data["pe_array"]["pe"]["mechanism"] = {**block, **mechanism}
    return parse_hwconfig(data, source="ARCHITECTURE.md")


def test_the_example_plugs_in_and_costs_what_it_says(example, hwconfigs, vgg16_trace):
    layers = ["conv1_1", "conv3_1"]
    cnvlutin = simulate(hwconfigs["cnvlutin"], vgg16_trace, layers)
    synced = simulate(machine(hwconfigs), vgg16_trace, layers)
    free = simulate(machine(hwconfigs, sync_cycles=0, energy_pj={"lane_sync": 0.0}), vgg16_trace, layers)
    for base, entry, unsynced in zip(cnvlutin.layers, synced.layers, free.layers, strict=True):
        assert entry["functional_check"]["passed"]
        assert entry["mechanism"] == {"kind": KIND, "summary": None}
        # Without barriers it is Cnvlutin, cycle for cycle and pJ for pJ; barriers only cost.
        assert unsynced["cycles"] == base["cycles"] and unsynced["energy_pj"] == pytest.approx(
            base["energy_pj"]
        )
        assert entry["cycles"] > base["cycles"]
        syncs = entry["components"]["pe_array"]["actions"]["lane_sync"]
        assert syncs > 0 and entry["components"]["pe_array"]["action_energy_pj"]["lane_sync"] == syncs * 0.1
        assert entry["computes"] == base["computes"]


def test_the_example_is_validated_and_explained_like_the_others(example):
    from sparsesim.config import explain_hwconfig

    assert (
        f"pe_array.pe.mechanism[kind={KIND}].sync_cycles  (int, default: 2, >= 0, <= 64)"
        in explain_hwconfig()
    )
    with pytest.raises(Exception, match=r"pe_array\.pe\.mechanism\.sync_cycles: must be <= 64, got 65"):
        parse_hwconfig({"name": "x", "pe_array": {"pe": {"mechanism": {"kind": KIND, "sync_cycles": 65}}}})
