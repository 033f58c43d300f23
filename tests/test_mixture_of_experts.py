"""Mixture of experts (MoEfication) end to end on real layers of the shipped trace.

Only the routed experts compute and have their weights fetched; the router's MACs and cycles are paid; the
output error the construction causes is measured and reported, never hidden.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim import load_hwconfig, simulate
from sparsesim.config.overrides import with_parameter
from sparsesim.errors import SimulationError
from sparsesim.mapping.directives import MappingFile
from tests.conftest import HWCONFIG_DIR

LAYERS = ["conv2_2", "conv4_2"]


@pytest.fixture(scope="module")
def moe_hw():
    return load_hwconfig(HWCONFIG_DIR / "moe.yaml")


@pytest.fixture(scope="module")
def reports(moe_hw, vgg16_trace, simulated):
    """The layer entries of LAYERS: the shipped config's from its whole-network run (shared with the golden
    tier), its two variants' simulated here."""
    every_expert = with_parameter(moe_hw, "pe_array.pe.mechanism.top_k", 8)
    dense = with_parameter(moe_hw, "pe_array.pe.mechanism.kind", "dense")
    network = simulated("moe")
    entries = {"moe": [network.layer(name) for name in LAYERS]}
    entries["every_expert"] = simulate(every_expert, vgg16_trace, LAYERS).layers
    # The dense machine over the same tiles, so that their weights move alike.
    same_tiles = MappingFile(
        "test", None, {e["name"]: ("mapping", e["mapping"]) for e in entries["every_expert"]}, {}
    )
    entries["dense"] = simulate(dense, vgg16_trace, LAYERS, same_tiles).layers
    return entries


def test_only_the_routed_experts_compute_and_the_router_is_charged(reports, vgg16_trace):
    for entry in reports["moe"]:
        layer = vgg16_trace.layer(entry["name"])
        filters, channels = layer.weights.shape[:2]
        pixels = layer.output.shape[1] * layer.output.shape[2]
        computes, moe = entry["computes"], entry["mechanism"]["summary"]
        assert computes["actual"] == computes["algorithmic"] * 2 // 8  # 2 of 8 equal experts per pixel
        assert computes["actual"] + computes["skipped"] == computes["algorithmic"]
        assert moe["router_macs"] == 8 * channels * 9 * pixels
        assert entry["components"]["pe_array"]["actions"]["router_compute"] == moe["router_macs"]
        assert sum(moe["pixel_share_per_expert"]) == pytest.approx(2.0)
        # Fetched expert weights: the experts some pixel of the layer routes to (weights stay resident).
        words = moe["weight_words"]
        assert words["experts_fetched"] == round(moe["experts_needed"]["layer"] * words["dense_layer"])
        assert words["experts_fetched"] <= words["dense_layer"]
        needed = moe["experts_needed"]
        assert needed["pixel"] == 0.25 and needed["pixel"] <= needed["output_row"] <= needed["tile"]
        assert needed["tile"] <= needed["layer"]
        assert filters % 8 == 0


def test_the_error_of_unrouted_outputs_is_reported(reports):
    for entry in reports["moe"]:
        check = entry["functional_check"]
        assert check["passed"] and not check["exact"]
        assert check["lossy_error"]["zeroed_outputs"] == "unrouted"
        assert 0.05 < check["lossy_error"]["relative_rms_error"] < 1.0
        recall = entry["mechanism"]["summary"]["recall"]
        assert 0.25 < recall["mass_recall"] <= entry["mechanism"]["summary"]["oracle_mass_recall"] + 1e-12


def test_every_expert_selected_is_the_dense_layer_plus_the_router(reports):
    for moe, every, dense in zip(*(reports[n] for n in ("moe", "every_expert", "dense")), strict=True):
        assert every["functional_check"]["exact"] and every["functional_check"]["passed"]
        assert every["computes"]["actual"] == dense["computes"]["actual"] == dense["computes"]["algorithmic"]
        assert every["cycles"] > dense["cycles"] > moe["cycles"]
        router_bytes = every["mechanism"]["summary"]["weight_words"]["router"] * 2
        assert (
            every["dram_traffic"]["bytes"]["weights"]
            == dense["dram_traffic"]["bytes"]["weights"] + router_bytes
        )
        assert moe["energy_pj"] < dense["energy_pj"]


def test_a_layer_that_cannot_be_split_evenly_is_a_simulation_error(moe_hw, vgg16_trace):
    hw = with_parameter(moe_hw, "pe_array.pe.mechanism.experts", 3)
    with pytest.raises(SimulationError, match="cannot be split into pe_array.pe.mechanism.experts = 3"):
        simulate(hw, vgg16_trace, ["conv2_2"])


def test_filters_split_over_channel_blocks_are_a_simulation_error(moe_hw, vgg16_trace):
    hw = with_parameter(moe_hw, "pe_array.pe.weight_spad_bytes", 1024)
    with pytest.raises(SimulationError, match="routes on whole windows"):
        simulate(hw, vgg16_trace, ["conv2_2"])


def test_the_same_config_gives_the_same_routing(moe_hw, vgg16_trace, reports):
    again = simulate(moe_hw, vgg16_trace, ["conv2_2"]).layers[0]
    first = reports["moe"][0]
    assert again["mechanism"]["summary"] == first["mechanism"]["summary"]
    assert again["cycles"] == first["cycles"] and np.isclose(again["energy_pj"], first["energy_pj"], rtol=0)
