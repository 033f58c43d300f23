"""Mappings as loop nests: the PE tiles they make, and what each tile moves under the reuse rules.

Synthetic shapes only (no tensors): the rules are about slices, not values.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.mapping import ConvGeometry, LayerMapping, Loops, tile_layer, tiles_of
from sparsesim.mapping.loopnest import DIMS, TENSORS, covering, dimension_sizes, subtract_rows
from tests.mapping.strategies import mappings

geometries = st.builds(
    ConvGeometry,
    channels=st.integers(1, 24),
    height=st.integers(3, 16),
    width=st.integers(3, 6),
    filters=st.integers(1, 24),
    kernel_r=st.sampled_from([1, 3]),
    kernel_s=st.sampled_from([1, 3]),
    stride=st.integers(1, 3),
    padding=st.integers(0, 1),
)


@st.composite
def mapped_layers(draw):
    geometry = draw(geometries)
    return geometry, draw(mappings(geometry))


@settings(max_examples=150, deadline=None)
@given(mapped_layers())
def test_pe_tiles_cover_the_loop_nest_exactly_once(case):
    geometry, mapping = case
    assert mapping.problems(geometry) == []
    tiling = tiles_of(geometry, mapping)
    seen = set()
    for tile in tiling.tiles:
        for point in itertools.product(
            range(tile.filter_start, tile.filter_stop),
            range(tile.channel_start, tile.channel_stop),
            range(tile.out_row_start, tile.out_row_stop),
        ):
            assert point not in seen
            seen.add(point)
    assert len(seen) == geometry.filters * geometry.channels * geometry.out_height


@settings(max_examples=150, deadline=None)
@given(mapped_layers())
def test_every_output_leaves_once_and_every_spilled_partial_sum_comes_back(case):
    geometry, mapping = case
    tiles = tiles_of(geometry, mapping).tiles
    outputs = geometry.filters * geometry.out_height * geometry.out_width
    assert sum(t.dram_write_words for t in tiles) == outputs
    assert sum(t.dram_psum_write_words for t in tiles) == sum(t.dram_psum_read_words for t in tiles)
    for tile in tiles:
        assert not (tile.dram_psum_read_words and tile.is_first_channel_block)
        assert not (tile.dram_write_words and tile.dram_psum_write_words)
        if tile.is_first_channel_block:
            assert tile.continues is None
            continue
        source = tiles[tile.continues]  # the partial sums it continues: same outputs, the channels before
        assert source.index < tile.index
        assert (source.filter_start, source.filter_stop) == (tile.filter_start, tile.filter_stop)
        assert (source.out_row_start, source.out_row_stop) == (tile.out_row_start, tile.out_row_stop)
        assert source.channel_stop == tile.channel_start
        # Spilled by the source exactly when read back from DRAM by this tile.
        assert bool(source.dram_psum_write_words) == bool(tile.dram_psum_read_words)


@settings(max_examples=150, deadline=None)
@given(mapped_layers())
def test_a_buffer_that_keeps_a_tensor_fetches_no_more_of_it_than_one_that_streams_it(case):
    geometry, mapping = case
    kept = tiles_of(geometry, _keeping(mapping, TENSORS)).tiles
    streamed = tiles_of(geometry, _keeping(mapping, ())).tiles
    for words in ("weight_words", "input_words", "dram_psum_read_words", "dram_psum_write_words"):
        assert sum(getattr(t, words) for t in kept) <= sum(getattr(t, words) for t in streamed)
    assert (
        sum(t.weight_words for t in kept) >= geometry.filters * geometry.channels * geometry.kernel_positions
    )


@settings(max_examples=200, deadline=None)
@given(mapped_layers())
def test_one_buffer_tile_that_keeps_everything_fetches_each_value_once(case):
    geometry, mapping = case
    sizes = dimension_sizes(geometry)
    whole = LayerMapping(
        dram=Loops((1, 1, 1)),
        pe_tile=mapping.pe_tile,
        global_buffer=Loops(
            tuple(covering(sizes[d], mapping.extent(d)) for d in DIMS), mapping.global_buffer.order
        ),
    )
    tiles = tiles_of(geometry, whole).tiles
    assert (
        sum(t.weight_words for t in tiles) == geometry.filters * geometry.channels * geometry.kernel_positions
    )
    # Each input row a PE tile's span holds is fetched once, however many row blocks' halos share it.
    extent = mapping.extent("P")
    spans = {
        row
        for start in range(0, geometry.out_height, extent)
        for row in range(*geometry.input_rows(start, min(geometry.out_height, start + extent)))
    }
    assert sum(t.input_words for t in tiles) == geometry.channels * len(spans) * geometry.width
    assert sum(t.dram_psum_read_words for t in tiles) == 0


def test_weights_stay_in_the_pes_while_consecutive_tiles_share_them():
    geometry = ConvGeometry(8, 10, 4, 16, 3, 3, 1, 1)
    # Rows inside filters: the PEs keep a filter group's weights across its row blocks.
    rows_inner = LayerMapping(dram=Loops((2, 1, 5), "KCP"), pe_tile=(8, 8, 2))
    tiles = tiles_of(geometry, rows_inner).tiles
    assert [t.sends_weights for t in tiles] == [True, False, False, False, False] * 2
    assert [bool(t.weight_words) for t in tiles] == [True, False, False, False, False] * 2
    # Filters inside rows: they alternate, so each tile sends its weights, but the buffer keeps both groups
    # only within a buffer tile; here each PE tile is its own buffer tile, so DRAM sends them again.
    filters_inner = LayerMapping(dram=Loops((2, 1, 5), "PCK"), pe_tile=(8, 8, 2))
    tiles = tiles_of(geometry, filters_inner).tiles
    assert all(t.sends_weights and t.weight_words for t in tiles)
    # The same order with both filter groups in one buffer tile: fetched once each, still sent each time.
    grouped = LayerMapping(dram=Loops((1, 1, 5), "PCK"), pe_tile=(8, 8, 2), global_buffer=Loops((2, 1, 1)))
    tiles = tiles_of(geometry, grouped).tiles
    assert all(t.sends_weights for t in tiles)
    assert sum(bool(t.weight_words) for t in tiles) == 2


def test_partial_sums_spill_when_channels_are_the_outer_loop():
    geometry = ConvGeometry(8, 6, 4, 4, 3, 3, 1, 1)
    channels_outer = LayerMapping(dram=Loops((1, 2, 3), "CKP"), pe_tile=(4, 4, 2))
    tiles = tiles_of(geometry, channels_outer).tiles
    assert [t.dram_psum_write_words > 0 for t in tiles] == [True] * 3 + [False] * 3
    assert [t.dram_psum_read_words > 0 for t in tiles] == [False] * 3 + [True] * 3
    assert [t.continues for t in tiles[3:]] == [0, 1, 2]
    # Channels innermost: the partial sums stay in the buffer.
    channels_inner = LayerMapping(dram=Loops((1, 2, 3), "KPC"), pe_tile=(4, 4, 2))
    tiles = tiles_of(geometry, channels_inner).tiles
    assert sum(t.dram_psum_write_words + t.dram_psum_read_words for t in tiles) == 0
    # A buffer that does not keep outputs spills them even then.
    streamed = LayerMapping(
        dram=Loops((1, 2, 3), "KPC"), pe_tile=(4, 4, 2), buffer_keeps=frozenset({"Weights"})
    )
    tiles = tiles_of(geometry, streamed).tiles
    assert sum(t.dram_psum_write_words for t in tiles) == 4 * 6 * 4


def test_halo_rows_already_in_the_buffer_are_not_fetched_again():
    geometry = ConvGeometry(2, 8, 5, 4, 3, 3, 1, 1)  # 8 output rows, 3x3, padding 1: blocks share 2 rows
    streamed_rows = LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(4, 2, 2), global_buffer=Loops((1, 1, 4)))
    tiles = tiles_of(geometry, streamed_rows).tiles
    assert [t.input_fetch_rows for t in tiles] == [((0, 3),), ((3, 5),), ((5, 7),), ((7, 8),)]
    # As separate buffer tiles, each block fetches its halo again.
    separate = LayerMapping(dram=Loops((1, 1, 4)), pe_tile=(4, 2, 2))
    tiles = tiles_of(geometry, separate).tiles
    assert [t.input_fetch_rows for t in tiles] == [((0, 3),), ((1, 5),), ((3, 7),), ((5, 8),)]


@pytest.mark.parametrize(
    "needed, held, left",
    [
        ((0, 5), [], [(0, 5)]),
        ((0, 5), [(0, 3)], [(3, 5)]),
        ((2, 8), [(0, 3), (5, 6)], [(3, 5), (6, 8)]),
        ((2, 4), [(0, 9)], []),
        ((3, 3), [], []),
    ],
)
def test_subtract_rows(needed, held, left):
    assert subtract_rows(needed, held) == left


@pytest.mark.parametrize(
    "mapping, where",
    [
        (LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(4, 4, 2)), "dram.P"),  # 2 rows do not cover 6
        (LayerMapping(dram=Loops((1, 1, 4)), pe_tile=(4, 4, 2)), "dram.P"),  # 4 blocks of 2: one empty
        (LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(4, 9, 6)), "pe_array.C"),
        (
            LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(4, 4, 2), global_buffer=Loops((1, 1, 4))),
            "global_buffer.P",
        ),
    ],
)
def test_a_mapping_that_does_not_cover_the_layer_once_says_where(mapping, where):
    geometry = ConvGeometry(4, 6, 4, 4, 3, 3, 1, 1)
    assert where in [place for place, _ in mapping.problems(geometry)]


def test_the_built_in_tiling_is_the_mapping_it_states():
    geometry = ConvGeometry(64, 30, 20, 300, 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=16,
        filter_lanes=16,
        weight_spad_bytes=4096,
        global_buffer_bytes=1 << 18,
        word_bytes=2,
    )
    assert tiles_of(geometry, tiling.mapping) == tiling


def _keeping(mapping: LayerMapping, tensors) -> LayerMapping:
    return LayerMapping(
        mapping.dram, mapping.pe_tile, mapping.global_buffer, frozenset(tensors), mapping.pe_keeps
    )
