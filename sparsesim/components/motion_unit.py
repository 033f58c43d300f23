"""EVA²'s motion unit: receptive-field block motion estimation on pixels and the warp of a stored activation.

Modelled (after the structure of EVA², Buckler et al., ISCA 2018; throughputs and energies are assumed,
see ``temporal`` and ``energy_pj.motion_unit`` in the hwconfig):

- A *pixel buffer* keeps the key frame's pixels (written once per key frame); a predicted frame streams its
  own pixels in and reads the key frame's once into a search-window register array, so each pixel is read
  from the buffer once per predicted frame (``pixel_buffer_read``: key + new frame).
- Motion estimation is a two-stage pipeline over the candidate vectors. The *diff-tile producer* computes
  the SAD of every ``stride x stride`` tile for one candidate with ``difference_lanes`` absolute differences a
  cycle, a tile taking ``ceil(stride * stride * C / difference_lanes)`` cycles (tiles do not share a cycle).
  The *diff-tile consumer* adds the tile SADs of each target activation's receptive field with
  ``accumulate_lanes`` additions a cycle, ``ceil(tiles in the field / accumulate_lanes)`` cycles per
  activation (fields do not share a cycle), comparing the sum with the best so far in its last cycle. The
  two stages hand candidates over through a double buffer of tile SADs, so with ``P`` producer and ``C``
  consumer cycles per candidate and ``N`` candidates the search takes ``P + C + (N - 1) * max(P, C)``.
- The *warp engine* produces ``warp_lanes`` output activations a cycle from the *activation buffer*, which
  holds the key frame's target activation (written once per key frame). An output whose stored sources are
  all zero is skipped without a cycle (the engine reads the stored activation's zero flags); the others are
  interpolated (fractional vector) or copied (whole vector). Each warped output is written once.
- Motion estimation, then the warp, then the layers after the target run one after the other.

Ignored: the latency of filling the pipelines, the pixel buffer's and activation buffer's capacities and
ports (assumed large enough), the zero flags' storage, the adaptive key-frame decision's own logic.

Actions: ``absolute_difference`` = one |pixel - pixel| accumulated into a tile SAD (per channel);
``tile_accumulate`` = one tile SAD added into a receptive field's cost; ``compare`` = one candidate cost
compared with the best; ``interpolate`` / ``copy`` = one warped output; ``pixel_buffer_read`` / ``write`` =
one 8-bit pixel value; ``activation_buffer_read`` / ``write`` = one activation word.
"""

from __future__ import annotations

import math

import numpy as np

from sparsesim.core import Component
from sparsesim.sparse.motion import MotionField, Warp, rf_tile_counts

__all__ = ["MotionUnit", "motion_estimation_cycles", "warp_cycles"]


def motion_estimation_cycles(
    candidates: int,
    tiles_y: int,
    tiles_x: int,
    tile_values: int,
    radius_tiles: int,
    difference_lanes: int,
    accumulate_lanes: int,
) -> int:
    """Cycles of the two-stage search: ``P + C + (candidates - 1) * max(P, C)`` (see the module docstring).

    ``tile_values`` = ``stride * stride * C`` pixel values per tile.
    """
    if candidates == 0 or tiles_y * tiles_x == 0:
        return 0
    producer = tiles_y * tiles_x * math.ceil(tile_values / difference_lanes)
    counts = rf_tile_counts(tiles_y, tiles_x, radius_tiles)
    consumer = int(np.sum(-(-counts // accumulate_lanes)))
    return producer + consumer + (candidates - 1) * max(producer, consumer)


def warp_cycles(performed: int, warp_lanes: int) -> int:
    """Cycles of the warp engine: ``ceil(outputs not skipped / warp_lanes)``."""
    return math.ceil(performed / warp_lanes) if performed else 0


class MotionUnit(Component):
    """Counts the motion unit's actions for one frame and books its cycles (see the module docstring)."""

    ACTIONS = (
        "absolute_difference",
        "tile_accumulate",
        "compare",
        "interpolate",
        "copy",
        "pixel_buffer_read",
        "pixel_buffer_write",
        "activation_buffer_read",
        "activation_buffer_write",
    )

    def __init__(self, config, path: str = "motion_unit"):
        super().__init__(path)
        self.config = config
        self.motion_estimation_cycles = 0
        self.warp_cycles = 0

    @property
    def cycles(self) -> int:
        return self.motion_estimation_cycles + self.warp_cycles

    def store_key_frame(self, pixels: int, activation_words: int) -> None:
        """A key frame keeps its pixels and its target activation for the predicted frames that follow."""
        self.count("pixel_buffer_write", pixels)
        self.count("activation_buffer_write", activation_words)

    def estimate_motion(self, field: MotionField, shape_chw: tuple[int, int, int], stride: int) -> None:
        """Book RFBME over a frame of ``shape_chw`` pixels: its operations and pipeline cycles."""
        channels, height, width = shape_chw
        self.count("pixel_buffer_read", 2 * channels * height * width)
        self.count("absolute_difference", field.absolute_differences)
        self.count("tile_accumulate", field.tile_accumulations)
        self.count("compare", field.comparisons)
        self.motion_estimation_cycles += motion_estimation_cycles(
            field.candidates,
            height // stride,
            width // stride,
            stride * stride * channels,
            field.radius_tiles,
            self.config.difference_lanes,
            self.config.accumulate_lanes,
        )

    def warp(self, warp: Warp) -> None:
        """Book the warp of the stored activation: reads, interpolations or copies, writes and cycles."""
        performed = warp.interpolated + warp.copied
        self.count("activation_buffer_read", warp.reads)
        self.count("interpolate", warp.interpolated)
        self.count("copy", warp.copied)
        self.count("activation_buffer_write", performed)
        self.warp_cycles += warp_cycles(performed, self.config.warp_lanes)
