"""Hostile trace files (issue 9): no trace file crashes, hangs, floods memory or slips past validation.

Each test builds one hostile input and checks that loading it raises a TraceError whose message names the
file and what is wrong; the ``cli`` tests check that ``sparsesim`` then exits with status 2 and no traceback.
The valid base is a real layer: conv1_1 of the shipped trace (its real weights and bias) on a 16x16 crop of
its real input, with the reference output recomputed for the crop. Bombs are built as bytes (a crafted .npy
header, a zip member of zeros) so that every file stays small and every test fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import tracemalloc
import zipfile
import zlib
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


# ------------------------------------------------------------------------------- layer files: building bombs


def npy_header(shape, descr, version=(1, 0)):
    """The bytes of a .npy header claiming ``shape`` and ``descr``, whatever data follows (or not)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    size = len(text).to_bytes(2 if version == (1, 0) else 4, "little")
    return b"\x93NUMPY" + bytes(version) + size + text


def npy_of(array):
    return npy_header(array.shape, array.dtype.str) + np.ascontiguousarray(array).tobytes()


def deflated(*pieces, zeros=0):
    """Raw deflate of ``pieces`` then ``zeros`` zero bytes, streamed: a bomb costs little memory to build."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, crc = [], 0
    for piece in pieces:
        out.append(packer.compress(piece))
        crc = zlib.crc32(piece, crc)
    block = bytes(1 << 20)
    for start in range(0, zeros, len(block)):
        piece = block[: min(len(block), zeros - start)]
        out.append(packer.compress(piece))
        crc = zlib.crc32(piece, crc)
    out.append(packer.flush())
    return b"".join(out), crc, sum(map(len, pieces)) + zeros


def raw_zip(members, *, comment=b""):
    """A zip built byte by byte: ``members`` are (name, stored bytes, method, crc, declared uncompressed
    size[, flags]); nothing is checked, so that each field can lie."""
    body, directory = b"", b""
    for name, stored, method, crc, size, *flags in members:
        name = name.encode()
        flag = flags[0] if flags else 0
        fields = (method, 0, 0x21, crc, len(stored), size, len(name))
        directory += struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            flag,
            *fields,
            0,
            0,
            0,
            0,
            0o100644 << 16,
            len(body),
        )
        directory += name
        body += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flag, *fields, 0) + name + stored
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), len(comment)
    )
    return body + directory + end + comment


def real_arrays(trace_dir):
    """The real layer's arrays as stored (float16 operands, float32 bias and output)."""
    layer = load_trace(trace_dir).layer("conv1_1")
    return {
        "input": layer.input.astype("<f2"),
        "weights": layer.weights.astype("<f2"),
        "bias": layer.bias.astype("<f4"),
        "output": layer.output.astype("<f4"),
    }


def real_members(trace_dir, **replaced):
    """The zip members of the real layer (deflated, honest), with some replaced by hostile ones."""
    members = []
    for key, array in real_arrays(trace_dir).items():
        if key in replaced:
            members.append(replaced[key])
        else:
            stored, crc, size = deflated(npy_of(array))
            members.append((key + ".npy", stored, zipfile.ZIP_DEFLATED, crc, size))
    return members


def install_layer_file(trace_dir, data):
    """Make ``data`` the layer's .npz and give the manifest its checksum, so that the file passes the
    checksum and its contents reach the zip and .npy checks."""
    (trace_dir / "conv1_1.npz").write_bytes(data)
    manifest = manifest_of(trace_dir)
    manifest["layers"][0]["file_sha256"] = hashlib.sha256(data).hexdigest()
    write_manifest(trace_dir, manifest)


def peak_bytes_while_refused(trace_dir, *fragments):
    """Load, expect refusal with every fragment, and return the peak of Python's allocations meanwhile."""
    tracemalloc.start()
    try:
        refused(trace_dir, *fragments)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_byte_built_zip_of_the_real_layer_loads(trace_dir):
    install_layer_file(trace_dir, raw_zip(real_members(trace_dir)))
    np.testing.assert_array_equal(
        load_trace(trace_dir).layer("conv1_1").output, real_arrays(trace_dir)["output"]
    )


# ------------------------------------------------------------------------------- layer files: memory bombs


