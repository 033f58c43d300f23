"""The trace format: save/load round trip, determinism, and the errors bad traces give.

Every trace here is built from small synthetic layers (random tensors, not a real network) with save_trace,
then corrupted in one way; each bad-input test checks that the TraceError names the file and the problem.
"""

import hashlib
import json
import os

import numpy as np
import pytest

from sparsesim.errors import TraceError
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.trace import TRACE_FORMAT_VERSION, Layer, load_trace, save_trace

SYNTHETIC_PROVENANCE = {"model": "synthetic: random tensors for unit tests, not a real network"}


def synthetic_conv_layer(name="synthetic_conv", seed=0, c=3, h=6, w=5, k=4, stride=1, padding=1):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((c, h, w)), 0).astype(np.float16).astype(np.float32)
    weights = rng.standard_normal((k, c, 3, 3)).astype(np.float16).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    layer = Layer(name, "conv2d", x, weights, bias, None, stride, padding, "relu")
    return Layer(
        name, "conv2d", x, weights, bias, layer_reference(layer).astype(np.float32), stride, padding, "relu"
    )


def synthetic_linear_layer(name="synthetic_fc", seed=1, c=7, k=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(c).astype(np.float16).astype(np.float32)
    weights = rng.standard_normal((k, c)).astype(np.float16).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    layer = Layer(name, "linear", x, weights, bias, None, 1, 0, "none")
    return Layer(name, "linear", x, weights, bias, layer_reference(layer).astype(np.float32), 1, 0, "none")


@pytest.fixture
def synthetic_trace(tmp_path):
    path = tmp_path / "synthetic_trace"
    save_trace(path, "synthetic", SYNTHETIC_PROVENANCE, [synthetic_conv_layer(), synthetic_linear_layer()])
    return path


def read_manifest(path):
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path, manifest):
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))


