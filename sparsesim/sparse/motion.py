"""EVA²'s activation motion compensation (AMC): motion estimation on pixels, and the warp of an activation.

EVA² (Buckler, Bedoukian, Jayasuriya, Sampson, ISCA 2018) runs a CNN fully on *key frames* and stores the
activation of one *target layer*. On a *predicted frame* it estimates the motion between the key frame and
the new frame on the pixels, moves the stored activation by that motion, and runs only the layers after the
target. This module is the pure logic of both steps, with no timing:

- :func:`receptive_field` — size and stride (in input pixels) of one activation of a chain of convs and
  pools; the stride is the tile size of the motion search, the size the block each activation matches.
- :func:`block_motion` — receptive-field block motion estimation (RFBME): the new frame is cut into tiles of
  ``stride x stride`` pixels, one per target activation; for every candidate vector within
  ``search_radius_pixels`` the sum of absolute differences (SAD) of each tile against the key frame shifted by
  the vector is computed once, and each activation's cost is the sum of the tile SADs of its receptive field
  (overlapping receptive fields share the tile SADs: that sharing is RFBME's saving over matching every
  receptive field from scratch). Each activation takes the candidate of least cost. Operations are counted.
- :func:`warp_activation` — the stored activation moved by the vectors divided by the stride: bilinear
  interpolation between the four neighbours for fractional vectors, a copy for vectors that are whole
  multiples of the stride (``interpolation="nearest"`` rounds every vector to whole activations).

Modelled approximations, chosen and documented here:

- The receptive field is rounded up to whole tiles: ``radius_tiles = ceil((size - stride) / (2 * stride))``
  tiles on each side of the activation's own tile, clipped at the frame's edge (the CNN sees padding there).
- The key frame beyond its edge is edge-replicated, as video codecs do for unrestricted motion vectors; the
  stored activation beyond its edge is clamped to its edge likewise. New content entering at a border is
  therefore guessed, not known: that is the error a pan causes, and it is measured, not hidden.
- Vectors are whole pixels; ties go to the shortest vector, then the smallest ``(dy, dx)``, so a static
  scene gives zero vectors and the result depends on nothing but the values.

Convention: a vector ``(dy, dx)`` at an activation says that its content sits ``(dy, dx)`` pixels further
in the key frame: ``new[y, x] ≈ key[y + dy, x + dx]``. A camera panning right by 4 pixels a frame gives
``dx = +4`` per frame since the key frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "INTERPOLATIONS",
    "MotionField",
    "Warp",
    "block_motion",
    "candidate_vectors",
    "receptive_field",
    "receptive_field_radius_tiles",
    "warp_activation",
]

INTERPOLATIONS = ("bilinear", "nearest")


def receptive_field(ops: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """``(size, stride)`` in input pixels of one output of a chain of ``(kernel, stride)`` ops.

    A 3x3 stride-1 conv is ``(3, 1)``, a 2x2 max-pool ``(2, 2)``. Each op widens the field by
    ``(kernel - 1) * stride so far`` and multiplies the stride (the textbook recurrence). An empty chain is
    one pixel, stride 1. VGG16 up to conv3_3 then pool3: ``(44, 8)``.
    """
    size, stride = 1, 1
    for kernel, step in ops:
        if kernel < 1 or step < 1:
            raise ValueError(f"an op needs kernel >= 1 and stride >= 1, got ({kernel}, {step})")
        size += (kernel - 1) * stride
        stride *= step
    return size, stride


def receptive_field_radius_tiles(size: int, stride: int) -> int:
    """Tiles of ``stride`` pixels on each side of an activation's own tile that its receptive field
    reaches: ``ceil((size - stride) / (2 * stride))`` (0 when the field is one tile)."""
    if size < 1 or stride < 1:
        raise ValueError(f"receptive field size and stride must be >= 1, got {size}, {stride}")
    return max(0, math.ceil((size - stride) / (2 * stride)))


def candidate_vectors(search_radius_pixels: int) -> np.ndarray:
    """Every whole-pixel vector with ``|dy|, |dx| <= radius``, shortest first (then by ``dy``, ``dx``):
    ``(n, 2)`` int64. The order is the tie-break of :func:`block_motion`."""
    if search_radius_pixels < 0:
        raise ValueError(f"search_radius_pixels must be >= 0, got {search_radius_pixels}")
    r = int(search_radius_pixels)
    offsets = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    vectors = np.stack([dy.ravel(), dx.ravel()], axis=1).astype(np.int64)
    order = np.lexsort((vectors[:, 1], vectors[:, 0], (vectors**2).sum(axis=1)))
    return vectors[order]


@dataclass(frozen=True, eq=False)
class MotionField:
    """What RFBME found, and what it cost.

    ``vectors_pixels`` is ``(Ty, Tx, 2)`` int64, one ``(dy, dx)`` per tile (= per target activation);
    ``costs`` ``(Ty, Tx)`` float64, the least receptive-field SAD; ``total_cost`` their sum (EVA²'s adaptive
    key frame rate compares it with a threshold). Operation counts: ``absolute_differences`` (one per pixel,
    channel and candidate), ``tile_accumulations`` (one tile SAD added into a receptive field's cost, per
    candidate) and ``comparisons`` (one candidate cost compared with the best so far, per activation).
    """

    vectors_pixels: np.ndarray
    costs: np.ndarray
    total_cost: float
    candidates: int
    radius_tiles: int
    absolute_differences: int
    tile_accumulations: int
    comparisons: int


def _check_frames(key: np.ndarray, new: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.asarray(key, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    if key.ndim != 3 or key.shape != new.shape:
        raise ValueError(
            f"key and new frames must both be (C, H, W) of one shape, got {key.shape}, {new.shape}"
        )
    if stride < 1 or key.shape[1] % stride or key.shape[2] % stride:
        raise ValueError(
            f"frame H and W ({key.shape[1]}x{key.shape[2]}) must be multiples of stride {stride}"
        )
    if not (np.all(np.isfinite(key)) and np.all(np.isfinite(new))):
        raise ValueError("frames must be finite")
    return key, new


def rf_tile_counts(tiles_y: int, tiles_x: int, radius_tiles: int) -> np.ndarray:
    """``(Ty, Tx)`` int64: how many tiles each activation's receptive field covers, clipped at the edges."""
    ys = np.arange(tiles_y)
    xs = np.arange(tiles_x)
    rows = np.minimum(ys + radius_tiles, tiles_y - 1) - np.maximum(ys - radius_tiles, 0) + 1
    cols = np.minimum(xs + radius_tiles, tiles_x - 1) - np.maximum(xs - radius_tiles, 0) + 1
    return (rows[:, None] * cols[None, :]).astype(np.int64)


