"""The mapper's space and its fast estimate: what the estimate counts is what the loop nest moves, the
buffer tiles it keeps are the maximal ones that fit, and a larger buffer's space holds every buffer tile of
a smaller one's.

Synthetic shapes only (no tensors): uncompressed words, so that the estimate and the tiles count alike.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.mapping import ConvGeometry, tiles_of
from sparsesim.mapping.loopnest import DIMS, TENSORS
from sparsesim.mapping.space import (
    KEEPS,
    MAX_PE_TILES,
    candidates,
    extents,
    filter_groups_in_turn,
    halvings,
    words_moved,
)
from tests.mapping.test_loopnest import geometries


def uncompressed_footprint(geometry: ConvGeometry, mapping) -> int:
    """Words of the largest buffer tile's kept slices, uncompressed (the first block is the largest)."""
    k, c, p = (
        min(mapping.buffer_extent(dim), size) for dim, size in zip(DIMS, _sizes(geometry), strict=True)
    )
    start, stop = geometry.input_rows(0, p)
    words = {
        "Weights": k * c * geometry.kernel_positions,
        "Inputs": c * (stop - start) * geometry.width,
        "Outputs": k * p * geometry.out_width,
    }
    return sum(words[tensor] for tensor in mapping.buffer_keeps)


def _sizes(geometry):
    return geometry.filters, geometry.channels, geometry.out_height


@st.composite
def spaces(draw):
    geometry = draw(geometries)
    pe_tile = (draw(st.integers(1, geometry.filters)), draw(st.integers(1, geometry.channels)), None)
    limit = draw(st.integers(1, 4000))
    return geometry, pe_tile, limit


def space_of(geometry, pe_tile, limit):
    return candidates(geometry, pe_tile, lambda m: uncompressed_footprint(geometry, m) <= limit)


def test_halvings_and_extents():
    assert halvings(1) == [1] and halvings(7) == [1, 2, 4, 7] and halvings(8) == [1, 2, 4, 8]
    assert extents(112) == [112, 56, 28, 14, 7, 4, 2, 1]
    assert extents(14) == [14, 7, 4, 2, 1]


@settings(max_examples=120, deadline=None)
@given(spaces(), st.sampled_from(KEEPS))
def test_the_estimate_counts_the_words_the_loop_nest_moves(case, keeps):
    geometry, pe_tile, limit = case
    for mapping in space_of(geometry, pe_tile, limit)[:12]:
        mapping = dataclasses.replace(mapping, buffer_keeps=keeps)
        tiles = tiles_of(geometry, mapping).tiles
        words = words_moved(geometry, mapping, geometry.kernel_positions)
        assert words.dram_read == sum(t.weight_words + t.input_words + t.dram_psum_read_words for t in tiles)
        assert words.dram_write == sum(t.dram_write_words + t.dram_psum_write_words for t in tiles)
        sent = 0
        for t in tiles:
            start, stop = geometry.input_rows(t.out_row_start, t.out_row_stop)
            channels = t.channel_stop - t.channel_start
            if t.sends_weights:
                sent += (t.filter_stop - t.filter_start) * channels * geometry.kernel_positions
            sent += channels * (stop - start) * geometry.width + t.psum_in_words
        assert words.noc == sent + sum(t.out_words for t in tiles)


@settings(max_examples=120, deadline=None)
@given(spaces())
def test_the_space_keeps_the_maximal_buffer_tiles_that_fit(case):
    geometry, pe_tile, limit = case
    space = space_of(geometry, pe_tile, limit)
    for mapping in space:
        assert mapping.problems(geometry) == []
        assert uncompressed_footprint(geometry, mapping) <= limit
        assert mapping.global_buffer.order == "KCP"
        for i, dim in enumerate(DIMS):
            factors = list(mapping.global_buffer.factors)
            larger = [g for g in extents(-(-_sizes(geometry)[i] // mapping.extent(dim))) if g > factors[i]]
            if larger:
                factors[i] = min(larger)
                grown = dataclasses.replace(
                    mapping, global_buffer=dataclasses.replace(mapping.global_buffer, factors=tuple(factors))
                )
                assert uncompressed_footprint(geometry, grown) > limit, (mapping, dim)


@settings(max_examples=120, deadline=None)
@given(spaces(), st.integers(1, 4000))
def test_a_larger_buffer_has_a_buffer_tile_around_each_of_a_smaller_ones(case, more):
    geometry, pe_tile, limit = case
    larger = space_of(geometry, pe_tile, limit + more)
    shapes = {other.pe_tile for other in larger}
    for mapping in space_of(geometry, pe_tile, limit):
        if mapping.pe_tile not in shapes:
            # Rows cut finer than MAX_PE_TILES allows, because nothing coarser fitted the smaller buffer.
            assert len(tiles_of(geometry, mapping).tiles) > MAX_PE_TILES
            continue
        assert any(
            other.pe_tile == mapping.pe_tile
            and other.buffer_keeps >= mapping.buffer_keeps - {"Weights", "Inputs"}
            and all(
                a <= b
                for a, b in zip(mapping.global_buffer.factors, other.global_buffer.factors, strict=True)
            )
            for other in larger
        ), mapping


@settings(max_examples=120, deadline=None)
@given(spaces())
def test_filter_groups_in_turn_means_each_groups_tiles_are_consecutive(case):
    geometry, pe_tile, limit = case
    for mapping in space_of(geometry, pe_tile, limit):
        groups = [t.filter_start for t in tiles_of(geometry, mapping).tiles]
        consecutive = all(
            groups.index(g) + groups.count(g) - 1 == len(groups) - 1 - groups[::-1].index(g)
            for g in set(groups)
        )
        if filter_groups_in_turn(mapping):
            assert consecutive, mapping


def test_every_tensor_set_the_space_may_keep_keeps_the_outputs():
    assert all("Outputs" in keeps and keeps <= frozenset(TENSORS) for keeps in KEEPS)
