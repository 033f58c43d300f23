"""Pattern-based pruning (PCONV / PatDNN) on traces derived from the shipped one: the lecture's trade-off.

At the same sparsity, pattern pruning gives up freedom (it must keep 4 positions of a few shapes in every
kernel), so without retraining its output error is higher than unstructured magnitude pruning's; in return
every filter carries the same work and a kernel needs one pattern id instead of an index per weight, so a
pattern PE runs balanced where weight skipping (Cambricon-X) on unstructured zeros waits for its busiest
filter. No fine-tuning follows the pruning here (nor in the traces): errors are one-shot errors.

Each (config, derived trace) pair is simulated once (the session's ``simulated`` cache), whichever tests
look at it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.sparse.formats import tensor_size_bits
from sparsesim.sparse.patterns import pattern_metadata_bits, pattern_prune
from sparsesim.workload.pruning import PruningError, pattern_sparsity, prune_trace, pruning_mask

LAYERS = ["conv2_2", "conv3_1"]


@pytest.fixture(scope="module")
def derived(vgg16_trace, tmp_path_factory):
    root = tmp_path_factory.mktemp("patterns")
    traces = {}
    for method in ("pattern:8", "pattern:8:0.5"):
        traces[method] = prune_trace(
            vgg16_trace,
            root / method.replace(":", "_"),
            sparsity=pattern_sparsity(method),
            method=method,
            layers=LAYERS,
        )
    for method, sparsity in (("pattern:8", 5 / 9), ("pattern:8:0.5", 7 / 9)):
        traces[f"magnitude@{method}"] = prune_trace(
            vgg16_trace, root / f"magnitude_{method.replace(':', '_')}", sparsity=sparsity, layers=LAYERS
        )
    return traces


def relative_rms_error(pruned_layer, dense_layer):
    difference = pruned_layer.output.astype(np.float64) - dense_layer.output
    return float(
        np.sqrt(np.mean(difference**2)) / np.sqrt(np.mean(dense_layer.output.astype(np.float64) ** 2))
    )


def test_pattern_traces_record_their_pruning_and_keep_four_of_nine(derived, vgg16_trace):
    trace = derived["pattern:8:0.5"]
    pruning = trace.provenance["pruning"]
    assert pruning["method"] == "pattern:8:0.5" and "connectivity" in pruning["criterion"]
    assert pruning["command"].endswith("--method pattern:8:0.5 --layer conv2_2 --layer conv3_1")
    assert trace.name == "vgg16_hed_china_112x160_pattern8_connectivity50"
    for name in LAYERS:
        entry = pruning["per_layer"][name]
        assert len(entry["pattern_library"]) == 8
        assert entry["zero_weights_after"] == entry["weights"] - 4 * entry["connected_kernels"]
        w = trace.layer(name).weights.reshape(*trace.layer(name).weights.shape[:2], 9)
        assert (np.count_nonzero(w, axis=2) <= 4).all()
    plain = derived["pattern:8"].layer("conv3_1").weights
    assert np.count_nonzero(plain) / plain.size == pytest.approx(4 / 9)


def test_pattern_pruning_errs_more_than_magnitude_pruning_at_the_same_sparsity(derived, vgg16_trace):
    for method in ("pattern:8", "pattern:8:0.5"):
        pattern = relative_rms_error(derived[method].layer("conv3_1"), vgg16_trace.layer("conv3_1"))
        magnitude = relative_rms_error(
            derived[f"magnitude@{method}"].layer("conv3_1"), vgg16_trace.layer("conv3_1")
        )
        assert pattern > magnitude > 0


def test_the_pattern_pe_runs_pattern_pruned_weights_balanced_and_exactly(derived, simulated):
    report = simulated("patdnn", derived["pattern:8"])
    for entry in report.layers:
        assert entry["functional_check"]["passed"] and entry["functional_check"]["exact"]
        summary = entry["mechanism"]["summary"]
        assert summary["used"] and summary["connected_kernels"] == summary["kernels"]
        c = entry["computes"]
        assert c["actual"] == c["algorithmic"] * 4 // 9
        pe = entry["components"]["pe_array"]
        # Balanced: every filter has the same work, so the PE is busy exactly actual / 16 lanes / 16 PEs.
        assert pe["cycle_states"]["pe_array"]["busy_cycles"] == c["actual"] // (16 * 16)
        assert pe["actions"]["input_spad_metadata_read"] * 4 == c["actual"]
    # The rendered table: 4 bits per 4-weight kernel (connectivity bit + 3-bit id), plus a 72-bit table.
    table = report.render().split("kernel patterns (PatDNN")[1].split("DRAM traffic")[0]
    assert "8 x 4" in table and "1.00" in table


def test_pattern_pe_beats_weight_skipping_on_unstructured_zeros_at_the_same_sparsity(derived, simulated):
    for method in ("pattern:8", "pattern:8:0.5"):
        pattern = simulated("patdnn", derived[method])
        unstructured = simulated("cambricon_x", derived[f"magnitude@{method}"])
        busy = {
            name: sum(
                e["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"] for e in r.layers
            )
            for name, r in (("pattern", pattern), ("unstructured", unstructured))
        }
        assert busy["pattern"] < busy["unstructured"]
        metadata = {
            name: r.totals["components"]["pe_array"]["actions"]["input_spad_metadata_read"]
            for name, r in (("pattern", pattern), ("unstructured", unstructured))
        }
        assert metadata["pattern"] * 3 < metadata["unstructured"]


def test_filter_reorder_shortens_connectivity_pruned_layers(derived, simulated):
    """Connectivity pruning leaves filters with different kernel counts; dealt in reordered sequence, the
    16 filters of a tile are alike. Without reorder (the same kernels, but no pattern PE: Cambricon-X's
    weight skipping walks them in the original order) the busiest filter of each tile sets the pace."""
    trace = derived["pattern:8:0.5"]
    pattern = simulated("patdnn", trace)
    in_order = simulated("cambricon_x", trace)
    for ordered, plain in zip(pattern.layers, in_order.layers, strict=True):
        assert ordered["computes"]["actual"] == plain["computes"]["actual"]
        assert (
            ordered["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"]
            < plain["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"]
        )


def test_the_make_trace_command_derives_a_pattern_trace(crop_trace, tmp_path):
    """On a small real cut (crop_trace: conv1_1's first 16 filters over 10x12 pixels): the command's plumbing
    and recorded sparsity; what pattern pruning makes of the shipped layers is the tests' above."""
    out = tmp_path / "p"
    result = CliRunner().invoke(
        main,
        [
            "make-trace",
            "prune",
            str(crop_trace),
            str(out),
            "--method",
            "pattern:8:0.5",
            "--layer",
            "conv1_1",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["provenance"]["pruning"]["sparsity"] == pytest.approx(1 - 4 / 9 * 0.5)
    bad = CliRunner().invoke(
        main, ["make-trace", "prune", str(crop_trace), str(out), "--method", "pattern:0"]
    )
    assert bad.exit_code != 0 and "pattern:P or pattern:P:RATE" in bad.output


def test_bad_pattern_methods_and_sparsities_are_pruning_errors():
    w = np.ones((2, 2, 3, 3), dtype=np.float32)
    for method in ("pattern:", "pattern:8:1.5", "pattern:x"):
        with pytest.raises(PruningError, match="pattern:P"):
            pruning_mask(w, 0.5, method)
    with pytest.raises(PruningError, match="0.5556"):
        pruning_mask(w, 0.5, "pattern:8")
    assert pruning_mask(w, 5 / 9, "pattern:8").sum() == 4 * 5


def test_pattern_metadata_is_a_fraction_of_an_index_per_weight(vgg16_trace):
    w = vgg16_trace.layer("conv3_1").weights
    pruned = pattern_prune(w, 8)
    bits = pattern_metadata_bits(pruned.patterns)
    kept_weights = np.count_nonzero(~pruned.mask)
    # 4 bits per kernel (connectivity + 3-bit id) for its 4 weights, plus the 72-bit table.
    assert bits["total"] == kept_weights + 72
    _, csr_metadata = tensor_size_bits(np.where(pruned.mask, 0, w), "weights", "CSR")
    assert bits["total"] * 3 < csr_metadata