def test_a_manifest_claiming_1e12_elements_is_refused_before_any_file_is_read(trace_dir):
    manifest = manifest_of(trace_dir)
    entry = manifest["layers"][0]
    entry["input_shape"] = [3, 10**6, 10**6]  # consistent conv arithmetic: 3e12 input elements
    entry["output_shape"] = [64, 10**6, 10**6]
    write_manifest(trace_dir, manifest)
    (trace_dir / "conv1_1.npz").unlink()
    message = refused(
        trace_dir,
        "manifest.json",
        "zero-padded input of [3, 1000002, 1000002]",
        "at most 268,435,456 are accepted",
    )
    assert "missing layer file" not in message
    cli_refuses("info", trace_dir, fragments=["manifest.json", "at most 268,435,456 are accepted"])
    entry["input_shape"], entry["output_shape"] = [3, 16, 16], [64, 16, 16]
    entry["weight_shape"] = [2**28, 3, 3, 3]
    write_manifest(trace_dir, manifest)
    refused(trace_dir, "manifest.json", "the layer's arrays would hold 76,235,670,272 elements")


@pytest.mark.parametrize(
    ("stride", "padding", "fragment"),
    [
        (1, 10**18, "padding 1000000000000000000 makes a zero-padded input"),
        (1, 2**13, "padding 8192 makes a zero-padded input of [3, 16400, 16400]"),
        (10**18, 1, "stride 1000000000000000000 is longer than the padded input (18x18); at most 18"),
    ],
)
def test_absurd_padding_and_stride_are_refused_before_any_file_is_read(trace_dir, stride, padding, fragment):
    manifest = manifest_of(trace_dir)
    entry = manifest["layers"][0]
    entry["stride"], entry["padding"] = stride, padding
    entry["output_shape"] = [64, (16 + 2 * padding - 3) // stride + 1, (16 + 2 * padding - 3) // stride + 1]
    write_manifest(trace_dir, manifest)
    refused(trace_dir, "manifest.json", "layers[0] (conv1_1): " + fragment)
    cli_refuses("run", DADIANNAO, trace_dir, "--layer", "conv1_1", fragments=[fragment])


def test_save_refuses_a_stride_longer_than_the_padded_input(tmp_path, real_crop_trace):
    layer = load_trace(real_crop_trace).layer("conv1_1")
    strided = replace(layer, stride=19, output=layer.output[:, :1, :1])
    with pytest.raises(TraceError, match=r"stride 19 is longer than the padded input \(18x18\)"):
        save_trace(tmp_path / "t", "strided", {"note": "test"}, [strided])
    save_trace(tmp_path / "t", "strided", {"note": "test"}, [replace(strided, stride=18)])


def test_a_npy_header_claiming_1e12_elements_allocates_nothing(trace_dir):
    claim = npy_header((10**12,), "<f4") + bytes(64)
    stored, crc, size = deflated(claim)
    install_layer_file(
        trace_dir,
        raw_zip(real_members(trace_dir, output=("output.npy", stored, zipfile.ZIP_DEFLATED, crc, size))),
    )
    peak = peak_bytes_while_refused(
        trace_dir,
        "conv1_1.npz: array 'output': expected shape [64, 16, 16] (from the manifest), got [1000000000000]",
    )
    assert peak < 2 * 2**20  # the bombs inflate to 40 MiB
    cli_refuses("info", trace_dir, fragments=["conv1_1.npz: array 'output': expected shape [64, 16, 16]"])


def test_a_member_declaring_a_huge_inflated_size_is_not_inflated(trace_dir):
    # an honest bomb: 40 MiB of zeros after a valid header deflate to ~40 KB, within the file's size bound
    header = npy_header((64, 16, 16), "<f4")
    stored, crc, size = deflated(header, zeros=40 * 2**20)
    assert len(stored) < 100_000
    install_layer_file(
        trace_dir,
        raw_zip(real_members(trace_dir, output=("output.npy", stored, zipfile.ZIP_DEFLATED, crc, size))),
    )
    peak = peak_bytes_while_refused(
        trace_dir,
        f"conv1_1.npz: array 'output': its zip entry declares {size:,} bytes uncompressed",
        "not inflated",
    )
    assert peak < 2 * 2**20  # the bombs inflate to 40 MiB
    cli_refuses("info", trace_dir, fragments=["its zip entry declares", "not inflated"])


def test_a_member_lying_about_its_inflated_size_is_inflated_no_further_than_the_claim(trace_dir):
    # the same bomb declaring the honest size of the real output: zipfile stops there, the CRC refuses it
    header = npy_header((64, 16, 16), "<f4")
    stored, crc, _ = deflated(header, zeros=40 * 2**20)
    honest = len(header) + 64 * 16 * 16 * 4
    install_layer_file(
        trace_dir,
        raw_zip(real_members(trace_dir, output=("output.npy", stored, zipfile.ZIP_DEFLATED, crc, honest))),
    )
    peak = peak_bytes_while_refused(trace_dir, "conv1_1.npz: array 'output' is unreadable", "Bad CRC-32")
    assert peak < 2 * 2**20  # the bombs inflate to 40 MiB


def test_a_layer_file_larger_than_its_shapes_allow_is_refused_unread(trace_dir):
    with open(trace_dir / "conv1_1.npz", "r+b") as handle:  # sparse: takes no disk
        handle.truncate(6 * 10**9)
    message = refused(
        trace_dir,
        "conv1_1.npz: the layer file is 6,000,000,000 bytes, more than the",
        "that arrays of the manifest's shapes can take",
    )
    assert "checksum" not in message  # refused on its size: never read, never hashed
    cli_refuses("info", trace_dir, fragments=["conv1_1.npz: the layer file is 6,000,000,000 bytes"])


def test_a_file_checksum_mismatch_stops_before_anything_is_inflated(trace_dir):
    header = npy_header((64, 16, 16), "<f4")
    stored, crc, size = deflated(header, zeros=40 * 2**20)
    bomb = raw_zip(real_members(trace_dir, output=("output.npy", stored, zipfile.ZIP_DEFLATED, crc, size)))
    (trace_dir / "conv1_1.npz").write_bytes(bomb)  # the manifest still holds the real file's checksum
    peak = peak_bytes_while_refused(
        trace_dir, "conv1_1.npz: file checksum mismatch", "nothing in it was read"
    )
    assert peak < 2 * 2**20  # the bombs inflate to 40 MiB


# ------------------------------------------------------------------------------- layer files: odd zips


@pytest.mark.parametrize(
    ("hostile", "fragment"),
    [
        (lambda m: m + [m[0]], "array 'input' is in the zip 2 times"),
        (lambda m: [(*m[0][:2], 12, *m[0][3:])] + m[1:], "array 'input' is compressed with zip method 12"),
        (lambda m: [(*m[0], 0x1)] + m[1:], "array 'input' is encrypted or patched in the zip (flags 0x1)"),
    ],
    ids=["member-twice", "bzip2", "encrypted"],
)
def test_zip_members_that_readers_would_disagree_on_or_cannot_read_are_refused(trace_dir, hostile, fragment):
    install_layer_file(trace_dir, raw_zip(hostile(real_members(trace_dir))))
    refused(trace_dir, "conv1_1.npz: " + fragment)


def test_zip_end_records_that_would_flood_zipfile_are_refused(trace_dir):
    members = real_members(trace_dir)
    honest = raw_zip(members)
    huge_directory = honest[:-10] + (50 * 2**20).to_bytes(4, "little") + honest[-6:]
    install_layer_file(trace_dir, huge_directory)
    refused(trace_dir, "conv1_1.npz: not a readable .npz", "its zip directory takes 52,428,800 bytes")
    install_layer_file(trace_dir, raw_zip(members, comment=b"a comment"))
    refused(trace_dir, "conv1_1.npz: not a readable .npz", "no zip end record at the end of the file")
    locator = b"PK\x06\x07" + bytes(16)
    install_layer_file(trace_dir, honest[:-22] + locator + honest[-22:])
    refused(trace_dir, "conv1_1.npz: not a readable .npz", "zip64 end record")


@pytest.mark.parametrize(
    ("npy", "fragment"),
    [
        (npy_header((64, 16, 16), "<f4", version=(3, 0)), "is a .npy of format version (3, 0)"),
        (b"\x93NUMPY\x01\x00" + (4000).to_bytes(2, "little") + b"-" * 3990 + b"1\n", "is unreadable"),
        (b"\x93NUMPY\x01\x00" + (60000).to_bytes(2, "little") + b" " * 3000, "is unreadable"),
        (
            b"\x93NUMPY\x01\x00" + (63).to_bytes(2, "little") + b"{'shape': (64, 16, 16" + b" " * 41 + b"\n",
            "is unreadable",
        ),
        (npy_header((64, 16, 16), ">f4"), "expected dtype float32 (little-endian), got >f4"),
        (npy_header((64, 16, 16), "|O"), "is an object array (a pickle)"),
    ],
    ids=[
        "version-3",
        "unary-minus-chain",
        "header-longer-than-the-bound",
        "unclosed-bracket",
        "big-endian",
        "object",
    ],
)
def test_hostile_npy_headers_are_refused(trace_dir, npy, fragment):
    stored, crc, size = deflated(npy + bytes(64 * 16 * 16 * 4))
    install_layer_file(
        trace_dir,
        raw_zip(real_members(trace_dir, output=("output.npy", stored, zipfile.ZIP_DEFLATED, crc, size))),
    )
    refused(trace_dir, "conv1_1.npz: array 'output'", fragment)


def test_a_fortran_ordered_member_loads_as_its_c_ordered_values(trace_dir):
    output = real_arrays(trace_dir)["output"]
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.asfortranarray(output))
    stored, crc, size = deflated(npy.getvalue())
    install_layer_file(
        trace_dir,
        raw_zip(real_members(trace_dir, output=("output.npy", stored, zipfile.ZIP_DEFLATED, crc, size))),
    )
    np.testing.assert_array_equal(load_trace(trace_dir).layer("conv1_1").output, output)


