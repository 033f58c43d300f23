"""The motion unit's timing (EVA²): the closed forms equal the cycle-stepped reference on real crops."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components.motion_unit import MotionUnit, motion_estimation_cycles, warp_cycles
from sparsesim.config import parse_hwconfig
from sparsesim.sparse.motion import block_motion, candidate_vectors, warp_activation
from tests.reference.motion_unit_reference import reference_motion_estimation, reference_warp_cycles

# (key window, new window, size): real crops of china.jpg (the shipped trace's conv1_1 input), 3 channels.
REAL_CUTS = (
    ((40, 50), (41, 53), (8, 12)),  # a (1, 3) pan
    ((10, 100), (10, 100), (8, 8)),  # a still frame: every cost ties with the zero vector's
    ((60, 20), (58, 22), (12, 8)),  # a (-2, 2) pan
)
LANES = ((64, 16), (4, 1), (27, 3), (1, 40))  # (difference_lanes, accumulate_lanes): P > C, P < C, ...


@pytest.mark.parametrize("cut", REAL_CUTS)
@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("stride, radius_tiles", [(4, 1), (2, 2)])
def test_motion_estimation_equals_the_cycle_stepped_reference_on_real_crops(
    vgg16_trace, cut, lanes, stride, radius_tiles
):
    image = vgg16_trace.layer("conv1_1").input
    (ky, kx), (ny, nx), (h, w) = cut
    key = image[:, ky : ky + h, kx : kx + w].astype(np.float64)
    new = image[:, ny : ny + h, nx : nx + w].astype(np.float64)
    radius = 2
    field = block_motion(key, new, stride, radius_tiles, radius)
    vectors = [tuple(int(v) for v in vector) for vector in candidate_vectors(radius)]
    cycles, best_vectors, best_costs = reference_motion_estimation(
        key.tolist(), new.tolist(), stride, radius_tiles, vectors, *lanes
    )
    fast_cycles = motion_estimation_cycles(
        len(vectors), h // stride, w // stride, stride * stride * 3, radius_tiles, *lanes
    )
    assert fast_cycles == cycles
    assert [[tuple(v) for v in row] for row in field.vectors_pixels.tolist()] == best_vectors
    assert field.costs.tolist() == best_costs


@pytest.mark.parametrize("lanes", [1, 3, 4, 16])
@pytest.mark.parametrize("layer", ["conv2_2", "conv3_1"])
def test_warp_cycles_equal_the_reference_on_a_real_activation(vgg16_trace, lanes, layer):
    stored = vgg16_trace.layer(layer).output[:8, :10, :12]
    vectors = np.broadcast_to(np.array([3, -5]), (10, 12, 2)).astype(np.int64)
    warp = warp_activation(stored, vectors, 4)
    flags = []
    for c in range(stored.shape[0]):
        for y in range(10):
            for x in range(12):
                y0, x0 = y + 0, x - 2  # floor(3 / 4) = 0, floor(-5 / 4) = -2
                sources = [
                    stored[c, min(max(yy, 0), 9), min(max(xx, 0), 11)]
                    for yy in (y0, y0 + 1)
                    for xx in (x0, x0 + 1)
                ]
                flags.append(any(value != 0 for value in sources))
    assert sum(flags) == warp.interpolated + warp.copied
    assert warp_cycles(warp.interpolated + warp.copied, lanes) == reference_warp_cycles(flags, lanes)


def test_the_unit_counts_its_actions_and_books_cycles(vgg16_trace):
    hw = parse_hwconfig({"name": "t", "temporal": {"key_frame_interval": 2, "target_layer": "conv1_2"}})
    unit = MotionUnit(hw.temporal)
    image = vgg16_trace.layer("conv1_1").input[:, :16, :16]
    unit.store_key_frame(image.size, 100)
    field = block_motion(image, image, 4, 1, 1)
    unit.estimate_motion(field, image.shape, 4)
    assert unit.actions["pixel_buffer_write"] == image.size
    assert unit.actions["pixel_buffer_read"] == 2 * image.size
    assert unit.actions["absolute_difference"] == 9 * image.size
    assert unit.motion_estimation_cycles == motion_estimation_cycles(9, 4, 4, 48, 1, 64, 16)
    assert unit.cycles == unit.motion_estimation_cycles
