"""The mapper's space and its fast estimate: what the estimate counts is what the loop nest moves; the
buffer tiles it keeps are every one that fits where the weights stream through the buffer and the maximal
ones where the buffer keeps them; and a larger buffer's space holds a smaller one's.

Synthetic shapes only (no tensors): uncompressed words, so that the estimate and the tiles count alike.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.mapping import ConvGeometry, tiles_of
from sparsesim.mapping.loopnest import DIMS, TENSORS, LayerMapping, Loops
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
        # Scaled by the tensors' compression: weights and inputs as their formats say, partial sums not.
        scaled = words_moved(geometry, mapping, geometry.kernel_positions, dram_scale=(0.5, 0.25, 1.0))
        fetched = sum(t.weight_words * 0.5 + t.input_words * 0.25 + t.dram_psum_read_words for t in tiles)
        assert scaled.dram_read == round(fetched)
        assert scaled.noc == words.noc and scaled.dram_write == words.dram_write


def _maximal(geometry, mapping, limit) -> bool:
    """Whether no dimension of ``mapping``'s buffer tile can grow one step and still fit ``limit``."""
    for i, dim in enumerate(DIMS):
        factors = list(mapping.global_buffer.factors)
        larger = [g for g in extents(-(-_sizes(geometry)[i] // mapping.extent(dim))) if g > factors[i]]
        if larger:
            factors[i] = min(larger)
            grown = dataclasses.replace(
                mapping, global_buffer=dataclasses.replace(mapping.global_buffer, factors=tuple(factors))
            )
            if uncompressed_footprint(geometry, grown) <= limit:
                return False
    return True


@settings(max_examples=120, deadline=None)
@given(spaces(), st.booleans())
def test_the_space_has_every_buffer_tile_that_fits_a_streamed_tensor_and_the_maximal_ones_else(case, every):
    geometry, pe_tile, limit = case
    space = candidates(
        geometry, pe_tile, lambda m: uncompressed_footprint(geometry, m) <= limit, every_tile=every
    )
    tiles = {(m.pe_tile, m.buffer_keeps, m.global_buffer.factors) for m in space}
    for mapping in space:
        assert mapping.problems(geometry) == []
        assert uncompressed_footprint(geometry, mapping) <= limit
        assert mapping.global_buffer.order == "KCP"
        if not every or "Weights" in mapping.buffer_keeps:
            assert _maximal(geometry, mapping, limit), mapping
            continue
        # Every buffer tile inside one of the space is in it too (each dimension one step smaller).
        blocks = [-(-size // mapping.extent(dim)) for dim, size in zip(DIMS, _sizes(geometry), strict=True)]
        for i in range(len(DIMS)):
            smaller = [g for g in extents(blocks[i]) if g < mapping.global_buffer.factors[i]]
            if smaller:
                factors = list(mapping.global_buffer.factors)
                factors[i] = max(smaller)
                assert (mapping.pe_tile, mapping.buffer_keeps, tuple(factors)) in tiles, mapping


@settings(max_examples=120, deadline=None)
@given(spaces(), st.integers(1, 4000))
def test_a_larger_buffer_has_every_mapping_of_a_smaller_ones(case, more):
    """The mapper's space grows with the buffer (so that the best mapping it can find never gets worse):
    every mapping of a smaller buffer is a mapping of a larger one, or the same buffer tile keeping more
    (keeping what a streaming variant streams moves less), for the PE tiles both search (a smaller buffer
    may force rows finer than MAX_PE_TILES allows)."""
    geometry, pe_tile, limit = case
    larger = space_of(geometry, pe_tile, limit + more)
    shapes = {other.pe_tile for other in larger}
    kept: dict[tuple, list] = {}  # (PE tile, buffer tile, DRAM order) -> what the larger buffer keeps there
    for other in larger:
        kept.setdefault((other.pe_tile, other.global_buffer.factors, other.dram.order), []).append(
            other.buffer_keeps
        )
    for mapping in space_of(geometry, pe_tile, limit):
        if mapping.pe_tile not in shapes:
            assert len(tiles_of(geometry, mapping).tiles) > MAX_PE_TILES
            continue
        if "Weights" in mapping.buffer_keeps:
            # The maximal tiles of a buffer that keeps the weights: one around it, in the larger space.
            assert any(
                other.pe_tile == mapping.pe_tile
                and other.buffer_keeps >= mapping.buffer_keeps - {"Weights", "Inputs"}
                and all(
                    a <= b
                    for a, b in zip(mapping.global_buffer.factors, other.global_buffer.factors, strict=True)
                )
                for other in larger
            ), mapping
            continue
        key = (mapping.pe_tile, mapping.global_buffer.factors, mapping.dram.order)
        assert mapping in larger or any(keeps > mapping.buffer_keeps for keeps in kept.get(key, [])), mapping


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


def _continuing(words) -> dict[int, tuple[int, int]]:
    """``words.continuing`` as {distance back: (tiles, words of their sums)}."""
    found: dict[int, tuple[int, int]] = {}
    for back, tiles, sums in zip(*(a.tolist() for a in words.continuing), strict=True):
        if tiles:
            had = found.get(back, (0, 0))
            found[back] = (had[0] + tiles, had[1] + sums)
    return found


def test_the_estimate_counts_the_tiles_that_continue_partial_sums_and_how_far_back():
    """Hand-worked: 4 filters x 4 channels x 4 output rows (width 5), PE tiles of 2 x 2 x 2."""
    geometry = ConvGeometry(4, 4, 5, 4, 3, 3, 1, 1)
    sums = 2 * 2 * geometry.out_width  # one PE tile's outputs
    # One filter group per buffer tile, rows innermost: each tile of the second channel block continues the
    # tile two before it (the row blocks between); two buffer tiles of two such tiles.
    rows_between = LayerMapping(
        dram=Loops((2, 1, 1), "KCP"), pe_tile=(2, 2, 2), global_buffer=Loops((1, 2, 2))
    )
    assert _continuing(words_moved(geometry, rows_between, 9)) == {2: (4, 4 * sums)}
    # One PE tile per buffer tile, channels innermost in DRAM: each second channel block continues the tile
    # just before it (2 filter groups x 2 row blocks of them).
    channels_inner = LayerMapping(dram=Loops((2, 2, 2), "KPC"), pe_tile=(2, 2, 2))
    assert _continuing(words_moved(geometry, channels_inner, 9)) == {1: (4, 4 * sums)}
    # Channels outermost: the partial sums wait in DRAM (or the buffer) for the other tiles, and no tile
    # continues one close behind it.
    channels_outer = LayerMapping(dram=Loops((2, 2, 2), "CKP"), pe_tile=(2, 2, 2))
    assert _continuing(words_moved(geometry, channels_outer, 9)) == {}