def block_motion(
    key: np.ndarray,
    new: np.ndarray,
    stride: int,
    radius_tiles: int,
    search_radius_pixels: int,
) -> MotionField:
    """RFBME between the ``key`` and ``new`` frames, ``(C, H, W)`` each, H and W multiples of ``stride``.

    For every candidate of :func:`candidate_vectors`: ``tile_sad[ty, tx] = sum |new - key shifted|`` over the
    ``stride x stride`` pixels and C channels of the tile (the key frame edge-replicated), then
    ``cost[y, x] = sum of tile_sad`` over the tiles ``y - radius_tiles .. y + radius_tiles`` (and likewise in
    x) that exist. The least cost wins; ties go to the earlier candidate. Sums are float64; on float16
    pixel values they are exact, so the result does not depend on the order of summation.
    """
    key, new = _check_frames(key, new, stride)
    if radius_tiles < 0:
        raise ValueError(f"radius_tiles must be >= 0, got {radius_tiles}")
    channels, height, width = new.shape
    tiles_y, tiles_x = height // stride, width // stride
    vectors = candidate_vectors(search_radius_pixels)
    r = int(search_radius_pixels)
    padded = np.pad(key, ((0, 0), (r, r), (r, r)), mode="edge")
    n = radius_tiles
    costs = np.empty((len(vectors), tiles_y, tiles_x))
    for index, (dy, dx) in enumerate(vectors):
        shifted = padded[:, r + dy : r + dy + height, r + dx : r + dx + width]
        sad = np.abs(new - shifted).sum(axis=0)
        tile_sad = sad.reshape(tiles_y, stride, tiles_x, stride).sum(axis=(1, 3))
        # Box sum of the tile SADs over each receptive field (zero tiles beyond the frame), by prefix sums.
        box = np.zeros((tiles_y + 2 * n + 1, tiles_x + 2 * n + 1))
        box[n + 1 : n + 1 + tiles_y, n + 1 : n + 1 + tiles_x] = tile_sad
        box = box.cumsum(axis=0).cumsum(axis=1)
        side = 2 * n + 1
        costs[index] = (box[side:, side:] - box[:-side, side:] - box[side:, :-side] + box[:-side, :-side])[
            :tiles_y, :tiles_x
        ]
    best = np.argmin(costs, axis=0)  # the first minimum: candidates are in tie-break order
    chosen = np.take_along_axis(costs, best[None], axis=0)[0]
    candidates = len(vectors)
    return MotionField(
        vectors_pixels=vectors[best],
        costs=chosen,
        total_cost=float(chosen.sum()),
        candidates=candidates,
        radius_tiles=n,
        absolute_differences=candidates * channels * height * width,
        tile_accumulations=candidates * int(rf_tile_counts(tiles_y, tiles_x, n).sum()),
        comparisons=candidates * tiles_y * tiles_x,
    )


