"""N:M structured sparsity (2:4 sparse tensor core) on small real cuts whose real weights are 2:4-pruned
here: tile cycles and MACs equal the cycle-stepped reference; dense weights fall back to dense cycles."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.sparse.structured import conforms_n_m, n_m_prune_mask, parse_n_m
from tests.components.test_pe_array_reference import pe_config, small_real_cut
from tests.reference.structured_reference import reference_n_m_tile

CUTS = [
    ("conv2_2", slice(0, 16), slice(10, 16), slice(20, 28), 5),
    ("conv5_2", slice(96, 120), slice(0, 7), slice(0, 10), 4),
]


def n_m_config(rows, lanes, filter_lanes, spad_words, pattern):
    return pe_config(rows, 2, lanes, filter_lanes, spad_words, "n_m_weights", pattern=pattern)


@pytest.mark.parametrize("pattern", ["2:4", "1:4"])
@pytest.mark.parametrize(("rows", "lanes", "filter_lanes"), [(1, 2, 2), (3, 1, 1), (2, 4, 1)])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_n_m_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, rows, lanes, filter_lanes, pattern):
    n, m = parse_n_m(pattern)
    x, w, b = small_real_cut(vgg16_trace, *cut)
    w = np.where(n_m_prune_mask(w, n, m), np.float32(0), w)
    assert conforms_n_m(w, n, m)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    spad_words = filter_lanes * 8 * 9  # 8 channels: several channel blocks, whole groups
    hw = n_m_config(rows, lanes, filter_lanes, spad_words, pattern)
    tiling = tile_layer(
        geometry,
        columns=2,
        filter_lanes=filter_lanes,
        weight_spad_bytes=2 * spad_words,
        global_buffer_bytes=2 * 2 * 1200,
        word_bytes=2,
    )
    assert len(tiling.tiles) > 2 and tiling.n_channel_blocks > 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    assert pe.prepared.used
    psums: dict = {}
    for tile in tiling.tiles:
        work = pe.work(tile)
        cycles, issued = reference_n_m_tile(x.tolist(), w.tolist(), tile, geometry, rows, lanes, n, m, psums)
        assert work.cycles == cycles, f"tile {tile.index}"
        assert work.actions["compute"] == issued
    dense = np.einsum("kcrs,pcrs->kp", w.astype(np.float64), _patches(x, geometry)).reshape(
        geometry.filters, geometry.out_height, geometry.out_width
    )
    got = np.zeros_like(dense)
    for (k, y, xx), value in psums.items():
        got[k, y, xx] = value
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-9)


def _patches(x, geometry):
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    return np.stack(
        [
            padded[:, y : y + 3, xx : xx + 3]
            for y in range(geometry.out_height)
            for xx in range(geometry.out_width)
        ]
    )


def test_dense_weights_run_dense(vgg16_trace):
    x, w, b = small_real_cut(vgg16_trace, *CUTS[0])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry, columns=2, filter_lanes=2, weight_spad_bytes=4096, global_buffer_bytes=1 << 20, word_bytes=2
    )
    structured = PeArray(n_m_config(1, 2, 2, 2048, "2:4").pe_array)
    structured.prepare(x, geometry, tiling, w, b)
    dense = PeArray(pe_config(1, 2, 2, 2, 2048, "dense").pe_array)
    dense.prepare(x, geometry, tiling, w, b)
    assert not structured.prepared.used
    assert [structured.work(t).cycles for t in tiling.tiles] == [dense.work(t).cycles for t in tiling.tiles]


def test_2_of_4_halves_the_cycles_however_sparse_the_weights(vgg16_trace):
    x, w, b = small_real_cut(vgg16_trace, *CUTS[0])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry, columns=2, filter_lanes=2, weight_spad_bytes=4096, global_buffer_bytes=1 << 20, word_bytes=2
    )
    cycles = {}
    for label, (n, m) in {"2:4": (2, 4), "1:4 run as 2:4": (1, 4)}.items():
        pruned = np.where(n_m_prune_mask(w, n, m), np.float32(0), w)
        pe = PeArray(n_m_config(1, 2, 2, 2048, "2:4").pe_array)
        pe.prepare(x, geometry, tiling, pruned, b)
        cycles[label] = sum(pe.work(t).cycles for t in tiling.tiles)
    dense = PeArray(pe_config(1, 2, 2, 2, 2048, "dense").pe_array)
    dense.prepare(x, geometry, tiling, w, b)
    dense_cycles = sum(dense.work(t).cycles for t in tiling.tiles)
    assert cycles["2:4"] * 2 == dense_cycles
    assert cycles["1:4 run as 2:4"] == cycles["2:4"]  # extra zeros buy nothing: at most 2x
