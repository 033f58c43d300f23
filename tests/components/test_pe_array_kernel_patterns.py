"""Kernel patterns (PatDNN/PCONV on an output-sequential PE) on small real cuts whose real weights are
pattern-pruned here (one-shot, with and without connectivity pruning): tile cycles, MACs and pattern-id
reads equal the cycle-stepped reference, the datapath's outputs equal numpy's, and weights that follow no
pattern (the shipped dense weights) run dense."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mechanisms.datapath import dot_products, im2col
from sparsesim.sparse.patterns import layer_patterns, pattern_prune
from tests.components.test_pe_array_reference import cut_geometry_and_tiling, pe_config, small_real_cut
from tests.reference.pattern_reference import reference_pattern_tile

CUTS = [
    ("conv2_2", slice(0, 12), slice(10, 16), slice(20, 28), 6),
    ("conv5_2", slice(100, 112), slice(0, 7), slice(0, 10), 5),
]


def pattern_config(rows, lanes, spad_words, entries=4, library_size=8):
    return pe_config(
        rows, 2, lanes, 1, spad_words, "kernel_patterns", entries=entries, library_size=library_size
    )


def run_against_reference(x, w, b, rows, lanes, library_size=8):
    spad_words = 5 * 9  # 5 channels of a filter: several channel blocks
    hw = pattern_config(rows, lanes, spad_words, library_size=library_size)
    geometry, tiling = cut_geometry_and_tiling(x, w, 2 * spad_words)
    assert len(tiling.tiles) > 2 and tiling.n_channel_blocks > 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    patterns = layer_patterns(w, 4, library_size)
    if patterns is None:
        library = ids = None
    else:
        library = [[divmod(int(i), 3) for i in np.flatnonzero(row)] for row in patterns.library]
        ids = patterns.pattern_ids.tolist()
    psums: dict = {}
    for tile in tiling.tiles:
        work = pe.work(tile)
        cycles, macs, id_reads = reference_pattern_tile(
            x.tolist(), w.tolist(), tile, geometry, rows, lanes, library, ids, psums
        )
        assert work.cycles == cycles, f"tile {tile.index}"
        assert work.actions["compute"] == macs
        assert work.actions["input_spad_metadata_read"] == id_reads
        assert work.actions["compute"] + work.actions["skipped_compute"] == (
            (tile.filter_stop - tile.filter_start)
            * (tile.out_row_stop - tile.out_row_start)
            * geometry.out_width
            * (tile.channel_stop - tile.channel_start)
            * 9
        )
    out = np.array(
        [
            [
                [psums.get((k, y, xx), 0.0) for xx in range(geometry.out_width)]
                for y in range(geometry.out_height)
            ]
            for k in range(geometry.filters)
        ]
    )
    stepped = np.maximum(out + b.astype(np.float64)[:, None, None], 0.0)
    numpy_reference = np.maximum(
        im2col(x, geometry, 0, geometry.out_height) @ w.reshape(w.shape[0], -1).T.astype(np.float64) + b, 0.0
    ).T.reshape(stepped.shape)
    datapath = dot_products(x, w, b, geometry, "relu", rows_per_band=3)
    np.testing.assert_allclose(stepped, numpy_reference, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(datapath, numpy_reference, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(pe.output().values, numpy_reference, rtol=1e-12, atol=1e-9)  # the mechanism's
    return pe


@pytest.mark.parametrize("connectivity", [0.0, 0.5])
@pytest.mark.parametrize(("rows", "lanes"), [(1, 4), (3, 1), (2, 16)])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_kernel_pattern_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, rows, lanes, connectivity):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    w = np.where(pattern_prune(w, 8, connectivity).mask, np.float32(0), w)
    pe = run_against_reference(x, w, b, rows, lanes)
    summary = pe.summary()
    assert summary["used"] and summary["entries"] == 4 and summary["library_size"] <= 8
    assert summary["connected_kernels"] == round((1 - connectivity) * w.shape[0] * w.shape[1])


@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_dense_real_weights_fall_back_to_dense_on_a_kernel_pattern_pe(vgg16_trace, cut):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    pe = run_against_reference(x, w, b, rows=2, lanes=4)
    assert pe.summary()["used"] is False
    assert pe.actions["skipped_compute"] == 0 and pe.actions["input_spad_metadata_read"] == 0


def test_a_library_too_small_for_the_weights_falls_back_to_dense(vgg16_trace):
    x, w, b = small_real_cut(vgg16_trace, *CUTS[0])
    w = np.where(pattern_prune(w, 8).mask, np.float32(0), w)
    assert layer_patterns(w, 4, 8) is not None and layer_patterns(w, 4, 2) is None
    pe = run_against_reference(x, w, b, rows=1, lanes=4, library_size=2)
    assert pe.summary()["used"] is False
