"""Weight skipping (Cambricon-X) and both-operand skipping (SparTen) equal the cycle-stepped reference on
small real cuts whose real weights are magnitude-pruned here (one-shot, 60 % of the cut's weights)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mechanisms.datapath import dot_products, im2col
from tests.components.test_pe_array_reference import cut_geometry_and_tiling, pe_config, small_real_cut
from tests.reference.sequential_reference import (
    reference_items,
    reference_tile_cycles,
    reference_vector_items,
)

CUTS = [
    ("conv2_2", slice(0, 12), slice(10, 16), slice(20, 28), 6),
    ("conv5_2", slice(100, 112), slice(0, 7), slice(0, 10), 5),
]


def magnitude_pruned(weights, sparsity=0.6):
    order = np.argsort(np.abs(weights), axis=None, kind="stable")
    pruned = weights.copy().ravel()
    pruned[order[: int(round(sparsity * weights.size))]] = 0.0
    return pruned.reshape(weights.shape)


@pytest.mark.parametrize("mode", ["zero_skip_weights", "zero_skip_both", "zero_skip_weight_vectors"])
@pytest.mark.parametrize(("rows", "lanes"), [(1, 4), (3, 1), (2, 16)])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_output_sequential_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, rows, lanes, mode):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    w = magnitude_pruned(w)
    spad_words = 5 * 9  # 5 channels of a filter: several channel blocks
    hw = pe_config(rows, 2, lanes, 1, spad_words, mode)
    geometry, tiling = cut_geometry_and_tiling(x, w, 2 * spad_words)
    assert len(tiling.tiles) > 2 and tiling.n_channel_blocks > 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    operands = im2col(x, geometry, 0, geometry.out_height).tolist()
    total = 0
    for tile in tiling.tiles:
        columns = slice(tile.channel_start * 9, tile.channel_stop * 9)
        flat = w[:, tile.channel_start : tile.channel_stop].reshape(w.shape[0], -1).tolist()
        if mode == "zero_skip_weight_vectors":
            block = w[:, tile.channel_start : tile.channel_stop].tolist()
            items = {
                k: dict.fromkeys(range(len(operands)), reference_vector_items(block[k], lanes))
                for k in range(tile.filter_start, tile.filter_stop)
            }
        else:
            items = {
                k: {
                    p: reference_items(operands[p][columns], flat[k], mode == "zero_skip_both")
                    for p in range(len(operands))
                }
                for k in range(tile.filter_start, tile.filter_stop)
            }
        windows = list(range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width))
        work = pe.work(tile)
        expected = reference_tile_cycles(
            items, range(tile.filter_start, tile.filter_stop), windows, rows, lanes
        )
        assert work.cycles == expected, f"tile {tile.index}"
        macs = sum(items[k][p] for k in items for p in windows)
        assert work.actions["compute"] == macs
        total += macs
    if mode != "zero_skip_weight_vectors":  # (vectors issue their zero weights too)
        assert total <= np.count_nonzero(w) * geometry.out_height * geometry.out_width
    reference = np.maximum(
        np.asarray(operands) @ w.reshape(w.shape[0], -1).T.astype(np.float64) + b, 0.0
    ).T.reshape(geometry.filters, geometry.out_height, geometry.out_width)
    datapath = dot_products(x, w, b, geometry, "relu", rows_per_band=3)
    np.testing.assert_allclose(datapath, reference, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(pe.output().values, reference, rtol=1e-12, atol=1e-9)  # the mechanism's