def rewrite_layer_file(path, file_name, arrays, pickled=False):
    """Replace a layer's .npz by ``arrays`` and update the manifest's checksums, so that only the defect
    planted in ``arrays`` remains to be found."""
    target = path / file_name
    with open(target, "wb") as handle:
        if pickled:
            _save_pickled(handle, arrays)
        else:
            np.savez_compressed(handle, **arrays)
    manifest = read_manifest(path)
    for entry in manifest["layers"]:
        if entry["file"] == file_name:
            entry["file_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
            for key, array in arrays.items():
                if key in entry["sha256"] and array.dtype != object:
                    entry["sha256"][key] = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    write_manifest(path, manifest)


def _save_pickled(handle, arrays):
    import zipfile

    with zipfile.ZipFile(handle, "w") as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w") as member:
                np.save(member, array, allow_pickle=True)  # creating the bad file only; never loaded so


def stored_arrays(layer):
    return {
        "input": layer.input.astype("<f2"),
        "weights": layer.weights.astype("<f2"),
        "bias": layer.bias.astype("<f4"),
        "output": layer.output.astype("<f4"),
    }


# ------------------------------------------------------------------------------------- round trip


def test_save_load_round_trip_is_exact(synthetic_trace):
    conv, linear = synthetic_conv_layer(), synthetic_linear_layer()
    trace = load_trace(synthetic_trace)
    assert trace.name == "synthetic"
    assert trace.format_version == TRACE_FORMAT_VERSION
    assert trace.provenance == SYNTHETIC_PROVENANCE
    assert [layer.name for layer in trace.layers] == ["synthetic_conv", "synthetic_fc"]
    for original, loaded in zip((conv, linear), trace.layers, strict=True):
        for key in ("input", "weights", "bias", "output"):
            got = getattr(loaded, key)
            assert got.dtype == np.float32
            assert not got.flags.writeable
            np.testing.assert_array_equal(got, getattr(original, key))
        assert (loaded.op, loaded.stride, loaded.padding, loaded.activation) == (
            original.op,
            original.stride,
            original.padding,
            original.activation,
        )


def test_trace_path_is_kept_as_given_not_made_absolute(synthetic_trace, monkeypatch):
    monkeypatch.chdir(synthetic_trace.parent)
    assert load_trace("synthetic_trace").path == "synthetic_trace"


def test_two_saves_of_the_same_layers_are_byte_identical(tmp_path):
    layers = [synthetic_conv_layer(), synthetic_linear_layer()]
    save_trace(tmp_path / "a", "synthetic", SYNTHETIC_PROVENANCE, layers)
    save_trace(tmp_path / "b", "synthetic", SYNTHETIC_PROVENANCE, layers)
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == ["manifest.json", "synthetic_conv.npz", "synthetic_fc.npz"]  # no temp files left
    assert names == sorted(os.listdir(tmp_path / "b"))
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_the_compression_level_changes_the_files_not_the_arrays_or_their_checksums(tmp_path):
    layers = [synthetic_conv_layer(), synthetic_linear_layer()]
    for level in (0, 9):
        save_trace(tmp_path / str(level), "synthetic", SYNTHETIC_PROVENANCE, layers, compress_level=level)
    stored, deflated = (json.loads((tmp_path / str(level) / "manifest.json").read_text()) for level in (0, 9))
    for plain, small in zip(stored["layers"], deflated["layers"], strict=True):
        assert plain["sha256"] == small["sha256"] and plain["file_sha256"] != small["file_sha256"]
    for level_trace in (load_trace(tmp_path / "0"), load_trace(tmp_path / "9")):
        for layer, original in zip(level_trace.layers, layers, strict=True):
            np.testing.assert_array_equal(layer.weights, original.weights)
    for bad in (10, -1, 6.0, True, "9"):
        with pytest.raises(TraceError, match=f"compress_level must be an int from 0 to 9, got {bad!r}"):
            save_trace(tmp_path / "bad", "synthetic", SYNTHETIC_PROVENANCE, layers, compress_level=bad)
    assert not (tmp_path / "bad").exists()


def test_manifest_is_sorted_and_indented_and_lists_checksums(synthetic_trace):
    text = (synthetic_trace / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    entry = manifest["layers"][0]
    assert entry["dtypes"] == {
        "input": "float16",
        "weights": "float16",
        "bias": "float32",
        "output": "float32",
    }
    assert entry["input_shape"] == [3, 6, 5] and entry["weight_shape"] == [4, 3, 3, 3]
    assert entry["output_shape"] == [4, 6, 5]
    data = (synthetic_trace / entry["file"]).read_bytes()
    assert entry["file_sha256"] == hashlib.sha256(data).hexdigest()


def test_layer_properties_count_macs_and_densities():
    conv = synthetic_conv_layer(c=3, h=6, w=5, k=4, stride=2, padding=1)
    assert conv.output.shape == (4, 3, 3)
    assert conv.algorithmic_macs == 4 * 3 * 3 * 3 * 3 * 3
    assert conv.input_density == np.count_nonzero(conv.input) / conv.input.size
    assert 0 < conv.input_density < 1
    assert conv.weight_density == 1.0
    assert synthetic_linear_layer(c=7, k=3).algorithmic_macs == 21


def test_load_selected_layers_keeps_network_order(synthetic_trace):
    trace = load_trace(synthetic_trace, layers=["synthetic_fc", "synthetic_conv"])
    assert [layer.name for layer in trace.layers] == ["synthetic_conv", "synthetic_fc"]
    assert [layer.name for layer in load_trace(synthetic_trace, layers=["synthetic_fc"]).layers] == [
        "synthetic_fc"
    ]


def test_load_selected_layers_does_not_read_other_files(synthetic_trace):
    (synthetic_trace / "synthetic_conv.npz").unlink()
    assert load_trace(synthetic_trace, layers=["synthetic_fc"]).layer("synthetic_fc").op == "linear"


def test_layers_are_read_when_used_and_freed_when_dropped(synthetic_trace):
    import gc
    import weakref

    trace = load_trace(synthetic_trace)
    assert trace.layer_names == ("synthetic_conv", "synthetic_fc")
    conv = trace.layers[0]
    assert trace.layer("synthetic_conv") is conv  # held by the caller: the same object, not re-read
    conv_ref = weakref.ref(conv)
    del conv
    trace.layers[1]  # now the most recently read layer
    gc.collect()
    assert conv_ref() is None  # a run over a long trace holds one layer at a time
    again = trace.layers[0]
    np.testing.assert_array_equal(again.weights, synthetic_conv_layer().weights)
    assert [layer.name for layer in trace.layers[0:2]] == ["synthetic_conv", "synthetic_fc"]


def test_keep_in_memory_keeps_every_layer_once_read(synthetic_trace):
    trace = load_trace(synthetic_trace, keep_in_memory=True)
    first = [id(layer) for layer in trace.layers]
    assert [id(layer) for layer in trace.layers] == first


def test_a_layer_file_changed_after_loading_is_refused_when_used(synthetic_trace):
    trace = load_trace(synthetic_trace)
    arrays = stored_arrays(synthetic_conv_layer())
    arrays["weights"][0, 0, 0, 0] += 1
    np.savez(synthetic_trace / "synthetic_conv.npz", **arrays)
    assert trace.layer_names == ("synthetic_conv", "synthetic_fc")  # names need no file
    assert trace.layer("synthetic_fc").op == "linear"
    with pytest.raises(TraceError, match=r"synthetic_conv\.npz: file checksum mismatch"):
        trace.layer("synthetic_conv")


# ------------------------------------------------------------------------------------- refusing to save


def test_save_refuses_operands_not_representable_in_float16(tmp_path):
    layer = synthetic_conv_layer()
    bad = Layer(
        "bad", "conv2d", layer.input + np.float32(1e-4), layer.weights, layer.bias, layer.output, 1, 1
    )
    with pytest.raises(TraceError, match=r"layer 'bad': array 'input': values are not exactly representable"):
        save_trace(tmp_path / "t", "synthetic", SYNTHETIC_PROVENANCE, [bad])
    assert not (tmp_path / "t").exists()


def test_save_refuses_inconsistent_shapes_and_lists_every_problem(tmp_path):
    layer = synthetic_conv_layer()
    bad = Layer(
        "bad", "conv2d", layer.input, layer.weights, layer.bias[:2], layer.output[:, :2], 1, 1, "tanh"
    )
    with pytest.raises(TraceError) as info:
        save_trace(tmp_path / "t", "synthetic", SYNTHETIC_PROVENANCE, [bad])
    assert "activation must be one of ['relu', 'none']" in str(info.value)
    bad = Layer("bad", "conv2d", layer.input, layer.weights, layer.bias[:2], layer.output[:, :2], 1, 1)
    with pytest.raises(TraceError) as info:
        save_trace(tmp_path / "t", "synthetic", SYNTHETIC_PROVENANCE, [bad])
    message = str(info.value)
    assert "array 'bias': expected shape [4], got [2]" in message
    assert "array 'output': expected shape [4, 6, 5], got [4, 2, 5]" in message


# ------------------------------------------------------------------------------------- bad traces


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(TraceError, match=r"nowhere: trace directory not found"):
        load_trace(tmp_path / "nowhere")


def test_missing_manifest_is_named(synthetic_trace):
    (synthetic_trace / "manifest.json").unlink()
    with pytest.raises(TraceError, match=r"manifest\.json: missing manifest"):
        load_trace(synthetic_trace)


def test_malformed_json_manifest_is_named(synthetic_trace):
    (synthetic_trace / "manifest.json").write_text('{"format": "sparsesim-trace", ')
    with pytest.raises(TraceError, match=r"manifest\.json: manifest is not valid JSON"):
        load_trace(synthetic_trace)


def test_wrong_format_version_is_refused(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    manifest["format_version"] = 99
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(
        TraceError, match=r"manifest\.json: format_version: unsupported version 99; .* version 1"
    ):
        load_trace(synthetic_trace)


def test_wrong_format_name_is_refused(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    manifest["format"] = "something-else"
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError, match=r"manifest\.json: format: expected 'sparsesim-trace'"):
        load_trace(synthetic_trace)


def test_missing_unknown_and_mistyped_manifest_keys_are_all_reported(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    del manifest["layers"][0]["stride"]
    manifest["layers"][0]["colour"] = "blue"
    manifest["layers"][1]["padding"] = "0"
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError) as info:
        load_trace(synthetic_trace)
    message = str(info.value)
    assert "manifest.json" in message
    assert "layers[0] (synthetic_conv): missing key 'stride'" in message
    assert "layers[0] (synthetic_conv): unknown key 'colour'" in message
    assert "layers[1] (synthetic_fc).padding: expected an integer, got '0'" in message


def test_manifest_file_must_stay_inside_the_trace_directory(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][0]["file"] = "../elsewhere.npz"
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError, match=r"layers\[0\] \(synthetic_conv\)\.file: expected a bare file name"):
        load_trace(synthetic_trace)


def test_shape_mismatch_in_manifest_is_reported_against_the_conv_arithmetic(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][0]["output_shape"] = [4, 7, 5]
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError) as info:
        load_trace(synthetic_trace)
    message = str(info.value)
    assert "manifest.json" in message
    assert (
        "layers[0] (synthetic_conv).output_shape: expected [4, 6, 5]" in message
        and "got [4, 7, 5]" in message
    )


def test_channel_mismatch_between_input_and_weights_in_manifest(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][0]["input_shape"] = [2, 6, 5]
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError, match=r"input channels C=2 \(input_shape\[0\]\) != weights' C=3"):
        load_trace(synthetic_trace)


