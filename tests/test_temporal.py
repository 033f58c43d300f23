"""Temporal reuse (EVA²) on frames of a synthetic pan across the shipped trace's real image."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.config import load_hwconfig
from sparsesim.errors import SimulationError
from sparsesim.temporal import compare_frames_to_golden, frames_golden_summary, simulate_frames
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.pan import make_pan_frames
from tests.conftest import HWCONFIG_DIR, ROOT
from tests.goldens import FRAMES_GOLDEN_DIR, FRAMES_GOLDEN_RUNS, REGENERATE, frames_golden_run


def eva2(**temporal):
    hw = load_hwconfig(HWCONFIG_DIR / "eva2.yaml")
    return dataclasses.replace(hw, temporal=dataclasses.replace(hw.temporal, **temporal))


@pytest.fixture(scope="module")
def whole_stride_pan(vgg16_trace, tmp_path_factory):
    """3 frames of 16x32 pixels panning 2 px right a frame: a whole activation at conv1_2's pooled output."""
    out = tmp_path_factory.mktemp("pan") / "pan_0_2"
    return make_pan_frames(vgg16_trace, out, frames=3, step=(0, 2), size=(16, 32), last_layer="conv2_2")


@pytest.fixture(scope="module")
def small_run(whole_stride_pan):
    return simulate_frames(
        eva2(key_frame_interval=2, target_layer="conv1_2", search_radius_pixels=4), whole_stride_pan
    )


def test_key_frames_run_every_layer_and_predicted_frames_only_the_suffix(small_run):
    kinds = [frame["kind"] for frame in small_run.frames]
    assert kinds == ["key", "predicted", "key"]
    key, predicted = small_run.frames[0], small_run.frames[1]
    assert [layer["name"] for layer in key["layers"]] == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert [layer["name"] for layer in predicted["layers"]] == ["conv2_1", "conv2_2"]
    unit = predicted["motion_unit"]
    assert predicted["cycles"] == sum(layer["cycles"] for layer in predicted["layers"]) + (
        unit["motion_estimation_cycles"] + unit["warp_cycles"]
    )
    assert key["cycles"] == key["baseline_cycles"]
    assert key["energy_pj"] > key["baseline_energy_pj"]  # storing the pixels and the target activation
    assert predicted["cycles"] < predicted["baseline_cycles"]
    assert predicted["energy_pj"] < predicted["baseline_energy_pj"]
    assert small_run.totals["functional_check_passed"]
    assert small_run.data["target"]["stride_pixels"] == 2


def test_a_whole_stride_pan_is_found_and_predicted_exactly_away_from_the_borders(small_run):
    predicted = small_run.frames[1]
    assert predicted["motion"]["true_vector_pixels"] == [0, 2]
    assert predicted["motion"]["vectors_equal_to_true"] > 0.9
    assert predicted["error"]["target_interior"]["relative_rms_error"] == 0.0
    # The borders are not free: padding effects and the new column of content.
    assert predicted["error"]["target"]["relative_rms_error"] > 0
    # Motion compensation beats reusing the key frame's activation unmoved.
    error = predicted["error"]
    assert (
        error["last_layer"]["relative_rms_error"]
        < error["last_layer_without_motion_compensation"]["relative_rms_error"]
    )


def test_the_last_layer_error_is_measured_against_the_network_run_on_the_frame(whole_stride_pan, small_run):
    from sparsesim.sparse.motion import block_motion, warp_activation

    key, frame = whole_stride_pan.frames[0], whole_stride_pan.frames[1]
    field = block_motion(key.layers[0].input, frame.layers[0].input, 2, 3, 4)
    warped = warp_activation(key.layers[2].input, field.vectors_pixels, 2).output.astype(np.float16)
    conv2_1 = dataclasses.replace(frame.layers[2], input=warped.astype(np.float32))
    out = layer_reference(conv2_1).astype(np.float32).astype(np.float16).astype(np.float32)
    conv2_2 = dataclasses.replace(frame.layers[3], input=out)
    last = layer_reference(conv2_2).astype(np.float32)
    real = frame.layers[3].output
    expected = np.sqrt(np.mean((last.astype(np.float64) - real) ** 2)) / np.sqrt(
        np.mean(real.astype(np.float64) ** 2)
    )
    assert small_run.frames[1]["error"]["last_layer"]["relative_rms_error"] == pytest.approx(
        expected, rel=1e-9
    )


def test_without_reuse_every_frame_is_a_key_frame(whole_stride_pan):
    report = simulate_frames(eva2(key_frame_interval=1), whole_stride_pan)
    assert [f["kind"] for f in report.frames] == ["key"] * 3
    assert report.totals["speedup"] == 1.0 and report.totals["energy_saving"] == 0.0


