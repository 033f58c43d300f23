"""Expert-aware weight fetches on a real layer: each expert's weights move once per filter group, only if a
pixel routes to it, and the router's weights move with the first tile."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.accelerator import geometry_of
from sparsesim.errors import SimulationError
from sparsesim.mapping import tile_layer
from sparsesim.mapping.experts import expert_tiles, map_experts
from sparsesim.mechanisms.datapath import im2col


@pytest.fixture(scope="module")
def conv3_1(vgg16_trace):
    layer = vgg16_trace.layer("conv3_1")
    geometry = geometry_of(layer)
    operands = im2col(layer.input, geometry, 0, geometry.out_height)
    weights = layer.weights.reshape(geometry.filters, -1)
    return geometry, operands, weights, layer.bias


@pytest.mark.parametrize(("experts", "top_k", "columns"), [(8, 1, 16), (16, 2, 24), (4, 1, 8)])
def test_each_routed_expert_is_fetched_once_per_filter_group(conv3_1, experts, top_k, columns):
    geometry, operands, weights, bias = conv3_1
    mapping = map_experts(operands, weights, bias, experts=experts, top_k=top_k, seed=0)
    assert np.array_equal(np.sort(mapping.order), np.arange(geometry.filters))
    assert np.all(np.diff(mapping.expert_of_filter[mapping.order]) >= 0)  # experts contiguous
    tiling = tile_layer(
        geometry,
        columns=columns,
        filter_lanes=1,
        weight_spad_bytes=1 << 16,
        global_buffer_bytes=1 << 18,
        word_bytes=2,
    )
    assert tiling.n_row_blocks > 1
    tiled, ranges = expert_tiles(tiling, mapping)
    words_per_filter = geometry.channels * 9
    used = mapping.selected.any(axis=0)
    fetched = np.zeros(geometry.filters + experts, dtype=np.int64)
    for tile, tile_ranges in zip(tiled.tiles, ranges, strict=True):
        assert tile.weight_words == sum(b - a for a, b in tile_ranges) * words_per_filter
        for a, b in tile_ranges:
            fetched[a:b] += 1
            if b <= geometry.filters:
                assert tile.filter_start <= a < b <= tile.filter_stop
                size = mapping.expert_size
                assert a // size == (b - 1) // size  # one expert's filters of this group
                assert used[a // size]
    assert ranges[0][-1] == (geometry.filters, geometry.filters + experts)
    assert np.all(fetched[geometry.filters :] == 1)
    expert_of_run = np.repeat(np.arange(experts), mapping.expert_size)
    assert np.array_equal(fetched[: geometry.filters], used[expert_of_run].astype(np.int64))


def test_split_filters_are_refused(conv3_1):
    geometry, operands, weights, bias = conv3_1
    mapping = map_experts(operands, weights, bias, experts=8, top_k=2, seed=0)
    tiling = tile_layer(
        geometry, columns=16, filter_lanes=1, weight_spad_bytes=256, global_buffer_bytes=1 << 20, word_bytes=2
    )
    with pytest.raises(SimulationError, match="raise pe_array.pe.weight_spad_bytes"):
        expert_tiles(tiling, mapping, "conv3_1")