def test_manifest_shape_disagreeing_with_the_array_names_file_and_array(synthetic_trace):
    conv = synthetic_conv_layer(h=6, w=5)
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][0]["input_shape"] = [3, 8, 5]
    manifest["layers"][0]["output_shape"] = [4, 8, 5]
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError) as info:
        load_trace(synthetic_trace)
    message = str(info.value)
    assert (
        "synthetic_conv.npz: array 'input': expected shape [3, 8, 5] (from the manifest), got [3, 6, 5]"
        in message
    )
    assert "synthetic_conv.npz: array 'output': expected shape [4, 8, 5]" in message
    assert conv.input.shape == (3, 6, 5)


def test_nan_in_an_array_is_named(synthetic_trace):
    arrays = stored_arrays(synthetic_conv_layer())
    arrays["output"][1, 2, 3] = np.nan
    rewrite_layer_file(synthetic_trace, "synthetic_conv.npz", arrays)
    with pytest.raises(TraceError, match=r"synthetic_conv\.npz: array 'output': 1 NaN or infinite value"):
        load_trace(synthetic_trace)


def test_wrong_dtype_is_named(synthetic_trace):
    arrays = stored_arrays(synthetic_conv_layer())
    arrays["weights"] = arrays["weights"].astype(np.float32)
    rewrite_layer_file(synthetic_trace, "synthetic_conv.npz", arrays)
    with pytest.raises(TraceError, match=r"synthetic_conv\.npz: array 'weights': expected dtype float16"):
        load_trace(synthetic_trace)


