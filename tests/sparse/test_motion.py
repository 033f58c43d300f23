"""EVA²'s motion estimation (RFBME) and activation warp: properties on synthetic frames (named so) and on
real crops of the shipped trace's image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.sparse.motion import (
    block_motion,
    candidate_vectors,
    receptive_field,
    receptive_field_radius_tiles,
    rf_tile_counts,
    warp_activation,
)


def synthetic_texture(seed: int, channels: int, height: int, width: int) -> np.ndarray:
    """Synthetic random float16-valued pixels (unit tests only): every shift gives a distinct block."""
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(channels, height, width)).astype(np.float16).astype(np.float64)


def test_receptive_fields_of_vgg16():
    conv = (3, 1)
    pool = (2, 2)
    assert receptive_field([]) == (1, 1)
    assert receptive_field([conv, conv]) == (5, 1)
    assert receptive_field([conv, conv, pool, conv, conv, pool]) == (16, 4)
    assert receptive_field([conv, conv, pool, conv, conv, pool, conv, conv, conv, pool]) == (44, 8)
    assert receptive_field_radius_tiles(16, 4) == 2
    assert receptive_field_radius_tiles(4, 4) == 0


def test_candidates_are_every_vector_shortest_first():
    vectors = candidate_vectors(2)
    assert len(vectors) == 25 and len({tuple(v) for v in vectors}) == 25
    assert tuple(vectors[0]) == (0, 0)
    lengths = (vectors**2).sum(axis=1)
    assert np.all(np.diff(lengths) >= 0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    dy=st.integers(-3, 3),
    dx=st.integers(-3, 3),
    stride=st.sampled_from([2, 4]),
    radius_tiles=st.integers(0, 2),
)
def test_a_translated_synthetic_frame_gives_its_vector_where_the_field_sees_only_known_pixels(
    seed, dy, dx, stride, radius_tiles
):
    big = synthetic_texture(seed, 2, 40, 40)
    key = big[:, 8:32, 8:32]
    new = big[:, 8 + dy : 32 + dy, 8 + dx : 32 + dx]  # new[y, x] = key[y + dy, x + dx]
    field = block_motion(key, new, stride, radius_tiles, search_radius_pixels=3)
    tiles = 24 // stride
    ys, xs = np.meshgrid(np.arange(tiles), np.arange(tiles), indexing="ij")
    # Activations whose receptive field, moved by the vector, stays inside the key frame match exactly.
    low = (np.maximum(ys - radius_tiles, 0) * stride + dy >= 0) & (
        np.maximum(xs - radius_tiles, 0) * stride + dx >= 0
    )
    high = ((np.minimum(ys + radius_tiles, tiles - 1) + 1) * stride + dy <= 24) & (
        (np.minimum(xs + radius_tiles, tiles - 1) + 1) * stride + dx <= 24
    )
    inside = low & high
    assert np.all(field.vectors_pixels[inside] == (dy, dx))
    assert np.all(field.costs[inside] == 0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), radius=st.integers(0, 3), radius_tiles=st.integers(0, 2))
def test_identical_frames_give_zero_vectors_and_costs(seed, radius, radius_tiles):
    frame = synthetic_texture(seed, 3, 16, 12)
    field = block_motion(frame, frame, 4, radius_tiles, radius)
    assert np.all(field.vectors_pixels == 0) and field.total_cost == 0.0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), radius_tiles=st.integers(0, 2), radius=st.integers(0, 2))
def test_costs_are_the_receptive_field_sads_and_the_operations_are_counted(seed, radius_tiles, radius):
    key = synthetic_texture(seed, 2, 12, 8)
    new = synthetic_texture(seed + 1, 2, 12, 8)
    stride = 2
    field = block_motion(key, new, stride, radius_tiles, radius)
    padded = np.pad(key, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    tiles_y, tiles_x = 6, 4
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            y0, y1 = max(ty - radius_tiles, 0) * stride, (min(ty + radius_tiles, tiles_y - 1) + 1) * stride
            x0, x1 = max(tx - radius_tiles, 0) * stride, (min(tx + radius_tiles, tiles_x - 1) + 1) * stride
            dy, dx = field.vectors_pixels[ty, tx]
            window = padded[:, radius + dy + y0 : radius + dy + y1, radius + dx + x0 : radius + dx + x1]
            cost = np.abs(new[:, y0:y1, x0:x1] - window).sum()
            assert cost == field.costs[ty, tx]
    candidates = (2 * radius + 1) ** 2
    assert field.absolute_differences == candidates * key.size
    assert field.tile_accumulations == candidates * int(rf_tile_counts(6, 4, radius_tiles).sum())
    assert field.comparisons == candidates * 24


def synthetic_activation(seed: int) -> np.ndarray:
    """Synthetic ReLU-like activation (unit tests only): nonnegative, about half zeros."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-8, 8, size=(3, 6, 7)).astype(np.float64)
    return np.maximum(values, 0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    vy=st.integers(-9, 9),
    vx=st.integers(-9, 9),
    stride=st.sampled_from([1, 2, 4]),
)
def test_warp_counts_every_output_once_and_a_whole_vector_moves_by_whole_activations(seed, vy, vx, stride):
    stored = synthetic_activation(seed)
    vectors = np.broadcast_to(np.array([vy, vx]), (6, 7, 2)).astype(np.int64)
    warp = warp_activation(stored, vectors, stride)
    assert warp.interpolated + warp.copied + warp.skipped == stored.size
    assert warp.reads == 4 * warp.interpolated + warp.copied
    assert np.all(warp.output >= 0)
    if vy % stride == 0 and vx % stride == 0:
        assert warp.interpolated == 0
        ys = np.clip(np.arange(6) + vy // stride, 0, 5)
        xs = np.clip(np.arange(7) + vx // stride, 0, 6)
        assert np.array_equal(warp.output, stored[:, ys][:, :, xs])
        assert warp.copied == np.count_nonzero(warp.output)


@settings(max_examples=30, deadline=None)
@given(vy=st.integers(-3, 3), vx=st.integers(-3, 3), a=st.integers(-5, 5), b=st.integers(-5, 5))
def test_bilinear_warp_reproduces_an_affine_activation_exactly_inside(vy, vx, a, b):
    ys, xs = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    stored = (100 + a * ys + b * xs).astype(np.float64)[None]  # synthetic, positive
    vectors = np.broadcast_to(np.array([vy, vx]), (8, 8, 2)).astype(np.int64)
    warp = warp_activation(stored, vectors, 4)
    expected = 100 + a * (ys + vy / 4) + b * (xs + vx / 4)
    inside = (ys + vy / 4 >= 0) & (ys + vy / 4 <= 7) & (xs + vx / 4 >= 0) & (xs + vx / 4 <= 7)
    inside &= (ys + 1 + vy // 4 <= 7) & (xs + 1 + vx // 4 <= 7)
    assert np.array_equal(warp.output[0][inside], expected[inside])


def test_nearest_rounds_to_whole_activations():
    stored = synthetic_activation(3)
    vectors = np.broadcast_to(np.array([3, -3]), (6, 7, 2)).astype(np.int64)
    near = warp_activation(stored, vectors, 4, "nearest")
    whole = warp_activation(stored, np.broadcast_to(np.array([4, -4]), (6, 7, 2)).astype(np.int64), 4)
    assert near.interpolated == 0 and np.array_equal(near.output, whole.output)


def test_bad_inputs_are_value_errors():
    frame = np.zeros((3, 8, 8))
    with pytest.raises(ValueError, match="multiples of stride"):
        block_motion(frame, frame, 3, 0, 1)
    with pytest.raises(ValueError, match="one shape"):
        block_motion(frame, frame[:, :4], 4, 0, 1)
    with pytest.raises(ValueError, match="whole pixels"):
        warp_activation(np.zeros((1, 2, 2)), np.zeros((2, 2, 2)), 2)
    with pytest.raises(ValueError, match="interpolation"):
        warp_activation(np.zeros((1, 2, 2)), np.zeros((2, 2, 2), dtype=int), 2, "cubic")


def test_real_pan_crops_give_the_pan_vector_inside(vgg16_trace):
    image = vgg16_trace.layer("conv1_1").input  # china.jpg preprocessed, float16 values
    key = image[:, 40:72, 50:98]
    new = image[:, 41:73, 53:101]  # the camera moved by (1, 3): new[y, x] = key[y + 1, x + 3]
    field = block_motion(key, new, 4, 2, 4)
    interior = field.vectors_pixels[2:-2, 2:-3]
    assert np.all(interior == (1, 3))
