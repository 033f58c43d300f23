"""Coarse-grained pruning on derived real traces: structure gives up sparsity for speed hardware can use.

Filter and channel pruning make whole filters / input channels zero, which the mapper drops from the layer
(compaction): even a dense machine gets faster. Scalpel's SIMD-aligned block pruning lets a machine that
skips all-zero weight vectors gain where unstructured pruning of the same sparsity barely does.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.config.overrides import with_parameter
from sparsesim.sparse.structured import coarse_prune_mask
from sparsesim.workload.pruning import prune_trace

LAYERS = ["conv2_2", "conv3_1"]


@pytest.fixture(scope="module")
def derived(vgg16_trace, pruned_trace, tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    traces = {
        method: prune_trace(
            vgg16_trace, root / method.replace(":", ""), sparsity=0.5, method=method, layers=LAYERS
        )
        for method in ("filter", "channel", "block:16")
    }
    # Magnitude pruning at 0.5 of the same layers: the session's pruned_trace (tests/conftest.py).
    assert pruned_trace.layer_names == tuple(LAYERS)
    assert pruned_trace.provenance["pruning"]["method"] == "magnitude"
    assert pruned_trace.provenance["pruning"]["sparsity"] == 0.5
    traces["magnitude"] = pruned_trace
    return traces


def test_coarse_masks_remove_whole_groups(vgg16_trace):
    w = vgg16_trace.layer("conv3_1").weights
    filters = coarse_prune_mask(w, 0.5, "filter")
    assert (
        filters.all(axis=(1, 2, 3)).sum() == w.shape[0] // 2
        and (filters.all(axis=(1, 2, 3)) == filters.any(axis=(1, 2, 3))).all()
    )
    channels = coarse_prune_mask(w, 0.25, "channel")
    assert channels.all(axis=(0, 2, 3)).sum() == w.shape[1] // 4
    blocks = coarse_prune_mask(w, 0.5, "block", 16).reshape(w.shape[0], -1, 16, 3, 3)
    assert (blocks.all(axis=2) == blocks.any(axis=2)).all() and abs(blocks.mean() - 0.5) < 1e-9
    l1 = np.abs(w).sum(axis=(1, 2, 3))
    assert l1[filters[:, 0, 0, 0]].max() <= l1[~filters[:, 0, 0, 0]].min()  # the smallest filters went


@pytest.mark.parametrize("method", ["filter", "channel"])
def test_compaction_turns_coarse_zeros_into_speed_on_a_dense_machine(derived, hwconfigs, method):
    hw = hwconfigs["dadiannao"]
    compact = simulate(hw, derived[method])
    kept = simulate(with_parameter(hw, "mapping.compaction", "none"), derived[method])
    assert compact.totals["functional_check_passed"] and kept.totals["functional_check_passed"]
    assert compact.totals["computes"]["actual"] < kept.totals["computes"]["actual"]
    assert compact.totals["cycles"] <= kept.totals["cycles"]
    assert compact.totals["energy_pj"] < kept.totals["energy_pj"]
    for entry in compact.layers:
        c = entry["computes"]
        assert c["actual"] + c["skipped"] == c["algorithmic"]


def test_unstructured_zeros_buy_a_dense_machine_nothing(derived, hwconfigs):
    hw = hwconfigs["dadiannao"]
    compact = simulate(hw, derived["magnitude"])
    kept = simulate(with_parameter(hw, "mapping.compaction", "none"), derived["magnitude"])
    assert compact.totals["cycles"] == kept.totals["cycles"]


def test_simd_aligned_blocks_pay_where_unstructured_zeros_do_not(derived, hwconfigs):
    hw = hwconfigs["scalpel_simd"]
    dense = with_parameter(hw, "pe_array.pe.mechanism.kind", "dense")
    speedup = {
        method: simulate(dense, derived[method]).totals["cycles"]
        / simulate(hw, derived[method]).totals["cycles"]
        for method in ("magnitude", "block:16")
    }
    assert speedup["block:16"] > speedup["magnitude"] > 0.99
