"""Mappings a user gives: they run on real tensor cuts with the functional check passing, the PE tile alone
decides the PEs' work, the report's mapping gives back the same run, and a mapping the machine cannot run
is refused with the file, the layer and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsesim.accelerator import geometry_of
from sparsesim.cli import main
from sparsesim.errors import MappingError
from sparsesim.mapping import LayerMapping, Loops
from sparsesim.mapping.directives import MappingFile, read_mapping_file, to_directives
from sparsesim.mapping.loopnest import DIMS, covering, dimension_sizes
from sparsesim.simulator import simulate, simulate_layer
from tests.mapping.strategies import mappings
from tests.real_cuts import crop


def given_file(name: str, directives: list, source: str = "test-mapping") -> MappingFile:
    return MappingFile(source, None, {name: (f"layers.{name}.mapping", directives)}, {})


@pytest.fixture(scope="module")
def cut(vgg16_trace):
    """A real corner of conv3_1: 24 channels of 10 x 12 pixels, 40 filters (its ReLU inputs and weights)."""
    return crop(vgg16_trace.layer("conv3_1"), 24, 10, 12, 40, "conv3_1_cut")


def small_machine(hwconfigs, name="cnvlutin"):
    """The shipped config with a PE array small enough that a 40-filter cut has several filter groups."""
    from sparsesim.config.overrides import with_parameter

    hw = with_parameter(hwconfigs[name], "pe_array.columns", 4)
    return with_parameter(hw, "pe_array.pe.filter_lanes", 4)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_legal_mapping_runs_and_computes_the_layer(hwconfigs, cut, data):
    hw = small_machine(hwconfigs)
    geometry = geometry_of(cut)
    mapping = data.draw(mappings(geometry, max_filters=16))
    entry = simulate_layer(hw, cut, mapping_file=given_file(cut.name, to_directives(mapping, geometry)))
    assert entry["tiling"]["mapped_by"] == "file"
    assert entry["functional_check"]["passed"]
    assert entry["computes"]["actual"] + entry["computes"]["skipped"] == geometry.algorithmic_macs
    assert entry["cycles"] >= entry["bound"]["bound_cycles"]
    # The PE tile decides the PEs' work; the loops above it only move data.
    same_tile = LayerMapping(
        dram=Loops(tuple(covering(dimension_sizes(geometry)[d], mapping.extent(d)) for d in DIMS)),
        pe_tile=mapping.pe_tile,
    )
    other = simulate_layer(hw, cut, mapping_file=given_file(cut.name, to_directives(same_tile, geometry)))
    assert other["components"]["pe_array"]["actions"] == entry["components"]["pe_array"]["actions"]
    pe_busy = [e["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"] for e in (entry, other)]
    assert pe_busy[0] == pe_busy[1]


def test_spilled_partial_sums_cost_dram_traffic_and_the_outputs_stay_right(hwconfigs, cut):
    hw = small_machine(hwconfigs, "dadiannao")
    geometry = geometry_of(cut)
    inner = LayerMapping(dram=Loops((10, 3, 2), "KPC"), pe_tile=(4, 8, 5))
    outer = LayerMapping(dram=Loops((10, 3, 2), "CKP"), pe_tile=(4, 8, 5))
    kept, spilled = (
        simulate_layer(hw, cut, mapping_file=given_file(cut.name, to_directives(m, geometry)))
        for m in (inner, outer)
    )
    assert kept["dram_traffic"]["bytes"]["partial_sums"] == 0
    outputs = geometry.filters * geometry.out_height * geometry.out_width
    # Every partial sum of the first two channel blocks goes out and comes back, 2 bytes each way.
    assert spilled["dram_traffic"]["bytes"]["partial_sums"] == 2 * 2 * 2 * outputs
    assert spilled["functional_check"]["passed"] and kept["functional_check"]["passed"]
    assert spilled["computes"] == kept["computes"]
    assert spilled["energy_pj"] > kept["energy_pj"]


def test_streaming_row_blocks_through_one_buffer_tile_overlaps_load_and_compute(hwconfigs, vgg16_trace):
    """conv3_1 fits the buffer whole: as one tile, its load, compute and write-back run back to back; as one
    buffer tile streamed in row blocks, each block computes while the next loads."""
    hw = hwconfigs["cnvlutin"]
    layer = vgg16_trace.layer("conv3_1")
    geometry = geometry_of(layer)
    one_tile = LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(256, 128, 28))
    streamed = LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(256, 128, 4), global_buffer=Loops((1, 1, 7)))
    whole, blocks = (
        simulate_layer(hw, layer, mapping_file=given_file(layer.name, to_directives(m, geometry)))
        for m in (one_tile, streamed)
    )
    assert blocks["cycles"] < 0.75 * whole["cycles"]
    assert blocks["dram_traffic"]["bytes"] == whole["dram_traffic"]["bytes"]  # the halo is not fetched twice


def test_the_reports_mappings_given_back_give_the_same_run(hwconfigs, cut, tmp_path):
    for name in ("cnvlutin", "scnn", "eyeriss_v1", "eyeriss_v2", "snapea_exact"):
        hw = hwconfigs[name]
        first = simulate_layer(hw, cut)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"schema_version": 5, "layers": [first]}))
        again = simulate_layer(hw, cut, mapping_file=read_mapping_file(path))
        assert again["tiling"]["mapped_by"] == "file"
        for key in ("cycles", "computes", "energy_pj", "dram_traffic", "mapping"):
            assert again[key] == first[key], (name, key)


@pytest.mark.parametrize(
    "config, mapping, message",
    [
        ("cnvlutin", LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(40, 24, 10)), "at most 16 at once"),
        ("scnn", LayerMapping(dram=Loops((2, 1, 1)), pe_tile=(20, 24, 10)), "planar-tiled"),
    ],
)
def test_a_mapping_the_machine_cannot_run_is_refused(hwconfigs, cut, config, mapping, message):
    hw = small_machine(hwconfigs) if config == "cnvlutin" else hwconfigs[config]
    with pytest.raises(MappingError, match=message) as error:
        simulate_layer(hw, cut, mapping_file=given_file(cut.name, to_directives(mapping, geometry_of(cut))))
    assert str(error.value).startswith("test-mapping: conv3_1_cut:")


def test_a_mapping_too_large_for_the_buffer_is_refused(hwconfigs, cut):
    from sparsesim.config.overrides import with_parameter

    hw = with_parameter(small_machine(hwconfigs), "global_buffer.capacity_bytes", 32768)
    geometry = geometry_of(cut)
    whole = LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(16, 24, 10), global_buffer=Loops((3, 1, 1)))
    with pytest.raises(MappingError, match=r"two buffer tiles \(double-buffered\) need [\d,]+ bytes"):
        simulate_layer(hw, cut, mapping_file=given_file(cut.name, to_directives(whole, geometry)))
    # Streaming the weights and inputs through makes room: only the outputs stay.
    streamed = LayerMapping(
        dram=Loops((1, 1, 1)),
        pe_tile=(16, 24, 10),
        global_buffer=Loops((3, 1, 1)),
        buffer_keeps=frozenset({"Outputs"}),
    )
    entry = simulate_layer(hw, cut, mapping_file=given_file(cut.name, to_directives(streamed, geometry)))
    assert entry["functional_check"]["passed"]


# The shipped Timeloop-style mapping of conv3_1, with Timeloop's own level names (DRAM, shared_glb, ...).
TIMELOOP_STYLE = Path(__file__).resolve().parent.parent / "mappings" / "conv3_1_streamed.yaml"


def test_the_shipped_mapping_runs_as_its_comment_and_the_readme_say(hwconfigs, vgg16_trace):
    from tests.conftest import ROOT

    path = ROOT / "mappings" / "conv3_1_streamed.yaml"
    hw = hwconfigs["cnvlutin"]
    # As the README's command runs it: the layer alone (its weights then stay in the PEs).
    streamed = simulate(hw, vgg16_trace, ["conv3_1"], read_mapping_file(path)).layers[0]
    mapped = simulate(hw, vgg16_trace, ["conv3_1"]).layers[0]
    assert streamed["functional_check"]["passed"]
    comment = " ".join(line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#"))
    assert f"this file's {streamed['cycles']:,} cycles on Cnvlutin against the mapper's " in comment
    assert f"against the mapper's {mapped['cycles']:,} (it searches" in comment
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"takes {streamed['cycles']:,} cycles where the mapper, which searches the row blocks too, " in readme
    )
    assert f"the row blocks too, takes {mapped['cycles']:,}." in readme


def run_conv3_1(mapping_path):
    args = ["run", "hwconfigs/cnvlutin.yaml", "traces/vgg16_china", "--layer", "conv3_1"]
    return CliRunner().invoke(main, [*args, "--mapping", str(mapping_path)])


def test_a_timeloop_style_mapping_file_runs_from_the_command_line(tmp_path):
    result = run_conv3_1(TIMELOOP_STYLE)
    assert result.exit_code == 0, result.output
    assert "conv3_1       file" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("conv3_1       file"))
    assert row.split()[2:6] == ["-", "P7", "M256", "C128"]


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("mapping: []", "mapping", "non-empty list"),
        ("mapping:\n  - {target: DRAM, type: temporal, factors: M2 Q8}", "mapping[0].factors", "Q=8"),
        ("mapping:\n  - {target: DRAM, type: spatial, factors: M2}", "mapping[0]", "spatial loop at DRAM"),
        ("mapping:\n  - {target: DRAM, type: temporal, factors: M2 X4}", "mapping[0].factors", "'X4'"),
        (
            "mapping:\n  - {target: DRAM, type: temporal, factors: M2, speed: 3}",
            "mapping[0].speed",
            "not a key",
        ),
        (
            "mapping:\n  - {target: DRAM, type: temporal, permutation: MMC}",
            "mapping[0].permutation",
            "at most once",
        ),
        ("layers: {conv9: {mapping: [{target: DRAM, type: temporal}]}}", "layers.conv9", "no layer 'conv9'"),
        ("mapping: [{target: DRAM, type: temporal}]\nlayers: {}", "", "not both"),
        ("!!python/object:os.system {}", "", "invalid YAML"),
        (
            "mapping:\n  - {target: DRAM, type: temporal, factors: M=1 C=1 P=3}",
            "mapping",
            "the PE array's factors",
        ),
    ],
)
def test_a_malformed_mapping_file_says_where_and_what(tmp_path, text, where, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_conv3_1(path)
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and message in result.output
    if where:
        assert f"{where}:" in result.output or f"{where} (" in result.output


def test_one_mapping_for_several_layers_is_refused_before_any_simulation(tmp_path):
    args = ["run", "hwconfigs/cnvlutin.yaml", "traces/vgg16_china", "--mapping", str(TIMELOOP_STYLE)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "one mapping for a run of 13 layers" in result.output


def test_residual_factors_and_grouped_conv_names_read_as_timeloop_does(tmp_path):
    """Timeloop's factor 0 is the residual (what the other levels leave of the dimension), Sparseloop's
    grouped convolution names P and Q E and F (and G, one group here), and its BackingStorage is DRAM: the
    shipped streamed mapping written that way runs exactly as the shipped file."""
    path = tmp_path / "residual.yaml"
    path.write_text(
        "mapping:\n"
        "  - {target: BackingStorage, type: temporal, factors: M1 C1 E1 F1 R1 S1 N1 G0, permutation: CMEFG}\n"
        "  - {target: shared_glb, type: temporal, factors: E7 M1 C1, permutation: ECM}\n"
        "  - {target: shared_glb, type: datatype, keep: [Weights, Inputs, Outputs], bypass: []}\n"
        "  - {target: inter_PE_spatial, type: spatial, factors: M16}\n"
        "  - {target: pe_spad, type: temporal, factors: M0 C0 E0 F0 R0 S0 N1 G1}\n"
    )
    written, shipped = run_conv3_1(path), run_conv3_1(TIMELOOP_STYLE)
    assert written.exit_code == 0, written.output
    assert written.output.replace(str(path), "") == shipped.output.replace(str(TIMELOOP_STYLE), "")


@pytest.mark.parametrize(
    "factors, message",
    [
        ("M0 C1 P1 Q0 R1 S1 N1", "Q=40: above the PE array"),  # the residual of Q lands at DRAM
        ("M2 G2", "G=2: above the PE array"),
    ],
)
def test_residuals_and_groups_the_machine_cannot_run_are_refused(tmp_path, factors, message):
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"mapping:\n  - {{target: BackingStorage, type: temporal, factors: {factors}}}\n"
        "  - {target: pe_spad, type: temporal, factors: M0 C0 P0 R0 S0}\n"
    )
    result = run_conv3_1(path)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_two_residuals_of_one_dimension_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "mapping:\n  - {target: DRAM, type: temporal, factors: M0}\n"
        "  - {target: pe_spad, type: temporal, factors: M0 C128 Q40 R3 S3}\n"
    )
    result = run_conv3_1(path)
    assert result.exit_code == 2, result.output
    assert "M=0 at more than one level" in result.output
