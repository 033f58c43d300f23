"""The fast PE-array model equals the cycle-stepped reference exactly, on small real tensors.

The tensors are cut from the shipped VGG16 trace (real activations, real weights): a few channels, rows and
columns of a layer's input and the matching slice of its filters.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.config import parse_hwconfig
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.mechanisms.datapath import dot_products
from tests.reference.pe_reference import reference_tile

MODES = ("dense", "zero_gating", "zero_skip_activations")  # mechanism kinds

# (layer, channel slice, row slice, column slice, filters): chosen to have zeros, nonzeros and imbalance.
CUTS = [
    ("conv1_2", slice(0, 7), slice(20, 27), slice(30, 39), 5),
    ("conv3_1", slice(16, 26), slice(3, 9), slice(10, 17), 4),
    ("conv5_2", slice(100, 112), slice(0, 7), slice(0, 10), 3),
]

ARRAYS = [  # rows, columns, activation lanes, filter lanes, weight spad words
    (1, 2, 4, 2, 4 * 2 * 9),
    (3, 2, 1, 1, 4 * 9),
    (2, 1, 3, 4, 1024),
]


def small_real_cut(trace, layer_name, channels, rows, cols, filters):
    layer = trace.layer(layer_name)
    return (
        np.ascontiguousarray(layer.input[channels, rows, cols]),
        np.ascontiguousarray(layer.weights[:filters, channels]),
        np.ascontiguousarray(layer.bias[:filters]),
    )


def cut_geometry_and_tiling(x, w, weight_spad_bytes, columns=2, filter_lanes=1):
    """A 3x3 'same' convolution of a small cut, tiled onto 2 PE columns of 1 filter lane (by default) with a
    buffer of 900 words per tile (double-buffered): several tiles, so tile boundaries are exercised."""
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=columns,
        filter_lanes=filter_lanes,
        weight_spad_bytes=weight_spad_bytes,
        global_buffer_bytes=2 * 2 * 900,
        word_bytes=2,
    )
    return geometry, tiling


def pe_config(rows, columns, lanes, filter_lanes, spad_words, kind, **mechanism):
    """A small PE array whose PEs run mechanism ``kind`` with its parameters ``mechanism``."""
    return parse_hwconfig(
        {
            "name": "reference-test",
            "pe_array": {
                "rows": rows,
                "columns": columns,
                "pe": {
                    "activation_lanes": lanes,
                    "filter_lanes": filter_lanes,
                    "weight_spad_bytes": spad_words * 2,
                    "input_spad_bytes": max(lanes * 2, 2),
                    "psum_spad_bytes": max(filter_lanes * 2, 2),
                    "mechanism": {"kind": kind, **mechanism},
                },
            },
        },
        source="test",
    )


@pytest.mark.parametrize("threshold", [0.0, 4.0], ids=["exact", "pruned"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: "r{}c{}l{}f{}".format(*a[:4]))
def test_fast_pe_cycles_and_actions_equal_the_cycle_stepped_reference(
    vgg16_trace, mode, cut, array, threshold
):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    x = np.where(np.abs(x) <= threshold, np.float32(0), x)  # activation pruning happens before the PEs
    rows, columns, lanes, filter_lanes, spad_words = array
    hw = pe_config(rows, columns, lanes, filter_lanes, spad_words, mode)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=columns,
        filter_lanes=filter_lanes,
        weight_spad_bytes=spad_words * 2,
        global_buffer_bytes=2 * 2 * 700,  # small, so that the layer splits into several row blocks
        word_bytes=2,
    )
    assert len(tiling.tiles) > 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    psums: dict = {}
    reference_actions: dict = {}
    for tile in tiling.tiles:
        fast = pe.work(tile)
        cycles, actions = reference_tile(
            x.tolist(), w.tolist(), tile, geometry, rows, lanes, filter_lanes, mode, psums
        )
        assert fast.cycles == cycles, f"tile {tile.index}"
        assert fast.actions == actions, f"tile {tile.index}"
        for key, n in actions.items():
            reference_actions[key] = reference_actions.get(key, 0) + n
    assert pe.actions == reference_actions

    # The values the reference accumulated, cycle by cycle, are the datapath's and numpy's outputs.
    reference = np.zeros((geometry.filters, geometry.out_height, geometry.out_width))
    for (k, y, xx), value in psums.items():
        reference[k, y, xx] = value
    reference = np.maximum(reference + b[:, None, None], 0.0)
    datapath = dot_products(x, w, b, geometry, "relu", rows_per_band=2)
    np.testing.assert_allclose(datapath, reference, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(pe.output().values, reference, rtol=1e-12, atol=1e-9)  # the mechanism's


def test_zero_skipping_is_faster_than_dense_on_real_relu_activations(vgg16_trace):
    x, w, b = small_real_cut(vgg16_trace, *CUTS[1])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    cycles = {}
    for mode in MODES:
        hw = pe_config(1, 2, 4, 2, 1024, mode)
        tiling = tile_layer(
            geometry,
            columns=2,
            filter_lanes=2,
            weight_spad_bytes=2048,
            global_buffer_bytes=1 << 20,
            word_bytes=2,
        )
        pe = PeArray(hw.pe_array)
        pe.prepare(x, geometry, tiling)
        cycles[mode] = sum(pe.work(tile).cycles for tile in tiling.tiles)
    assert cycles["zero_gating"] == cycles["dense"]
    assert cycles["zero_skip_activations"] < cycles["dense"]
