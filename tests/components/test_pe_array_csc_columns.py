"""Eyeriss v2's compressed-column PEs (both operands skipped, per nonzero activation its weight column)
equal the cycle-stepped reference on small real cuts, whose real weights are magnitude-pruned here
(one-shot, 60 % of the cut's weights; the shipped trace's weights are dense)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.mechanisms.datapath import dot_products, im2col
from tests.components.test_pe_array_reference import cut_geometry_and_tiling, pe_config, small_real_cut
from tests.components.test_pe_array_weight_skipping import magnitude_pruned
from tests.reference.csc_reference import reference_tile

CUTS = [
    ("conv2_2", slice(0, 12), slice(10, 16), slice(20, 28), 7),
    ("conv5_2", slice(100, 112), slice(0, 7), slice(0, 10), 5),
]
ARRAYS = [  # rows, columns, activation lanes, filter lanes
    (1, 1, 1, 1),
    (3, 2, 1, 2),
    (2, 2, 2, 3),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: "r{}c{}a{}f{}".format(*a))
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_csc_columns_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, array):
    rows, columns, activation_lanes, filter_lanes = array
    x, w, b = small_real_cut(vgg16_trace, *cut)
    w = magnitude_pruned(w)
    spad_words = filter_lanes * 5 * 9  # 5 channels: several channel blocks
    hw = pe_config(rows, columns, activation_lanes, filter_lanes, spad_words, "csc_columns")
    geometry, tiling = cut_geometry_and_tiling(x, w, 2 * spad_words, columns, filter_lanes)
    assert len(tiling.tiles) > 2 and tiling.n_channel_blocks > 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    operands = im2col(x, geometry, 0, geometry.out_height).tolist()
    total = 0
    for tile in tiling.tiles:
        block = slice(tile.channel_start * 9, tile.channel_stop * 9)
        flat = w[:, tile.channel_start : tile.channel_stop].reshape(w.shape[0], -1).tolist()
        windows = list(range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width))
        cycles, macs, reads = reference_tile(
            [row[block] for row in operands],
            flat,
            range(tile.filter_start, tile.filter_stop),
            windows,
            rows,
            filter_lanes,
            activation_lanes,
        )
        work = pe.work(tile)
        assert work.cycles == cycles, f"tile {tile.index}"
        assert work.actions["compute"] == work.actions["weight_spad_read"] == macs
        assert work.actions["input_spad_read"] == work.actions["input_spad_metadata_read"] == reads
        algorithmic = (tile.filter_stop - tile.filter_start) * len(windows) * (block.stop - block.start)
        assert work.actions["skipped_compute"] == algorithmic - macs
        total += macs
    # Every MAC performed is effectual: both operands nonzero, each counted once.
    nonzero_operands = (np.asarray(operands) != 0).astype(np.int64)
    assert total == int((nonzero_operands @ (w.reshape(w.shape[0], -1) != 0).T.astype(np.int64)).sum())
    reference = np.maximum(
        np.asarray(operands) @ w.reshape(w.shape[0], -1).T.astype(np.float64) + b, 0.0
    ).T.reshape(geometry.filters, geometry.out_height, geometry.out_width)
    np.testing.assert_allclose(pe.output().values, reference, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(
        dot_products(x, w, b, geometry, "relu", rows_per_band=3), reference, rtol=1e-12, atol=1e-9
    )


def test_one_filter_lane_issues_exactly_the_effectual_macs(vgg16_trace):
    """With one filter lane and one activation lane a PE's cycles are its effectual MACs (plus one per
    window with none): what Sparseloop's Eyeriss v2 PE validation measures."""
    x, w, b = small_real_cut(vgg16_trace, "conv3_1", slice(16, 40), slice(3, 9), slice(10, 17), 4)
    w = magnitude_pruned(w, 0.5)
    hw = pe_config(1, 1, 1, 1, 1024, "csc_columns")
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry, columns=1, filter_lanes=1, weight_spad_bytes=2048, global_buffer_bytes=1 << 20, word_bytes=2
    )
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    operands = (im2col(x, geometry, 0, geometry.out_height) != 0).astype(np.int64)
    per_output = operands @ (w.reshape(w.shape[0], -1) != 0).T.astype(np.int64)  # (P, K)
    works = [pe.work(tile) for tile in tiling.tiles]
    assert tiling.n_channel_blocks == 1
    assert sum(work.cycles for work in works) == int(np.maximum(per_output, 1).sum())
    assert sum(work.actions["compute"] for work in works) == int(per_output.sum())


def test_the_validation_pe_is_busy_exactly_its_effectual_macs(vgg16_trace):
    """``hwconfigs/validation/eyeriss_v2_pe.yaml`` (one PE of one MAC, Sparseloop's Eyeriss v2 PE set-up) on
    a real cut of conv3_1 with its real weights magnitude-pruned to 60 %: the PE array is busy the cut's
    effectual MACs (what the published PE cycles count), plus one cycle for each output of a channel block
    that has none; the functional check passes."""
    from dataclasses import replace

    from sparsesim.config import load_hwconfig
    from sparsesim.simulator import simulate_layer
    from sparsesim.sparse.activation_work import effectual_macs
    from tests.conftest import HWCONFIG_DIR
    from tests.real_cuts import crop, pruned_weights

    layer = crop(vgg16_trace.layer("conv3_1"), 48, 10, 12, 12, "conv3_1_cut")
    pruned = pruned_weights(vgg16_trace, "conv3_1", 0.6)[:12, :48]
    layer = crop(replace(layer, weights=pruned), 48, 10, 12, 12, "conv3_1_cut")
    result = simulate_layer(load_hwconfig(HWCONFIG_DIR / "validation" / "eyeriss_v2_pe.yaml"), layer)
    effectual = effectual_macs(layer.input, layer.weights, layer.stride, layer.padding)
    block = result["tiling"]["channels_per_block"]
    geometry = ConvGeometry(48, 10, 12, 12, 3, 3, 1, 1)
    operands = (im2col(layer.input, geometry, 0, 10) != 0).astype(np.int64).reshape(120, 48, 9)
    nonzero_weights = (layer.weights != 0).astype(np.int64).reshape(12, 48, 9)
    busy = 0
    for first in range(0, 48, block):
        channels = slice(first, first + block)
        pairs = operands[:, channels].reshape(120, -1) @ nonzero_weights[:, channels].reshape(12, -1).T
        busy += int(np.maximum(pairs, 1).sum())
    assert 48 // block >= 2 and busy > effectual  # several blocks, some outputs with none
    assert result["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"] == busy
    assert result["computes"]["charged"] == result["computes"]["effectual"] == effectual
    assert result["functional_check"]["passed"]
