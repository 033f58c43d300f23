"""Bit-serial effectual-term PEs (Pragmatic-like) and Diffy's deltas: tile cycles equal the cycle-stepped
reference on small real cuts; Diffy's delta datapath reproduces the convolution."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.sparse.activation_work import lane_boundaries
from sparsesim.sparse.deltas import to_fixed_point
from tests.components.test_pe_array_reference import pe_config, small_real_cut
from tests.reference.deltas_reference import reference_window_cycles

CUTS = [
    ("conv1_2", slice(0, 7), slice(20, 27), slice(30, 39), 3),
    ("conv3_1", slice(16, 26), slice(3, 9), slice(10, 17), 3),
]


@pytest.mark.parametrize("mode", ["effectual_terms", "effectual_terms_deltas"])
@pytest.mark.parametrize(("rows", "lanes"), [(1, 4), (3, 2)])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_term_pe_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, rows, lanes, mode):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=2,
        filter_lanes=2,
        weight_spad_bytes=2 * 2 * 9 * 4,
        global_buffer_bytes=2 * 2 * 700,
        word_bytes=2,
    )
    assert len(tiling.tiles) >= 2 and tiling.n_channel_blocks > 1
    pe = PeArray(pe_config(rows, 2, lanes, 2, 2 * 9 * 4, mode).pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    ints, _ = to_fixed_point(x, bits=16)
    kind = "delta" if mode == "effectual_terms_deltas" else "raw"
    for tile in tiling.tiles:
        bounds = tile.channel_start + lane_boundaries(tile.channel_stop - tile.channel_start, lanes)
        per_lane = [
            reference_window_cycles(ints[lo:hi].tolist(), 3, 3, 1, 1, kind) if hi > lo else None
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        windows = range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        per_window = [max(1, max(lane[p] for lane in per_lane if lane is not None)) for p in windows]
        expected = sum(max(per_window[i : i + rows]) for i in range(0, len(per_window), rows))
        assert pe.work(tile).cycles == expected, f"tile {tile.index}"


def test_diffy_is_exact_on_the_16_bit_operands_and_reports_the_quantisation(simulated):
    report = simulated("diffy")  # the whole network (shared with the golden tier): every layer, not two
    for layer in report.layers:
        check = layer["functional_check"]
        assert check["passed"] and not check["exact"]  # the datapath equals numpy on the 16-bit values
        assert 0 < check["lossy_error"]["relative_rms_error"] < 1e-3  # and 16 bits cost almost nothing
    assert np.isfinite(report.totals["energy_pj"])
