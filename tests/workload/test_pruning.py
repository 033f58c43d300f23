"""Weight-pruned traces derived from the shipped real trace: the right weights zeroed, the network re-run."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from sparsesim.errors import SparsesimError, TraceError
from sparsesim.workload.ops import layer_reference, maxpool2x2
from sparsesim.workload.pruning import PruningError, prune_trace, prune_weights, pruning_mask
from sparsesim.workload.trace import load_trace, save_trace

TRACE_DIR = Path(__file__).resolve().parents[2] / "traces" / "vgg16_china"
FIRST = ["conv1_1", "conv1_2", "conv2_1"]  # the chain crosses the first max-pool; fast to re-run and save
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3", "conv4_3"}


@pytest.fixture(scope="module")
def source(vgg16_trace):
    """The shipped trace, as loaded once for the session (each layer read from disk once)."""
    assert vgg16_trace.path == str(TRACE_DIR)
    return vgg16_trace


@pytest.fixture(scope="module")
def pruned50(source, tmp_path_factory):
    return prune_trace(source, tmp_path_factory.mktemp("pruned") / "p50", sparsity=0.5, layers=FIRST)


def _assert_smallest_magnitudes_zeroed(original: np.ndarray, pruned: np.ndarray, count: int, what: str):
    """``pruned`` is ``original`` (no zeros) with exactly its ``count`` smallest |w| zeroed, ties broken by
    position."""
    assert np.count_nonzero(original) == original.size, what  # the real weights have no zeros to start with
    magnitude = np.abs(original.astype(np.float64)).ravel()
    zeroed = pruned.ravel() == 0
    assert int(np.count_nonzero(zeroed)) == count, what
    np.testing.assert_array_equal(pruned.ravel()[~zeroed], original.ravel()[~zeroed], err_msg=what)
    threshold = magnitude[zeroed].max()
    assert magnitude[~zeroed].min() >= threshold, what
    tied_zeroed = np.flatnonzero(zeroed & (magnitude == threshold))
    tied_kept = np.flatnonzero(~zeroed & (magnitude == threshold))
    if tied_kept.size:
        assert tied_zeroed.max() < tied_kept.min(), f"{what}: ties not broken by position"


def test_each_layer_loses_exactly_its_smallest_magnitude_weights(source, pruned50):
    assert [layer.name for layer in pruned50.layers] == FIRST
    for layer in pruned50.layers:
        original = source.layer(layer.name).weights
        count = round(0.5 * original.size)
        assert layer.weight_density == pytest.approx(1 - count / original.size)
        assert abs(layer.weight_density - 0.5) <= 0.5 / original.size
        _assert_smallest_magnitudes_zeroed(original, layer.weights, count, layer.name)
        np.testing.assert_array_equal(layer.bias, source.layer(layer.name).bias)


def test_per_filter_pruning_zeros_the_same_fraction_of_every_filter(source):
    weights = source.layer("conv1_2").weights
    pruned = prune_weights(weights, 0.3, "magnitude_per_filter")
    per_filter = weights[0].size
    count = round(0.3 * per_filter)
    for k in range(weights.shape[0]):
        _assert_smallest_magnitudes_zeroed(weights[k], pruned[k], count, f"filter {k}")
    # not the same as per-layer pruning: the per-layer threshold leaves filters unevenly pruned
    per_layer = pruning_mask(weights, 0.3).reshape(weights.shape[0], -1).sum(axis=1)
    assert per_layer.min() < count < per_layer.max()


def test_pruning_mask_breaks_ties_by_position():
    weights = np.array([[0.5, -0.25, 0.25, 0.25], [0.0, 1.0, -0.5, 0.25]], dtype=np.float32)  # synthetic
    np.testing.assert_array_equal(
        pruning_mask(weights, 0.5), [[False, True, True, True], [True, False, False, False]]
    )
    np.testing.assert_array_equal(
        pruning_mask(weights, 0.5, "magnitude_per_filter"),
        [[False, True, True, False], [True, False, False, True]],
    )
    np.testing.assert_array_equal(pruning_mask(weights.astype(np.float64) + 1e-9, 0.5).sum(), 4)


def test_outputs_are_the_reference_of_the_pruned_layers_and_inputs_chain(source, pruned50):
    np.testing.assert_array_equal(pruned50.layers[0].input, source.layers[0].input)  # the photo
    for layer in pruned50.layers:
        np.testing.assert_array_equal(layer.output, layer_reference(layer).astype(np.float32), layer.name)
    for previous, layer in pairwise(pruned50.layers):
        carried = maxpool2x2(previous.output) if previous.name in POOL_AFTER else previous.output
        np.testing.assert_array_equal(layer.input, carried.astype(np.float16).astype(np.float32), layer.name)


def test_pruning_changes_the_activations_the_network_produces(source, pruned50):
    densities = {}
    for layer in pruned50.layers:
        dense = source.layer(layer.name)
        assert not np.array_equal(layer.output, dense.output), layer.name
        densities[layer.name] = (dense.input_density, layer.input_density)
    assert densities["conv1_1"][0] == densities["conv1_1"][1] == 1.0
    # measured on this photo: 50 % magnitude pruning makes conv1_2's and conv2_1's inputs sparser
    # (0.543 -> 0.501 and 0.398 -> 0.303); deeper layers get denser (see the pruning report)
    for name in ("conv1_2", "conv2_1"):
        dense, pruned = densities[name]
        assert pruned < dense - 0.03, (name, dense, pruned)


def test_sparsity_zero_reproduces_the_source_trace_bit_for_bit(source, tmp_path):
    pruned = prune_trace(source, tmp_path / "p0", sparsity=0.0, layers=FIRST)
    assert pruned.name == f"{source.name}_pruned0"
    for layer in pruned.layers:
        dense = source.layer(layer.name)
        for key in ("input", "weights", "bias", "output"):
            np.testing.assert_array_equal(getattr(layer, key), getattr(dense, key), f"{layer.name}.{key}")
    entries = json.loads((tmp_path / "p0" / "manifest.json").read_text())["layers"]
    source_entries = {e["name"]: e for e in json.loads((TRACE_DIR / "manifest.json").read_text())["layers"]}
    for entry in entries:
        # The same array checksums and the same .npy members; the files differ only in the deflate level
        # (derived traces are written at zlib's default, the shipped one at 9).
        source_entry = source_entries[entry["name"]]
        assert {**entry, "file_sha256": None} == {**source_entry, "file_sha256": None}
        with (
            zipfile.ZipFile(tmp_path / "p0" / entry["file"]) as new,
            zipfile.ZipFile(TRACE_DIR / source_entry["file"]) as old,
        ):
            assert new.namelist() == old.namelist()
            for member in new.namelist():
                assert new.read(member) == old.read(member), (entry["name"], member)


def test_provenance_records_the_pruning_and_its_source(source, pruned50):
    provenance = pruned50.provenance
    assert pruned50.name == "vgg16_hed_china_112x160_pruned50"
    for key in ("model", "weights", "input", "preprocessing", "numeric_format", "generator"):
        assert provenance[key] == source.provenance[key]  # the source's provenance is kept
    pruning = provenance["pruning"]
    assert pruning["method"] == "magnitude" and pruning["sparsity"] == 0.5
    assert "one-shot" in pruning["training"] and "no retraining" in pruning["training"]
    assert "pruned network" in pruning["activations"]
    assert pruning["source"]["name"] == source.name
    manifest_digest = hashlib.sha256((TRACE_DIR / "manifest.json").read_bytes()).hexdigest()
    assert pruning["source"]["manifest_sha256"] == manifest_digest
    assert pruning["source"]["pruning"] == "none"
    assert pruning["command"].startswith(f"sparsesim make-trace prune {TRACE_DIR} ")
    assert pruning["command"].endswith("--sparsity 0.5 --layer conv1_1 --layer conv1_2 --layer conv2_1")
    assert pruning["layers_pruned"] == FIRST
    assert pruning["per_layer"]["conv2_1"] == {
        "weights": 128 * 64 * 9,
        "zero_weights_before": 0,
        "zero_weights_after": 128 * 64 * 9 // 2,
    }


def test_same_arguments_give_byte_identical_files(source, tmp_path, monkeypatch):
    # The source as the session loaded it (its path is TRACE_DIR): reading the trace from a path is
    # test_a_trace_whose_layers_are_not_consecutive_cannot_be_rechained's and the CLI tests'.
    outputs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)  # the command in the provenance records OUT as given
        prune_trace(source, "out", sparsity=0.4, method="magnitude_per_filter", layers=["conv1_1"])
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / run / "out").iterdir())})
    assert sorted(outputs[0]) == ["conv1_1.npz", "manifest.json"]
    assert outputs[0] == outputs[1]
    manifest = json.loads(outputs[0]["manifest.json"])
    assert manifest["name"] == "vgg16_hed_china_112x160_pruned40_per_filter"
    assert manifest["provenance"]["pruning"]["command"].endswith(
        "--sparsity 0.4 --method magnitude_per_filter --layer conv1_1"
    )


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, math.nan, True, "0.5", None])
def test_bad_sparsity_is_refused(source, tmp_path, sparsity):
    with pytest.raises(PruningError, match="sparsity"):
        prune_trace(source, tmp_path / "out", sparsity=sparsity, layers=["conv1_1"])
    assert not (tmp_path / "out").exists()
    assert issubclass(PruningError, ValueError) and issubclass(PruningError, SparsesimError)


def test_unknown_method_and_layer_are_refused(source, tmp_path):
    with pytest.raises(PruningError, match="unknown pruning method 'random'"):
        prune_trace(source, tmp_path / "out", sparsity=0.5, method="random")
    with pytest.raises(TraceError, match="unknown layer.*'fc6'.*known layers: conv1_1"):
        prune_trace(source, tmp_path / "out", sparsity=0.5, layers=["conv1_1", "fc6"])
    assert not (tmp_path / "out").exists()


def test_a_trace_loaded_without_its_first_layers_is_refused(tmp_path):
    partial = load_trace(TRACE_DIR, layers=["conv1_2", "conv2_1"])
    with pytest.raises(TraceError, match="not the first layers"):
        prune_trace(partial, tmp_path / "out", sparsity=0.5)


def test_a_trace_whose_layers_are_not_consecutive_cannot_be_rechained(source, tmp_path):
    # real layers saved without the one between them: conv2_1's input is pooled conv1_2, not conv1_1
    save_trace(tmp_path / "gap", "gap", {"note": "test"}, [source.layer("conv1_1"), source.layer("conv2_1")])
    with pytest.raises(TraceError, match="'conv2_1'.*not float16 of layer 'conv1_1'.*not consecutive"):
        prune_trace(tmp_path / "gap", tmp_path / "out", sparsity=0.5)
    save_trace(
        tmp_path / "jump", "jump", {"note": "test"}, [source.layer("conv1_1"), source.layer("conv3_1")]
    )
    with pytest.raises(TraceError, match=r"input shape \[128, 28, 40\].*outputs \[64, 112, 160\]"):
        prune_trace(tmp_path / "jump", tmp_path / "out", sparsity=0.5)
    assert not (tmp_path / "out").exists()