def test_missing_and_unknown_arrays_are_named(synthetic_trace):
    arrays = stored_arrays(synthetic_conv_layer())
    arrays["extra"] = arrays.pop("bias")
    rewrite_layer_file(synthetic_trace, "synthetic_conv.npz", arrays)
    with pytest.raises(TraceError) as info:
        load_trace(synthetic_trace)
    assert "synthetic_conv.npz: missing array 'bias'" in str(info.value)
    assert "synthetic_conv.npz: unknown array 'extra'" in str(info.value)


def test_missing_npz_is_named(synthetic_trace):
    (synthetic_trace / "synthetic_fc.npz").unlink()
    with pytest.raises(TraceError, match=r"synthetic_fc\.npz: missing layer file"):
        load_trace(synthetic_trace)


def test_truncated_npz_is_named_by_its_checksum_and_not_read_further(synthetic_trace):
    target = synthetic_trace / "synthetic_conv.npz"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError) as info:
        load_trace(synthetic_trace)
    message = str(info.value)
    assert "synthetic_conv.npz: file checksum mismatch" in message and "nothing in it was read" in message
    # One problem, so one line: the zip is not opened, nothing is inflated from an unknown file.
    assert "invalid trace: " in message and "\n" not in message


def test_truncated_npz_whose_checksum_matches_is_named(synthetic_trace):
    target = synthetic_trace / "synthetic_conv.npz"
    data = target.read_bytes()[:-100]
    target.write_bytes(data)
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][0]["file_sha256"] = hashlib.sha256(data).hexdigest()
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(
        TraceError, match=r"synthetic_conv\.npz: not a readable \.npz \(truncated or corrupt\?\)"
    ):
        load_trace(synthetic_trace)


