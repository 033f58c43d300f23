"""Hostile trace files (issue 9): no trace file crashes, hangs, floods memory or slips past validation.

Each test builds one hostile input and checks that loading it raises a TraceError whose message names the
file and what is wrong; the ``cli`` tests check that ``sparsesim`` then exits with status 2 and no traceback.
The valid base is a real layer: conv1_1 of the shipped trace (its real weights and bias) on a 16x16 crop of
its real input, with the reference output recomputed for the crop. Bombs are built as bytes (a crafted .npy
header, a zip member of zeros) so that every file stays small and every test fast.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.errors import TraceError
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.pan import load_frames
from sparsesim.workload.trace import load_trace, save_trace

SHIPPED = Path(__file__).resolve().parents[2] / "traces" / "vgg16_china"
DADIANNAO = Path(__file__).resolve().parents[2] / "hwconfigs" / "dadiannao.yaml"


@pytest.fixture(scope="module")
def real_crop_trace(tmp_path_factory):
    """A one-layer trace: the shipped conv1_1 (real weights) on a 16x16 crop of its real input."""
    source = load_trace(SHIPPED, layers=["conv1_1"])
    layer = source.layer("conv1_1")
    cropped = replace(layer, input=np.ascontiguousarray(layer.input[:, :16, :16]))
    cropped = replace(cropped, output=layer_reference(cropped).astype(np.float32))
    provenance = dict(source.provenance, crop="input rows 0..15, columns 0..15; output recomputed")
    path = tmp_path_factory.mktemp("real") / "conv1_1_crop16"
    save_trace(path, f"{source.name}_conv1_1_crop16", provenance, [cropped])
    return path


@pytest.fixture
def trace_dir(real_crop_trace, tmp_path):
    """A fresh copy of the real one-layer trace, to be made hostile."""
    path = tmp_path / "trace"
    shutil.copytree(real_crop_trace, path)
    return path


def manifest_of(path):
    return json.loads((path / "manifest.json").read_text())


def write_manifest_text(path, text):
    (path / "manifest.json").write_text(text, encoding="utf-8")


def write_manifest(path, manifest):
    write_manifest_text(path, json.dumps(manifest, indent=2))


def refused(path, *fragments, **load_options):
    """Load ``path``, expect a TraceError holding every fragment; return its message."""
    with pytest.raises(TraceError) as info:
        load_trace(path, **load_options)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def cli_refuses(*args, fragments=()):
    """Run ``sparsesim ARGS``: exit status 2, every fragment in the output, no traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    return result.output


def test_the_real_base_loads(trace_dir):
    layer = load_trace(trace_dir).layer("conv1_1")
    assert layer.input.shape == (3, 16, 16) and layer.output.shape == (64, 16, 16)


# ------------------------------------------------------------------------------- names: fullmatch, not $


def test_layer_name_with_a_final_newline_is_refused(trace_dir):
    manifest = manifest_of(trace_dir)
    manifest["layers"][0]["name"] = "conv1_1\n"
    write_manifest(trace_dir, manifest)
    refused(trace_dir, "manifest.json", "layers[0] ('conv1_1\\n').name: must be 1 to 128 letters")
    cli_refuses(
        "run", DADIANNAO, trace_dir, "--layer", "conv1_1", fragments=["manifest.json", ".name: must be"]
    )


def test_file_name_and_digests_with_a_final_newline_are_refused(trace_dir):
    manifest = manifest_of(trace_dir)
    entry = manifest["layers"][0]
    entry["file"] = "conv1_1.npz\n"
    entry["file_sha256"] += "\n"
    entry["sha256"]["input"] += "\n"
    write_manifest(trace_dir, manifest)
    message = refused(trace_dir, "manifest.json")
    assert "layers[0] (conv1_1).file: expected a bare file name" in message
    assert "layers[0] (conv1_1).file_sha256: expected a hex sha256 digest" in message
    assert "layers[0] (conv1_1).sha256: expected a hex sha256 digest" in message


def test_save_refuses_a_layer_name_with_a_final_newline(tmp_path, real_crop_trace):
    layer = load_trace(real_crop_trace).layer("conv1_1")
    with pytest.raises(TraceError, match=r"name must be 1 to 128 letters.*'conv1_1\\n'"):
        save_trace(tmp_path / "t", "named", {"note": "test"}, [replace(layer, name="conv1_1\n")])
    assert not (tmp_path / "t").exists()


def test_frame_directory_with_a_final_newline_is_refused(trace_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copytree(trace_dir, frames / "frame_000")
    sequence = {
        "format": "sparsesim-frames",
        "format_version": 1,
        "name": "hostile",
        "provenance": {},
        "step_pixels": [0, 4],
        "frames": [{"trace": "frame_000\n", "top": 0, "left": 0}],
    }
    (frames / "sequence.json").write_text(json.dumps(sequence))
    with pytest.raises(TraceError, match=r"sequence\.json: invalid frame sequence:\n  frames\[0\]"):
        load_frames(frames)
