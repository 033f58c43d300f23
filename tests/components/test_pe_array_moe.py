"""Mixture of experts (MoEfication) on the PE array: the fast model equals the cycle-stepped reference on
small real cuts of the shipped trace, its actions add up, and the datapath computes the routed outputs."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.pe_array import PeArray
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.mapping.experts import expert_tiles, map_experts
from sparsesim.mechanisms.datapath import im2col
from tests.components.test_pe_array_reference import pe_config, small_real_cut
from tests.reference.moe_reference import reference_moe_tile_cycles

# (layer, channel slice, row slice, column slice, filters): real activations and filters.
CUTS = [
    ("conv2_2", slice(0, 12), slice(10, 18), slice(20, 28), 16),
    ("conv4_1", slice(100, 112), slice(0, 8), slice(0, 10), 12),
]
ARRAYS = [(1, 2, 4), (3, 2, 1), (2, 4, 16)]  # rows, columns (one filter lane each), activation lanes


def _mapped(cut, trace, experts, top_k, columns, spare_rows=2):
    x, w, b = small_real_cut(trace, *cut)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    operands = im2col(x, geometry, 0, geometry.out_height)
    mapping = map_experts(
        operands, w.reshape(w.shape[0], -1), b, experts=experts, top_k=top_k, seed=0, layer_name=cut[0]
    )
    # A buffer of a few output rows: several row blocks per filter group.
    footprint = (
        columns * x.shape[0] * 9 + x.shape[0] * (spare_rows + 2) * x.shape[2] + columns * 2 * x.shape[2]
    )
    tiling = tile_layer(
        geometry,
        columns=columns,
        filter_lanes=1,
        weight_spad_bytes=2 * x.shape[0] * 9,
        global_buffer_bytes=2 * 2 * footprint,
        word_bytes=2,
    )
    return x, w, b, geometry, mapping, tiling, operands


def _prepared(pe, x, geometry, tiling, w, b, mapping, name):
    """Prepare the layer (the mechanism maps the experts itself, in ``plan``) and check that its mapping is
    the test's, and that the machine runs the filters in the mapping's order; the tiling with the experts'
    weight fetches."""
    plan = pe.prepare(x, geometry, tiling, w, b, name=name)
    got = plan.state[0]
    assert (got.experts, got.top_k) == (mapping.experts, mapping.top_k)
    for field in ("expert_of_filter", "order", "selected", "router_weights", "router_bias"):
        np.testing.assert_array_equal(getattr(got, field), getattr(mapping, field), err_msg=field)
    np.testing.assert_array_equal(plan.operands.weights_kcrs, w[mapping.order])
    np.testing.assert_array_equal(plan.operands.bias, b[mapping.order])
    tiling, _ = expert_tiles(tiling, mapping)
    assert pe.prepared.tiling == tiling
    return tiling


@pytest.mark.parametrize(("rows", "columns", "lanes"), ARRAYS)
@pytest.mark.parametrize(("experts", "top_k"), [(4, 1), (4, 2), (2, 2)])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_moe_tiles_equal_the_cycle_stepped_reference(vgg16_trace, cut, rows, columns, lanes, experts, top_k):
    x, w, b, geometry, mapping, tiling, _ = _mapped(cut, vgg16_trace, experts, top_k, columns)
    assert tiling.n_row_blocks > 1 and tiling.n_filter_groups > 1
    hw = pe_config(
        rows, columns, lanes, 1, x.shape[0] * 9, "mixture_of_experts", experts=experts, top_k=top_k, seed=0
    )
    pe = PeArray(hw.pe_array)
    tiling = _prepared(pe, x, geometry, tiling, w, b, mapping, cut[0])
    routed = mapping.routed_in_run_order().tolist()
    macs_per_output = geometry.channels * 9
    for tile in tiling.tiles:
        windows = list(range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width))
        expected = reference_moe_tile_cycles(
            routed,
            range(tile.filter_start, tile.filter_stop),
            windows,
            rows,
            lanes,
            macs_per_output,
            experts if tile.filter_start == 0 else 0,
            columns,
        )
        assert pe.work(tile).cycles == expected, tile
    # Every routed output's MACs performed once, the others skipped; the router's MACs once per pixel.
    pixels = geometry.out_height * geometry.out_width
    assert pe.actions["compute"] == int(np.sum(routed)) * macs_per_output
    assert pe.actions["compute"] + pe.actions["skipped_compute"] == geometry.algorithmic_macs
    assert pe.actions["router_compute"] == experts * pixels * macs_per_output


def test_moe_with_every_expert_selected_costs_the_dense_work_plus_the_router(vgg16_trace):
    experts = 4
    x, w, b, geometry, mapping, tiling, _ = _mapped(CUTS[0], vgg16_trace, experts, experts, 2)
    hw = pe_config(1, 2, 4, 1, x.shape[0] * 9, "mixture_of_experts", experts=experts, top_k=experts, seed=0)
    pe = PeArray(hw.pe_array)
    tiling = _prepared(pe, x, geometry, tiling, w, b, mapping, CUTS[0][0])
    cycles = sum(pe.work(tile).cycles for tile in tiling.tiles)
    per_output = -(-geometry.channels * 9 // 4)
    pixels = geometry.out_height * geometry.out_width
    dense = geometry.filters // 2 * pixels * per_output  # 2 filter lanes, every output
    router = -(-experts // 2) * pixels * per_output
    assert cycles == dense + router
    assert pe.actions["skipped_compute"] == 0
