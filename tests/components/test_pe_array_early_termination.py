"""PE array with SnaPEA's early termination: tile cycles equal the cycle-stepped reference on small real
cuts, and whole-layer runs keep the exact mode exact and measure the predictive mode's error."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mechanisms.datapath import im2col
from tests.components.test_pe_array_reference import cut_geometry_and_tiling, pe_config, small_real_cut
from tests.reference.early_termination_reference import reference_layer
from tests.reference.sequential_reference import reference_tile_cycles

CUTS = [
    ("conv3_1", slice(16, 24), slice(3, 9), slice(10, 17), 6),
    ("conv5_2", slice(100, 110), slice(0, 7), slice(0, 10), 5),
]


def terminating_config(rows, columns, mode, skip_zero_activations):
    return pe_config(
        rows,
        columns,
        1,
        1,
        4096,
        "relu_early_termination",
        mode=mode,
        skip_zero_activations=skip_zero_activations,
        speculative_macs=8,
    )


@pytest.mark.parametrize("mode", ["exact", "predictive"])
@pytest.mark.parametrize("skip_zero_activations", [False, True], ids=["all_activations", "skip_zeros"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_terminating_tile_cycles_equal_the_cycle_stepped_reference(
    vgg16_trace, cut, rows, skip_zero_activations, mode
):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    hw = terminating_config(rows, 2, mode, skip_zero_activations)
    geometry, tiling = cut_geometry_and_tiling(x, w, 4096)
    assert len(tiling.tiles) > 2 and tiling.n_channel_blocks == 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    operands = im2col(x, geometry, 0, geometry.out_height)
    (macs, _, outputs, _), sound = reference_layer(
        operands,
        w.reshape(w.shape[0], -1),
        b,
        mode,
        n_speculative=8,
        skip_zero_activations=skip_zero_activations,
    )
    assert sound
    termination = pe.prepared.detail.result
    np.testing.assert_array_equal(termination.macs_performed, np.array(macs))
    for tile in tiling.tiles:
        windows = list(range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width))
        expected = reference_tile_cycles(macs, range(tile.filter_start, tile.filter_stop), windows, rows)
        assert pe.work(tile).cycles == expected, f"tile {tile.index}"
    np.testing.assert_allclose(termination.output, np.array(outputs), rtol=0, atol=1e-9)


def test_exact_termination_is_exact_and_predictive_reports_its_error(simulated):
    # The shipped configs' whole-network runs (shared with the golden tier), on two of their layers.
    layers = ["conv3_1", "conv5_2"]
    exact = [simulated("snapea_exact").layer(name) for name in layers]
    predictive = [simulated("snapea_predictive").layer(name) for name in layers]
    for e, p in zip(exact, predictive, strict=True):
        assert e["functional_check"]["passed"] and e["functional_check"]["exact"]
        assert e["mechanism"]["kind"] == p["mechanism"]["kind"] == "relu_early_termination"
        e_summary, p_summary = e["mechanism"]["summary"], p["mechanism"]["summary"]
        assert e_summary["sound"] and e_summary["mispredicted_outputs"] == 0
        assert e["computes"]["early_terminated"] > 0
        assert e["computes"]["actual"] + e["computes"]["skipped"] == e["computes"]["algorithmic"]
        assert p["functional_check"]["passed"] and not p["functional_check"]["exact"]
        assert p_summary["mispredicted_outputs"] > 0
        assert p["functional_check"]["lossy_error"]["relative_rms_error"] > 0
        assert p["computes"]["actual"] < e["computes"]["actual"]


def test_negative_inputs_disable_exact_termination(simulated):
    layer = simulated("snapea_exact").layer("conv1_1")  # the whole-network run (golden tier), shared
    assert layer["mechanism"]["kind"] == "relu_early_termination"
    assert not layer["mechanism"]["summary"]["sound"]
    assert layer["computes"]["early_terminated"] == 0 and layer["functional_check"]["passed"]
