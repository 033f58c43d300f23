"""Tiling: every MAC covered exactly once, tiles fit the buffers, clear errors when nothing fits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.errors import SimulationError
from sparsesim.mapping import ConvGeometry, tile_layer, tile_layer_planar
from sparsesim.mapping.tiling import _tile_footprint_words

geometries = st.builds(
    ConvGeometry,
    channels=st.integers(1, 40),
    height=st.integers(3, 20),
    width=st.integers(3, 20),
    filters=st.integers(1, 40),
    kernel_r=st.just(3),
    kernel_s=st.just(3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
)


@settings(max_examples=80, deadline=None)
@given(geometries, st.integers(1, 4), st.integers(1, 4), st.integers(9, 400), st.integers(200, 20000))
def test_tiles_cover_the_loop_nest_once_and_fit_half_the_buffer(
    geometry, columns, lanes, spad_words, buffer_words
):
    try:
        tiling = tile_layer(
            geometry,
            columns=columns,
            filter_lanes=lanes,
            weight_spad_bytes=2 * spad_words,
            global_buffer_bytes=2 * buffer_words,
            word_bytes=2,
        )
    except SimulationError:
        return
    covered = {}
    for tile in tiling.tiles:
        key = (tile.filter_start, tile.out_row_start, tile.channel_start)
        assert key not in covered
        covered[key] = tile
        n_filters = tile.filter_stop - tile.filter_start
        n_channels = tile.channel_stop - tile.channel_start
        rows = tile.out_row_stop - tile.out_row_start
        assert lanes * n_channels * 9 <= spad_words
        assert _tile_footprint_words(geometry, n_filters, n_channels, rows) <= buffer_words // 2
    macs = sum(
        (t.filter_stop - t.filter_start)
        * (t.channel_stop - t.channel_start)
        * 9
        * (t.out_row_stop - t.out_row_start)
        * geometry.out_width
        for t in tiling.tiles
    )
    assert macs == geometry.algorithmic_macs
    assert (
        sum(t.dram_write_words for t in tiling.tiles)
        == geometry.filters * geometry.out_height * geometry.out_width
    )


def test_weights_stay_resident_when_a_whole_filter_fits_the_spad():
    geometry = ConvGeometry(8, 10, 10, 4, 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=2,
        filter_lanes=2,
        weight_spad_bytes=2 * 2 * 8 * 9,
        global_buffer_bytes=4000,
        word_bytes=2,
    )
    assert tiling.n_channel_blocks == 1 and tiling.n_row_blocks > 1
    assert sum(t.weight_words for t in tiling.tiles) == 4 * 8 * 9


def test_a_spad_too_small_for_one_channel_is_a_clear_error():
    with pytest.raises(SimulationError, match="weight scratchpad.*weight_spad_bytes is 16"):
        tile_layer(
            ConvGeometry(8, 10, 10, 4, 3, 3, 1, 1),
            columns=1,
            filter_lanes=1,
            weight_spad_bytes=16,
            global_buffer_bytes=1 << 20,
            word_bytes=2,
        )


def test_a_buffer_too_small_for_one_row_is_a_clear_error():
    with pytest.raises(SimulationError, match="global buffer.*capacity_bytes is 100"):
        tile_layer(
            ConvGeometry(8, 10, 100, 4, 3, 3, 1, 1),
            columns=1,
            filter_lanes=4,
            weight_spad_bytes=1 << 16,
            global_buffer_bytes=100,
            word_bytes=2,
        )


def test_channel_blocks_keep_whole_groups_when_asked():
    geometry = ConvGeometry(64, 20, 20, 32, 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=2,
        filter_lanes=16,
        weight_spad_bytes=2 * 16 * 9 * 30,
        global_buffer_bytes=1 << 22,
        word_bytes=2,
        channel_granule=4,
    )
    assert tiling.channels_per_block == 28  # 30 fit the scratchpad: rounded down to whole groups of 4


@settings(max_examples=80, deadline=None)
@given(geometries, st.integers(200, 20000))
def test_planar_bands_cover_the_rows_once_with_every_filter_and_channel(geometry, buffer_words):
    try:
        tiling = tile_layer_planar(geometry, global_buffer_bytes=2 * buffer_words, word_bytes=2)
    except SimulationError:
        # Only when not even one output row's inputs and outputs fit half the buffer.
        assert (
            _tile_footprint_words(geometry, geometry.filters, geometry.channels, 1, False) > buffer_words // 2
        )
        return
    rows = [(t.out_row_start, t.out_row_stop) for t in tiling.tiles]
    assert rows[0][0] == 0 and rows[-1][1] == geometry.out_height
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))
    weights = geometry.filters * geometry.channels * geometry.kernel_positions
    for tile in tiling.tiles:
        assert (tile.filter_start, tile.filter_stop) == (0, geometry.filters)
        assert (tile.channel_start, tile.channel_stop) == (0, geometry.channels)
        assert tile.is_first_channel_block and tile.is_last_channel_block and tile.psum_in_words == 0
        assert tile.weight_words == weights  # streamed again with every band
        assert tile.dram_write_words == tile.out_words
    # Weights stream through: the band's inputs and outputs alone fill at most half the buffer.
    footprint = _tile_footprint_words(
        geometry, geometry.filters, geometry.channels, tiling.out_rows_per_block, False
    )
    assert footprint <= buffer_words // 2


def test_a_buffer_too_small_for_one_band_row_is_a_clear_error():
    geometry = ConvGeometry(64, 20, 20, 64, 3, 3, 1, 1)
    with pytest.raises(SimulationError, match="no band fits the global buffer"):
        tile_layer_planar(geometry, global_buffer_bytes=4096, word_bytes=2)


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 12),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 7),
    data=st.data(),
)
def test_input_rows_span_the_unpadded_rows_the_output_rows_read(height, kernel, stride, padding, data):
    if height + 2 * padding < kernel:  # the kernel does not fit: ConvGeometry refuses it
        return
    geometry = ConvGeometry(1, height, 1, 1, kernel, 1, stride, padding)
    first = data.draw(st.integers(0, geometry.out_height - 1))
    stop = data.draw(st.integers(first + 1, geometry.out_height))
    read = {
        y * stride - padding + r
        for y in range(first, stop)
        for r in range(kernel)
        if 0 <= y * stride - padding + r < height
    }
    start_row, stop_row = geometry.input_rows(first, stop)
    assert 0 <= start_row <= stop_row <= height  # never a negative count, even where only padding is read
    # The block a tile fetches: the image rows between its first and last padded row read (a stride longer
    # than the kernel skips rows inside it).
    spanned = range(first * stride - padding, (stop - 1) * stride - padding + kernel)
    assert set(range(start_row, stop_row)) == {row for row in spanned if 0 <= row < height} >= read
