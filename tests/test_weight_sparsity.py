"""Weight sparsity on a magnitude-pruned real trace: Cambricon-X skips zero weights, SparTen skips every
pair with a zero, on the same machine with and without the mechanism (sweeps of the mechanism's kind)."""

from __future__ import annotations

from sparsesim import simulate
from sparsesim.config.overrides import with_parameter
from sparsesim.simulator import simulate_configs

MODES = ("dense", "zero_skip_activations", "zero_skip_weights", "zero_skip_both")


def cycles_per_mode(hw, trace):
    """The four modes over one read of each layer (``simulate_configs``)."""
    configs = [with_parameter(hw, "pe_array.pe.mechanism.kind", mode) for mode in MODES]
    results = dict(zip(MODES, simulate_configs(configs, trace), strict=True))
    for report in results.values():
        assert report.totals["functional_check_passed"]
    return results


def test_pruned_trace_is_half_zero_weights_and_records_it(pruned_trace):
    for layer in pruned_trace.layers:
        assert abs(layer.weight_density - 0.5) < 1e-3
    assert pruned_trace.provenance["pruning"]["sparsity"] == 0.5


def test_weight_skipping_pays_on_pruned_weights_and_both_operands_pay_most(pruned_trace, hwconfigs):
    for name in ("cambricon_x", "sparten"):
        reports = cycles_per_mode(hwconfigs[name], pruned_trace)
        cycles = {mode: report.totals["cycles"] for mode, report in reports.items()}
        assert cycles["zero_skip_weights"] < cycles["dense"]
        assert cycles["zero_skip_both"] < min(cycles["zero_skip_weights"], cycles["zero_skip_activations"])
        both = reports["zero_skip_both"].totals["computes"]
        assert both["actual"] == both["effectual"]  # only pairs of nonzero operands are multiplied


def test_weight_skipping_gains_nothing_on_dense_weights(vgg16_trace, hwconfigs, simulated):
    hw = hwconfigs["cambricon_x"]
    dense_hw = with_parameter(hw, "pe_array.pe.mechanism.kind", "dense")
    dense = simulate(dense_hw, vgg16_trace, layers=["conv3_1"])
    skipping = simulated("cambricon_x").layer("conv3_1")  # from the whole-network run (golden tier)
    assert skipping["computes"]["actual"] == dense.layers[0]["computes"]["actual"]