def test_adaptive_key_frames_promote_a_frame_whose_match_error_is_too_high(whole_stride_pan):
    report = simulate_frames(
        eva2(key_frame_interval=3, target_layer="conv1_2", search_radius_pixels=1, key_frame_threshold=1e-3),
        whole_stride_pan,
    )
    kinds = [f["kind"] for f in report.frames]
    assert kinds[0] == "key" and "key_adaptive" in kinds
    adaptive = report.frames[kinds.index("key_adaptive")]
    assert adaptive["motion_unit"]["motion_estimation_cycles"] > 0
    assert (
        adaptive["cycles"]
        == adaptive["baseline_cycles"] + adaptive["motion_unit"]["motion_estimation_cycles"]
    )


def test_a_target_that_leaves_no_layer_to_run_is_refused(whole_stride_pan):
    with pytest.raises(SimulationError, match="before the last"):
        simulate_frames(eva2(target_layer="conv2_2"), whole_stride_pan)
    with pytest.raises(SimulationError, match="before the last"):
        simulate_frames(eva2(target_layer="conv9_9"), whole_stride_pan)


def test_same_inputs_same_report(whole_stride_pan, small_run):
    again = simulate_frames(
        eva2(key_frame_interval=2, target_layer="conv1_2", search_radius_pixels=4), whole_stride_pan
    )
    assert again.to_json() == small_run.to_json()


def test_cli_makes_a_pan_and_simulates_it(tmp_path):
    runner = CliRunner()
    out = tmp_path / "pan"
    result = runner.invoke(
        main,
        ["make-trace", "pan", str(ROOT / "traces" / "vgg16_china"), str(out), "--frames", "2",
         "--step", "1,3", "--size", "16x16", "--last-layer", "conv2_1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report_path = tmp_path / "frames.json"
    result = runner.invoke(
        main,
        [
            "frames",
            str(HWCONFIG_DIR / "eva2.yaml"),
            str(out),
            "--target",
            "conv1_2",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "predicted <0" in result.output
    data = json.loads(report_path.read_text())
    assert data["frames"][1]["error"]["target"]["relative_rms_error"] > 0
    bad = runner.invoke(
        main, ["make-trace", "pan", str(ROOT / "traces" / "vgg16_china"), str(out), "--step", "x"]
    )
    assert bad.exit_code == 2


@pytest.mark.golden
@pytest.mark.parametrize("name", sorted(FRAMES_GOLDEN_RUNS))
def test_documented_frame_sequences_match_their_golden_results(name, tmp_path, vgg16_trace):
    assert vgg16_trace.path == str(ROOT / "traces" / "vgg16_china")
    report = frames_golden_run(name, ROOT, tmp_path, source=vgg16_trace)  # the session's loaded trace
    assert report.totals["functional_check_passed"]
    path = FRAMES_GOLDEN_DIR / f"{name}.json"
    assert path.is_file(), f"no golden file {path}: run {REGENERATE} eva2"
    problems = compare_frames_to_golden(frames_golden_summary(report), json.loads(path.read_text()))
    assert not problems, (
        "results differ from the golden ones:\n  "
        + "\n  ".join(problems)
        + f"\nIf the change is intended: {REGENERATE} eva2"
    )


def test_each_layer_is_mapped_on_the_first_frame_and_keeps_its_mapping(whole_stride_pan):
    from sparsesim.errors import MappingError
    from sparsesim.mapping.directives import MappingFile
    from sparsesim.simulator import simulate_layer
    from sparsesim.temporal import _MappedOnce

    hw = eva2()
    mapped = _MappedOnce(hw, hw.energy_table(), "test")
    first, second = (frame.layer("conv1_2") for frame in whole_stride_pan.frames[:2])
    searched, kept = mapped.simulate(first), mapped.simulate(second)
    assert searched["tiling"]["mapped_by"] == "mapper" and kept["tiling"]["mapped_by"] != "mapper"
    assert kept["mapping"] == searched["mapping"]
    # A kept mapping the frame cannot take (here: the searched one with the DRAM loops moved into the buffer,
    # a buffer tile of the whole layer, far over the buffer) is searched again rather than failing the run.
    directives = [dict(d) for d in searched["mapping"]]
    dram, buffer = (next(d for d in directives if d["target"] == t and d["type"] == "temporal") for t in
                    ("dram", "global_buffer"))  # fmt: skip
    outer = dict(f.split("=") for f in dram["factors"].split())
    inner = dict(f.split("=") for f in buffer["factors"].split())
    buffer["factors"] = " ".join(f"{d}={int(v) * int(outer[d])}" for d, v in inner.items())
    dram["factors"] = " ".join(f"{d}=1" for d in outer)
    mapped.kept = MappingFile("test", None, {"conv1_2": ("layers.conv1_2.mapping", directives)}, {})
    with pytest.raises(MappingError, match="capacity_bytes"):
        simulate_layer(hw, second, None, mapped.kept)
    assert mapped.simulate(second)["mapping"] == searched["mapping"]