@dataclass(frozen=True, eq=False)
class Warp:
    """A warped activation and the work it took.

    ``output`` is ``(C, Ho, Wo)`` float64. Per output element, one of: ``interpolated`` (a fractional vector:
    four stored values read, weighted and summed), ``copied`` (a whole-activation vector: one value read),
    ``skipped`` (every stored value it would read is zero, so the output is zero and nothing is read: the
    warp engine checks the stored activation's zero flags). ``reads`` counts stored values read.
    """

    output: np.ndarray
    interpolated: int
    copied: int
    skipped: int
    reads: int


def warp_activation(
    stored: np.ndarray, vectors_pixels: np.ndarray, stride: int, interpolation: str = "bilinear"
) -> Warp:
    """Move the key frame's stored activation ``(C, Ho, Wo)`` by each position's vector ``/ stride``.

    ``out[c, y, x] = stored[c, y + dy/stride, x + dx/stride]``, bilinear between the four neighbours when the
    position is fractional (the weights are multiples of ``1/stride``), clamped to the activation's edge;
    ``nearest`` rounds each offset ``v / stride`` to ``floor(v / stride + 0.5)`` activations (halves go up)
    and copies. ``vectors_pixels`` is ``(Ho, Wo, 2)``, as :func:`block_motion` returns.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    stored = np.asarray(stored, dtype=np.float64)
    vectors = np.asarray(vectors_pixels)
    if stored.ndim != 3 or vectors.shape != (*stored.shape[1:], 2):
        raise ValueError(
            f"stored must be (C, Ho, Wo) and vectors (Ho, Wo, 2), got {stored.shape}, {vectors.shape}"
        )
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not np.issubdtype(vectors.dtype, np.integer):
        raise ValueError(f"vectors must be whole pixels (integers), got dtype {vectors.dtype}")
    channels, height, width = stored.shape
    vy = vectors[..., 0].astype(np.int64)
    vx = vectors[..., 1].astype(np.int64)
    if interpolation == "nearest":
        vy = np.floor(vy / stride + 0.5).astype(np.int64) * stride
        vx = np.floor(vx / stride + 0.5).astype(np.int64) * stride
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    # Whole part by floor division (exact on ints), fraction as numerator / stride (exact for 2**k).
    y0 = ys + vy // stride
    x0 = xs + vx // stride
    fy = (vy % stride) / stride
    fx = (vx % stride) / stride
    fractional = (vy % stride != 0) | (vx % stride != 0)

    def at(yy, xx):
        return stored[:, np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)]

    a, b, c, d = at(y0, x0), at(y0, x0 + 1), at(y0 + 1, x0), at(y0 + 1, x0 + 1)
    output = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)
    output = np.where(fractional, output, a)
    # Zero skipping: a fractional output reads four values (those with weight 0 are still fetched by the
    # 2x2 datapath), a whole one reads one; if all of them are zero the output is zero and is skipped.
    nonzero_sources = np.where(fractional, (a != 0) | (b != 0) | (c != 0) | (d != 0), a != 0)
    interpolated = int(np.count_nonzero(nonzero_sources & fractional))
    copied = int(np.count_nonzero(nonzero_sources & ~fractional))
    return Warp(
        output=np.where(nonzero_sources, output, 0.0),
        interpolated=interpolated,
        copied=copied,
        skipped=channels * height * width - interpolated - copied,
        reads=4 * interpolated + copied,
    )
