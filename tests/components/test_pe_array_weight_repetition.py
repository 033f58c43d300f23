"""UCNN's weight repetition in the PE array: tile cycles and counts equal the cycle-stepped reference on
small real cuts whose real weights are quantised here (lossy, to expose repetition); the factorised
datapath reproduces the convolution; energy falls, cycles do not."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.mechanisms.datapath import im2col
from sparsesim.sparse.weight_repetition import quantize_weights
from tests.components.test_pe_array_reference import pe_config, small_real_cut
from tests.reference.sequential_reference import reference_tile_cycles
from tests.reference.weight_repetition_reference import reference_layer

CUTS = [
    ("conv2_2", slice(0, 6), slice(10, 16), slice(20, 27), 4),
    ("conv5_2", slice(100, 106), slice(0, 7), slice(0, 10), 3),
]


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_repetition_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, rows, bits):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    w = quantize_weights(w, bits)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=2,
        filter_lanes=1,
        weight_spad_bytes=4096,
        global_buffer_bytes=2 * 2 * 800,
        word_bytes=2,
    )
    assert len(tiling.tiles) > 1 and tiling.n_channel_blocks == 1
    pe = PeArray(pe_config(rows, 2, 1, 1, 2048, "weight_repetition").pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    operands = im2col(x, geometry, 0, geometry.out_height)
    counts, outputs = reference_layer(operands, w.reshape(w.shape[0], -1), b)
    for tile in tiling.tiles:
        windows = list(range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width))
        filters = range(tile.filter_start, tile.filter_stop)
        work = pe.work(tile)
        assert work.cycles == reference_tile_cycles(counts["issued"], filters, windows, rows)
        for action, name in (
            ("compute", "multiplies"),
            ("activation_add", "activation_adds"),
            ("weight_spad_read", "weight_reads"),
            ("input_spad_read", "issued"),
        ):
            assert work.actions[action] == sum(counts[name][k][p] for k in filters for p in windows), action
    datapath = pe.output().values  # UCNN's factorised datapath
    expected = np.maximum(np.array(outputs), 0.0).reshape(datapath.shape)
    np.testing.assert_allclose(datapath, expected, rtol=1e-12, atol=1e-9)


def test_repetition_saves_multiplies_and_energy_not_cycles(vgg16_trace, tmp_path):
    from sparsesim import load_hwconfig, simulate
    from sparsesim.config.overrides import with_parameter
    from sparsesim.workload.pruning import prune_trace
    from tests.conftest import HWCONFIG_DIR

    quantised = prune_trace(vgg16_trace, tmp_path / "q8", sparsity=0, method="quantize:8", layers=["conv1_2"])
    hw = load_hwconfig(HWCONFIG_DIR / "ucnn.yaml")
    ucnn = simulate(hw, quantised)
    skipping = simulate(with_parameter(hw, "pe_array.pe.mechanism.kind", "zero_skip_weights"), quantised)
    assert ucnn.totals["functional_check_passed"]
    assert ucnn.totals["cycles"] == skipping.totals["cycles"]
    assert ucnn.totals["computes"]["actual"] < skipping.totals["computes"]["actual"] / 2
    assert ucnn.totals["energy_pj"] < skipping.totals["energy_pj"]
    assert quantised.provenance["pruning"]["method"] == "quantize:8"
