"""Dataflows as the machines are wired (``pe_array.dataflow``): Eyeriss's row stationary, its checks in the
hwconfig and in mapping files, and the mapper searching within the native dataflow or across every one the
PEs can run. The fold's cycles against a cycle-stepped reference: tests/sparse/test_row_stationary.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sparsesim import mapper
from sparsesim.accelerator import LayerSetup, geometry_of
from sparsesim.cli import main
from sparsesim.config.overrides import with_parameter
from sparsesim.errors import ConfigError, MappingError
from sparsesim.mapper import search, space_of
from sparsesim.mapping import LayerMapping, Loops
from sparsesim.mapping.directives import from_directives, to_directives
from sparsesim.simulator import simulate_layer
from sparsesim.sparse import row_stationary
from tests.real_cuts import crop
from tests.test_mappings import given_file


@pytest.fixture(scope="module")
def cut(vgg16_trace):
    """A real corner of conv3_1: 24 channels of 10 x 12 pixels, 40 filters (its ReLU inputs and weights)."""
    return crop(vgg16_trace.layer("conv3_1"), 24, 10, 12, 40, "conv3_1_cut")


def test_each_shipped_machine_names_its_dataflow(hwconfigs):
    named = {name: hw.pe_array.dataflow for name, hw in hwconfigs.items()}
    assert named["eyeriss_v1"] == named["eva2"] == "row_stationary"
    assert named["scnn"] == "planar"
    assert named["dadiannao"] == named["cnvlutin"] == "output_stationary"
    assert all(value not in ("native", "any") for value in named.values())


@pytest.mark.parametrize(
    "config, path, value, message",
    [
        (
            "cnvlutin",
            "pe_array.dataflow",
            "row_stationary",
            "zero_skip_activations PEs run output_stationary",
        ),
        ("dadiannao", "pe_array.dataflow", "row_stationary", "activation_lanes and filter_lanes of 1"),
        ("eyeriss_v1", "pe_array.pe.filter_lanes", 2, "activation_lanes and filter_lanes of 1, got 1 and 2"),
        ("scnn", "pe_array.dataflow", "output_stationary", "cartesian_product PEs run planar"),
    ],
)
def test_a_dataflow_the_pes_cannot_run_is_refused_with_the_config(hwconfigs, config, path, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        with_parameter(hwconfigs[config], path, value)
    assert "pe_array.dataflow:" in str(error.value)


def test_native_and_any_name_the_dataflows_the_mapper_searches(hwconfigs):
    eyeriss, dadiannao = hwconfigs["eyeriss_v1"], hwconfigs["dadiannao"]
    assert eyeriss.pe_array.dataflows == ("row_stationary",)
    assert with_parameter(eyeriss, "pe_array.dataflow", "native").pe_array.dataflows == ("output_stationary",)
    both = ("output_stationary", "row_stationary")
    assert with_parameter(eyeriss, "pe_array.dataflow", "any").pe_array.dataflows == both
    # Row stationary needs PEs of one MAC: DaDianNao's 16 x 16 lanes run output stationary only.
    assert with_parameter(dadiannao, "pe_array.dataflow", "any").pe_array.dataflows == ("output_stationary",)
    assert hwconfigs["scnn"].pe_array.dataflows == ("planar",)


def test_row_stationary_runs_a_real_cut_with_the_folds_cycles_and_the_scratchpads_room(hwconfigs, cut):
    hw = hwconfigs["eyeriss_v1"]
    setup = LayerSetup(hw, cut)
    run = search(setup)
    tiling, geometry = run.tiling, setup.geometry
    assert tiling.mapping.dataflow == "row_stationary"
    array, spad_words = hw.pe_array, hw.pe_array.pe.weight_spad_bytes // hw.word_bytes
    expected = 0
    for tile in tiling.tiles:
        fold = row_stationary.fold(array.rows, array.columns, 3, tile.out_row_stop - tile.out_row_start)
        pairs = (tile.filter_stop - tile.filter_start) * (tile.channel_stop - tile.channel_start)
        assert row_stationary.words_per_pe(fold, pairs, geometry.kernel_s) <= spad_words
        expected += row_stationary.tile_cycles(fold, pairs, geometry.out_width, geometry.kernel_s)
    assert run.pe_array.busy_cycles == expected
    # No tile beats the array's compute bound: every MAC takes a PE cycle.
    assert expected * array.rows * array.columns >= geometry.algorithmic_macs
    entry = simulate_layer(hw, cut)
    assert entry["functional_check"]["passed"] and entry["tiling"]["dataflow"] == "row_stationary"


def test_searching_any_dataflow_is_never_worse_than_either_alone(hwconfigs, cut, monkeypatch):
    """When every mapping is simulated (a small cut, and no budget), searching both dataflows finds the
    better of the two searches (the estimate only orders what is simulated)."""
    monkeypatch.setattr(mapper, "SIMULATED_TILES", 10**9)
    hw = hwconfigs["eyeriss_v1"]
    runs = {
        dataflow: search(LayerSetup(with_parameter(hw, "pe_array.dataflow", dataflow), cut))
        for dataflow in ("output_stationary", "row_stationary", "any")
    }
    for run in runs.values():
        assert run.search.simulated == run.search.space
    assert (
        runs["any"].search.space
        == runs["output_stationary"].search.space + runs["row_stationary"].search.space
    )
    assert runs["any"].cycles == min(runs["output_stationary"].cycles, runs["row_stationary"].cycles)


def test_the_best_rated_mapping_of_each_dataflow_is_simulated(hwconfigs, vgg16_trace):
    """conv4_2's space is too large to simulate whole: both dataflows' best-rated mappings still are."""
    hw = with_parameter(hwconfigs["eyeriss_v1"], "pe_array.dataflow", "any")
    setup = LayerSetup(hw, vgg16_trace.layer("conv4_2"))
    assert {m.dataflow for m in space_of(setup)} == {"output_stationary", "row_stationary"}
    simulated = []
    original = setup.simulate
    setup.simulate = lambda tiling, events=None: simulated.append(tiling.mapping) or original(tiling, events)
    run = search(setup)
    assert run.search.simulated < run.search.space
    assert {m.dataflow for m in simulated} == {"output_stationary", "row_stationary"}


def test_a_row_stationary_mapping_reads_back_from_its_directives_and_timeloops_spatial_r(cut):
    geometry = geometry_of(cut)
    mapping = LayerMapping(dram=Loops((5, 1, 1)), pe_tile=(8, 24, 10), dataflow="row_stationary")
    directives = to_directives(mapping, geometry)
    spatial = [d for d in directives if d["type"] == "spatial"]
    assert spatial == [
        {
            "target": "pe_array",
            "type": "spatial",
            "factors": "M=1 C=1 P=1 Q=1 R=3 S=1 N=1",
            "permutation": "RMCPQSN",
            "dataflow": "row_stationary",
        }
    ]
    assert from_directives(directives, geometry) == mapping
    # A Timeloop file says it by spreading the filter rows over the PEs, without our key.
    del spatial[0]["dataflow"]
    assert from_directives(directives, geometry).dataflow == "row_stationary"
    # An output-stationary mapping writes no spatial directive and reads back as the machine's dataflow.
    plain = to_directives(LayerMapping(dram=Loops((5, 1, 1)), pe_tile=(8, 24, 10)), geometry)
    assert all(d["type"] != "spatial" for d in plain)
    assert from_directives(plain, geometry).dataflow == ""


def test_a_mapping_in_a_dataflow_the_machine_does_not_run_is_refused(hwconfigs, cut):
    geometry = geometry_of(cut)
    rs = to_directives(
        LayerMapping(dram=Loops((5, 1, 1)), pe_tile=(8, 24, 10), dataflow="row_stationary"), geometry
    )
    with pytest.raises(
        MappingError, match="a row-stationary mapping: this machine's PE array runs output_st"
    ):
        simulate_layer(hwconfigs["cnvlutin"], cut, mapping_file=given_file(cut.name, rs))
    # On Eyeriss: a tile of more pairs than its scratchpads hold is refused; a smaller one runs.
    big = to_directives(
        LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(40, 24, 10), dataflow="row_stationary"), geometry
    )
    with pytest.raises(
        MappingError, match="each PE holds 720 words of filter rows, its weight scratchpad 224"
    ):
        simulate_layer(hwconfigs["eyeriss_v1"], cut, mapping_file=given_file(cut.name, big))
    entry = simulate_layer(hwconfigs["eyeriss_v1"], cut, mapping_file=given_file(cut.name, rs))
    assert entry["functional_check"]["passed"] and entry["tiling"]["dataflow"] == "row_stationary"
    assert entry["mapping"] == rs


def test_a_mapping_files_unknown_dataflow_is_refused_where_it_is(cut):
    directives = [
        {"target": "DRAM", "type": "temporal", "factors": "M=1 C=1 P=1"},
        {"target": "pe_array", "type": "spatial", "factors": "R=3", "dataflow": "weight_stationary"},
    ]
    with pytest.raises(MappingError, match=r"mapping\[1\]\.dataflow: expected one of output_stationary"):
        from_directives(directives, geometry_of(cut), "test-mapping")


def test_the_command_line_searches_another_dataflow_or_any(tmp_path):
    args = ["run", "hwconfigs/eyeriss_v1.yaml", "traces/vgg16_china", "--layer", "conv5_1"]
    result = CliRunner().invoke(main, [*args, "--dataflow", "any", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    refused = CliRunner().invoke(
        main, ["run", "hwconfigs/cnvlutin.yaml", *args[2:], "--dataflow", "row_stationary"]
    )
    assert refused.exit_code == 2
    assert "pe_array.dataflow: the zero_skip_activations PEs run output_stationary only" in refused.output


@pytest.mark.parametrize("parameter", ["noc.bandwidth_bytes_per_cycle", "dram.bandwidth_bytes_per_cycle"])
def test_more_bandwidth_never_costs_eyeriss_cycles_on_a_layer_it_once_did(hwconfigs, vgg16_trace, parameter):
    """conv4_1 on Eyeriss v1 ran 13 % slower with twice the DRAM bandwidth and 4 % slower with twice the
    NoC's: its row-stationary mappings all rate at the PE bound, and the estimate's tie-breaks, not the
    machine, chose among them (see sparsesim.mapper.NEAR)."""
    hw, layer = hwconfigs["eyeriss_v1"], vgg16_trace.layer("conv4_1")
    base = (
        hw.noc.bandwidth_bytes_per_cycle if parameter.startswith("noc") else hw.dram.bandwidth_bytes_per_cycle
    )
    cycles = [
        search(LayerSetup(with_parameter(hw, parameter, base * scale), layer)).cycles for scale in (0.5, 1, 2)
    ]
    assert cycles == sorted(cycles, reverse=True), cycles