def test_pickled_object_array_is_refused(synthetic_trace):
    arrays = stored_arrays(synthetic_conv_layer())
    arrays["input"] = np.array([{"payload": "a pickle"}, None], dtype=object)
    rewrite_layer_file(synthetic_trace, "synthetic_conv.npz", arrays, pickled=True)
    with pytest.raises(
        TraceError, match=r"synthetic_conv\.npz: array 'input' is an object array \(a pickle\)"
    ):
        load_trace(synthetic_trace)


def test_array_checksum_mismatch_is_named(synthetic_trace):
    arrays = stored_arrays(synthetic_conv_layer())
    rewrite_layer_file(synthetic_trace, "synthetic_conv.npz", arrays)
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][0]["sha256"]["weights"] = "0" * 64
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(TraceError, match=r"synthetic_conv\.npz: array 'weights': checksum mismatch"):
        load_trace(synthetic_trace)


def test_file_checksum_mismatch_is_named(synthetic_trace):
    manifest = read_manifest(synthetic_trace)
    manifest["layers"][1]["file_sha256"] = "f" * 64
    write_manifest(synthetic_trace, manifest)
    with pytest.raises(
        TraceError, match=r"synthetic_fc\.npz: file checksum mismatch: manifest file_sha256 f{64}"
    ):
        load_trace(synthetic_trace)


def test_unknown_layer_name_lists_the_known_ones(synthetic_trace):
    with pytest.raises(
        TraceError, match=r"unknown layer\(s\) 'conv9'; known layers: synthetic_conv, synthetic_fc"
    ):
        load_trace(synthetic_trace, layers=["conv9"])
    trace = load_trace(synthetic_trace)
    with pytest.raises(
        TraceError, match=r"no layer named 'conv9'.*known layers: synthetic_conv, synthetic_fc"
    ):
        trace.layer("conv9")


def test_problems_in_several_layers_come_in_one_error(synthetic_trace):
    (synthetic_trace / "synthetic_fc.npz").unlink()
    arrays = stored_arrays(synthetic_conv_layer())
    arrays["input"][0, 0, 0] = np.inf
    rewrite_layer_file(synthetic_trace, "synthetic_conv.npz", arrays)
    with pytest.raises(TraceError) as info:
        load_trace(synthetic_trace)
    message = str(info.value)
    assert "2 problem(s)" in message
    assert "synthetic_conv.npz: array 'input': 1 NaN or infinite value(s)" in message
    assert "synthetic_fc.npz: missing layer file" in message
