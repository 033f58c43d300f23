"""Hostile trace files (issue 9): no trace file crashes, hangs, floods memory or slips past validation.

Each test builds one hostile input and checks that loading it raises a TraceError whose message names the
file and what is wrong; the ``cli`` tests check that ``sparsesim`` then exits with status 2 and no traceback.
The valid base is a real layer: conv1_1 of the shipped trace (its real weights and bias) on a 16x16 crop of
its real input, with the reference output recomputed for the crop. Bombs are built as bytes (a crafted .npy
header, a zip member of zeros) so that every file stays small and every test fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.errors import TraceError
from sparsesim.workload.chain import source_manifest_sha256
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.pan import MAX_FRAMES, load_frames
from sparsesim.workload.trace import (
    MAX_JSON_DEPTH,
    MAX_JSON_INT_DIGITS,
    MAX_LAYERS,
    MAX_MANIFEST_BYTES,
    MAX_TRACE_NAME_CHARS,
    load_trace,
    save_trace,
)

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


# ------------------------------------------------------------------------------- the manifest's JSON


def test_manifest_nested_deeper_than_the_bound_is_refused_before_parsing(trace_dir):
    text = (trace_dir / "manifest.json").read_text()
    for depth in (MAX_JSON_DEPTH, 600, 200_000):  # the last two crash Python's json with RecursionError
        write_manifest_text(
            trace_dir,
            text.replace('"provenance": {', '"provenance": {"x": ' + "[" * depth + "]" * depth + ", ", 1),
        )
        refused(trace_dir, "manifest.json: manifest nests JSON arrays and objects more than 32 levels deep")
    cli_refuses("info", trace_dir, fragments=["manifest.json", "more than 32 levels deep"])


def test_provenance_nested_within_the_bound_loads_and_brackets_in_strings_do_not_count(trace_dir):
    manifest = manifest_of(trace_dir)
    nested = "leaf"
    for _ in range(MAX_JSON_DEPTH - 2):  # the manifest's object and the provenance take 2 levels
        nested = {"source": nested}
    manifest["provenance"]["derived_from"] = nested
    manifest["provenance"]["note"] = "[{" * 5000 + '\\"[' * 100
    write_manifest(trace_dir, manifest)
    assert load_trace(trace_dir).provenance["note"].startswith("[{[{")
    manifest["provenance"]["derived_from"] = {"one_more": nested}
    write_manifest(trace_dir, manifest)
    refused(trace_dir, "manifest.json: manifest nests JSON arrays and objects more than 32 levels deep")


def test_an_unterminated_string_full_of_escaped_quotes_is_refused(trace_dir):
    write_manifest_text(trace_dir, '{"name": "' + '\\"' * 200_000)
    refused(trace_dir, "manifest.json: manifest is not valid JSON")


@pytest.mark.parametrize("digits", [MAX_JSON_INT_DIGITS + 1, 5000])  # 5000: Python's int() refuses
def test_an_integer_with_too_many_digits_is_refused(trace_dir, digits):
    text = (trace_dir / "manifest.json").read_text()
    write_manifest_text(trace_dir, text.replace('"stride": 1', '"stride": ' + "7" * digits, 1))
    refused(trace_dir, "manifest.json: manifest refused: an integer of", f"{digits:,} digits (7777")
    cli_refuses("info", trace_dir, fragments=["manifest.json", f"an integer of {digits:,} digits"])


@pytest.mark.parametrize(
    ("literal", "fragment"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e999", "the number '1e999' is out of a float's range"),
    ],
)
def test_nan_infinity_and_out_of_range_numbers_are_refused(trace_dir, literal, fragment):
    text = (trace_dir / "manifest.json").read_text()
    write_manifest_text(trace_dir, text.replace('"provenance": {', f'"provenance": {{"x": {literal}, ', 1))
    refused(trace_dir, "manifest.json: manifest refused: " + fragment)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            '"format": "sparsesim-trace",',
            '"format": "sparsesim-trace", "format": "sparsesim-trace",',
            "'format'",
        ),
        ('"stride": 1,', '"stride": 1, "stride": 2,', "'stride'"),
        ('"bias": "', '"bias": "0", "bias": "', "'bias'"),
    ],
)
def test_a_key_given_twice_in_one_object_is_refused_and_named(trace_dir, old, new, key):
    text = (trace_dir / "manifest.json").read_text()
    assert old in text
    write_manifest_text(trace_dir, text.replace(old, new, 1))
    refused(trace_dir, f"manifest.json: manifest refused: duplicate key {key} in one object")
    cli_refuses("info", trace_dir, fragments=["manifest.json", f"duplicate key {key}"])


def test_a_lone_surrogate_escape_is_refused_and_placed(trace_dir):
    text = (trace_dir / "manifest.json").read_text()
    write_manifest_text(
        trace_dir, text.replace('"provenance": {', '"provenance": {"x": ["ok", "\\ud800"], ', 1)
    )
    refused(trace_dir, "manifest.json: manifest refused: a string at provenance.x[1] holds a lone UTF-16")
    text = text.replace('"provenance": {', '"provenance": {"emoji": "\\ud83d\\ude00", ', 1)  # a pair is text
    write_manifest_text(trace_dir, text)
    assert load_trace(trace_dir).provenance["emoji"] == "\U0001f600"


@pytest.mark.parametrize("name", ["two\nlines", "bell\x07", "", "x" * (MAX_TRACE_NAME_CHARS + 1), 7])
def test_a_trace_name_that_is_not_one_printable_line_is_refused(trace_dir, name):
    manifest = manifest_of(trace_dir)
    manifest["name"] = name
    write_manifest(trace_dir, manifest)
    refused(trace_dir, "manifest.json", "manifest.name")


def test_a_manifest_over_the_size_bound_is_refused_before_it_is_read(trace_dir):
    with open(trace_dir / "manifest.json", "r+b") as handle:  # sparse: takes no disk
        handle.truncate(MAX_MANIFEST_BYTES + 1)
    refused(trace_dir, "manifest.json: the manifest is 16,777,217 bytes; at most 16,777,216 are accepted")
    cli_refuses("info", trace_dir, fragments=["manifest.json", "at most 16,777,216 are accepted"])


def test_more_layers_than_the_bound_are_refused_before_any_entry_is_checked(trace_dir):
    manifest = manifest_of(trace_dir)
    manifest["layers"] = [{"junk": index} for index in range(MAX_LAYERS + 1)]
    write_manifest(trace_dir, manifest)
    message = refused(trace_dir, "manifest.json", "manifest.layers: 4,097 layers; at most 4096 are accepted")
    assert "junk" not in message


def test_layer_names_of_any_json_type_give_problems_not_a_crash(trace_dir):
    manifest = manifest_of(trace_dir)
    manifest["layers"] = [dict(manifest["layers"][0], name=[]), dict(manifest["layers"][0], name=[])]
    write_manifest(trace_dir, manifest)
    message = refused(trace_dir, "manifest.json", "layers[0].name: expected a string, got list")
    assert "layers[1].name: expected a string, got list" in message


# ------------------------------------------------------------------------------- not regular files


def test_a_manifest_that_links_to_dev_zero_is_refused(trace_dir):
    (trace_dir / "manifest.json").unlink()
    (trace_dir / "manifest.json").symlink_to("/dev/zero")
    refused(trace_dir, "manifest.json: the manifest must be a regular file, but this is a character device")
    cli_refuses("info", trace_dir, fragments=["manifest.json", "a character device"])


def test_a_manifest_that_is_a_fifo_is_refused_without_blocking(trace_dir):
    (trace_dir / "manifest.json").unlink()
    os.mkfifo(trace_dir / "manifest.json")
    refused(trace_dir, "manifest.json: the manifest must be a regular file, but this is a FIFO")


def test_a_manifest_that_is_a_directory_is_refused(trace_dir):
    (trace_dir / "manifest.json").unlink()
    (trace_dir / "manifest.json").mkdir()
    refused(trace_dir, "manifest.json: the manifest must be a regular file, but this is a directory")


def test_a_manifest_linked_from_outside_the_trace_directory_is_followed(trace_dir, tmp_path):
    shared = tmp_path / "shared_store_manifest.json"
    (trace_dir / "manifest.json").rename(shared)
    (trace_dir / "manifest.json").symlink_to(shared)
    assert load_trace(trace_dir).layer_names == ("conv1_1",)


# ------------------------------------------------------------------------------- the other trace-like files


def frame_sequence(tmp_path, trace_dir, frames):
    """A frame sequence directory whose frames are copies of the real one-layer trace."""
    path = tmp_path / "frames"
    path.mkdir()
    for entry in frames:
        if isinstance(entry, dict) and not (path / entry["trace"]).exists():
            shutil.copytree(trace_dir, path / entry["trace"])
    sequence = {
        "format": "sparsesim-frames",
        "format_version": 1,
        "name": "hostile",
        "provenance": {"what": "copies of one real layer, for a test"},
        "step_pixels": [0, 4],
        "frames": frames,
    }
    (path / "sequence.json").write_text(json.dumps(sequence))
    return path


def test_a_frame_sequence_index_gets_the_manifest_checks(tmp_path, trace_dir):
    frames = frame_sequence(tmp_path, trace_dir, [{"trace": "frame_000", "top": 0, "left": 0}])
    assert load_frames(frames).layer_names == ["conv1_1"]
    text = (frames / "sequence.json").read_text()
    (frames / "sequence.json").write_text(text.replace('"top": 0', '"top": 0, "top": 9'))
    with pytest.raises(
        TraceError, match=r"sequence\.json: frame sequence index refused: duplicate key 'top'"
    ):
        load_frames(frames)
    (frames / "sequence.json").write_text(
        text.replace('"name": ', '"x": ' + "[" * 5000 + "]" * 5000 + ', "name": ')
    )
    with pytest.raises(TraceError, match=r"sequence\.json: frame sequence index nests JSON arrays"):
        load_frames(frames)
    (frames / "sequence.json").unlink()
    os.mkfifo(frames / "sequence.json")
    with pytest.raises(TraceError, match=r"sequence\.json: the frame sequence index must be a regular file"):
        load_frames(frames)


def test_a_frame_listed_twice_and_too_many_frames_are_refused(tmp_path, trace_dir):
    twice = [{"trace": "frame_000", "top": 0, "left": 0}, {"trace": "frame_000", "top": 0, "left": 4}]
    frames = frame_sequence(tmp_path, trace_dir, twice)
    with pytest.raises(TraceError, match=r"frames\[1\]: trace 'frame_000' is listed twice"):
        load_frames(frames)
    sequence = json.loads((frames / "sequence.json").read_text())
    sequence["frames"] = [{"trace": f"frame_{i:04d}", "top": 0, "left": 0} for i in range(MAX_FRAMES + 1)]
    (frames / "sequence.json").write_text(json.dumps(sequence))
    with pytest.raises(TraceError, match=r"frames: 1,025 frames; at most 1024 are accepted"):
        load_frames(frames)


def test_source_manifest_checksum_reads_the_manifest_with_the_same_checks(trace_dir):
    trace = load_trace(trace_dir)
    digest = source_manifest_sha256(trace)
    assert digest == hashlib.sha256((trace_dir / "manifest.json").read_bytes()).hexdigest()
    (trace_dir / "manifest.json").unlink()
    (trace_dir / "manifest.json").symlink_to("/dev/zero")
    with pytest.raises(
        TraceError, match=r"manifest\.json: the manifest of the source trace .* character device"
    ):
        source_manifest_sha256(trace)
    (trace_dir / "manifest.json").unlink()
    (trace_dir / "manifest.json").write_text('{"layers": [{"name": "conv1_1"}], "layers": []}')
    with pytest.raises(
        TraceError, match=r"manifest\.json: manifest of the source trace .* duplicate key 'layers'"
    ):
        source_manifest_sha256(trace)
    (trace_dir / "manifest.json").write_text('{"name": "x", "layers": [[]]}')
    with pytest.raises(TraceError, match=r"manifest\.json: not a readable trace manifest"):
        source_manifest_sha256(trace)