# ------------------------------------------------------------------------------- layer files: not regular


def test_a_layer_file_that_links_to_dev_zero_is_refused(trace_dir):
    (trace_dir / "conv1_1.npz").unlink()
    (trace_dir / "conv1_1.npz").symlink_to("/dev/zero")
    refused(trace_dir, "conv1_1.npz: the layer file must be a regular file, but this is a character device")
    cli_refuses(
        "run", DADIANNAO, trace_dir, "--layer", "conv1_1", fragments=["conv1_1.npz", "character device"]
    )


def test_a_layer_file_that_is_a_fifo_is_refused_without_blocking(trace_dir):
    (trace_dir / "conv1_1.npz").unlink()
    os.mkfifo(trace_dir / "conv1_1.npz")
    refused(trace_dir, "conv1_1.npz: the layer file must be a regular file, but this is a FIFO")
    cli_refuses("info", trace_dir, fragments=["conv1_1.npz", "FIFO"])


def test_a_layer_file_that_is_a_directory_or_a_dangling_link_is_refused(trace_dir, tmp_path):
    (trace_dir / "conv1_1.npz").unlink()
    (trace_dir / "conv1_1.npz").mkdir()
    refused(trace_dir, "conv1_1.npz: the layer file must be a regular file, but this is a directory")
    (trace_dir / "conv1_1.npz").rmdir()
    (trace_dir / "conv1_1.npz").symlink_to(tmp_path / "nowhere.npz")
    refused(trace_dir, "conv1_1.npz: cannot read the layer file: No such file or directory")


def test_a_layer_file_linked_from_a_shared_store_outside_the_trace_is_followed(trace_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (trace_dir / "conv1_1.npz").rename(store / "conv1_1.npz")
    (trace_dir / "conv1_1.npz").symlink_to(store / "conv1_1.npz")
    assert load_trace(trace_dir).layer("conv1_1").weights.shape == (64, 3, 3, 3)
    (store / "conv1_1.npz").write_bytes((store / "conv1_1.npz").read_bytes()[:-1])  # the target must match
    refused(trace_dir, "conv1_1.npz: file checksum mismatch")


def test_huge_values_in_a_manifest_are_quoted_cut_short(trace_dir):
    manifest = manifest_of(trace_dir)
    entry = manifest["layers"][0]
    entry["op"] = "x" * 10**6
    entry["k" * 10**6] = 1
    entry["input_shape"] = [-1] * 10**5
    entry["padding"] = "p" * 10**6
    write_manifest(trace_dir, manifest)
    message = refused(
        trace_dir, "manifest.json", "layers[0] (conv1_1).padding: expected an integer, got 'ppp"
    )
    assert "unknown key 'kkk" in message and "(1,000,002 characters)" in message
    assert len(message) < 2000
