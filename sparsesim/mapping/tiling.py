"""Two fixed tilings of a convolution (or linear layer) onto the PE array and the global buffer: the
simulator's mappings before the mapper (:mod:`sparsesim.mapper`) searched them; tests and studies of one PE
array use them to make a tiling without a machine or a search.

The dataflow is output stationary, as in DaDianNao and Cnvlutin:

- the PE array's *columns* x each PE's ``filter_lanes`` work on a **filter group** of up to
  ``columns * filter_lanes`` filters at once (each PE keeps its filters' weights in its weight scratchpad);
- the PE array's *rows* work on consecutive output positions (windows) in lockstep;
- each PE's ``activation_lanes`` split the input channels of the current **channel block**.

A tile is ``(filter group, output-row block, channel block)``, visited in that loop order (channel blocks
innermost, so partial sums stay in the global buffer between channel blocks and only finished outputs go to
DRAM). Sizes are chosen greedily:

1. the channel block is as large as the weight scratchpad allows (``filter_lanes * block * R * S`` words);
2. the output-row block is the largest whose weights + input rows (with halo) + outputs fit in **half** the
   global buffer (the other half holds the next tile: double buffering), measured in the buffer's storage
   format on the real data when the tensors are stored compressed (:mod:`sparsesim.mapping.traffic`);
3. if not even one output row fits, the channel block is halved until it does, or the layer is rejected.

What moves per tile: input rows (with their halo, re-fetched for every filter group and every row block) come
from DRAM into the global buffer and are multicast over the NoC once; a filter group's weights come from DRAM
and go to the PEs once per group when the whole filter fits one channel block, else once per tile; partial
sums go back to the PEs for every channel block after the first; outputs leave for DRAM after the last one.
Ignored: mapping search (the loop order and tile shape are fixed, not optimised), bank conflicts, and reuse
of halo rows between consecutive row blocks.

Planar-tiled machines (SCNN's Cartesian-product PEs) use :func:`tile_layer_planar` instead: tiles are bands of
output rows with every filter and every channel, and the weights stream through the buffer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from sparsesim.errors import SimulationError
from sparsesim.mapping.loopnest import LayerMapping, LayerTiling, Loops, Tile, covering, tiles_of
from sparsesim.sparse.geometry import ConvGeometry

__all__ = ["LayerTiling", "Tile", "dense_footprint_words", "tile_layer", "tile_layer_planar"]


def _tile_footprint_words(
    geometry: ConvGeometry,
    filters: int,
    channels: int,
    out_rows: int,
    include_weights: bool = True,
    kernel_words: int | None = None,
) -> int:
    in_rows = min(geometry.height, (out_rows - 1) * geometry.stride + geometry.kernel_r)
    kernel = geometry.kernel_positions if kernel_words is None else kernel_words
    weights = filters * channels * kernel if include_weights else 0
    inputs = channels * in_rows * geometry.width
    outputs = filters * out_rows * geometry.out_width
    return weights + inputs + outputs


def dense_footprint_words(
    geometry: ConvGeometry, include_weights: bool = True, kernel_words: int | None = None
) -> Callable[[int, int, int], int]:
    """Footprint of the largest tile of a shape when every tensor is stored uncompressed (without its
    weights when they only stream through the buffer). ``kernel_words``: words of one stored kernel, by
    default ``R x S`` (a transform-domain mechanism stores another: Winograd's ``U`` is 4 x 4)."""
    return functools.partial(
        _tile_footprint_words, geometry, include_weights=include_weights, kernel_words=kernel_words
    )


def _largest_fitting(limit: int, fits: Callable[[int], bool]) -> int:
    """The largest ``n`` in ``[1, limit]`` with ``fits(n)``, or 0; bisection, so ``fits`` must be monotone.

    ``limit`` itself is tried first: buffers are often sized to hold whole layers (DaDianNao, Cnvlutin),
    and then one evaluation replaces the ~log2(limit) of the bisection (each sizes the whole layer's
    tensors in their storage formats when they are compressed).
    """
    if limit >= 1 and fits(limit):
        return limit
    low, high = 0, limit - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _granular(channels: int, granule: int) -> int:
    """``channels`` rounded down to a multiple of ``granule``, unless that leaves none."""
    return channels // granule * granule if channels >= granule else channels


def _fits(
    footprint: Callable[[int, int, int], int], filters: int, channels: int, limit: int, rows: int
) -> bool:
    return footprint(filters, channels, rows) <= limit


def tile_layer(
    geometry: ConvGeometry,
    *,
    columns: int,
    filter_lanes: int,
    weight_spad_bytes: int,
    global_buffer_bytes: int,
    word_bytes: int,
    layer_name: str = "layer",
    footprint_words: Callable[[int, int, int], int] | None = None,
    channel_granule: int = 1,
    spad_words_per_kernel: int | None = None,
    buffer_words_per_kernel: int | None = None,
) -> LayerTiling:
    """Choose tile sizes (see the module docstring) and list the tiles in execution order.

    ``footprint_words(filters, channels, out_rows)`` gives the global-buffer words that the largest tile of
    that shape occupies (weights + input rows + outputs); by default every tensor is uncompressed. With
    compressed formats, pass one that measures the real tiles: the search assumes only that a larger row
    block never occupies less. ``channel_granule``: channel blocks are kept a multiple of it when the
    layer has more channels than that (N:M sparsity needs whole groups of M channels).
    ``spad_words_per_kernel`` / ``buffer_words_per_kernel``: words of one kernel in a PE's weight scratchpad
    and, uncompressed, in the buffer and DRAM (the tiles' ``weight_words``); by default ``R x S`` (see
    :meth:`~sparsesim.mechanisms.Mechanism.spad_words_per_kernel`).
    """
    footprint = footprint_words or dense_footprint_words(geometry, kernel_words=buffer_words_per_kernel)
    filters_per_group = min(geometry.filters, columns * filter_lanes)
    spad_words = weight_spad_bytes // word_bytes
    kernel_words = spad_words_per_kernel or geometry.kernel_positions
    kernel_text = (
        f"{geometry.kernel_r}x{geometry.kernel_s} weights"
        if spad_words_per_kernel is None
        else f"kernels of {kernel_words} words"
    )
    channels = _granular(min(geometry.channels, spad_words // (filter_lanes * kernel_words)), channel_granule)
    if channels < 1:
        raise SimulationError(
            f"{layer_name}: no tile fits the PE weight scratchpad: {filter_lanes} filter lanes x "
            f"{kernel_text} need {filter_lanes * kernel_words * word_bytes} bytes, "
            f"pe_array.pe.weight_spad_bytes is {weight_spad_bytes}"
        )
    half_buffer_words = global_buffer_bytes // word_bytes // 2
    while True:
        fits = functools.partial(_fits, footprint, filters_per_group, channels, half_buffer_words)
        out_rows = _largest_fitting(geometry.out_height, fits)
        if out_rows or channels == 1:
            break
        channels = _granular(-(-channels // 2), channel_granule) or 1
    if not out_rows:
        need = footprint(filters_per_group, 1, 1) * 2 * word_bytes
        raise SimulationError(
            f"{layer_name}: no tile fits the global buffer: one output row of {filters_per_group} filters "
            f"over one channel needs {need} bytes double-buffered, "
            f"global_buffer.capacity_bytes is {global_buffer_bytes}"
        )

    mapping = LayerMapping(
        dram=Loops(
            (
                covering(geometry.filters, filters_per_group),
                covering(geometry.channels, channels),
                covering(geometry.out_height, out_rows),
            ),
            order="KPC",
        ),
        pe_tile=(filters_per_group, channels, out_rows),
        buffer_keeps=frozenset({"Weights", "Outputs"}),
    )
    return tiles_of(geometry, mapping, buffer_words_per_kernel)


def tile_layer_planar(
    geometry: ConvGeometry,
    *,
    global_buffer_bytes: int,
    word_bytes: int,
    layer_name: str = "layer",
    footprint_words: Callable[[int, int, int], int] | None = None,
) -> LayerTiling:
    """Tiles for a planar-tiled machine (SCNN): each tile is a band of output rows, all filters and channels.

    The PEs hold the band's activations (planar tiles of the whole band, all channels) and keep the partial
    sums of the filters they work on in their accumulators until every channel is done, so a tile never
    splits the filters or the channels; the weights stream through (broadcast to every PE, group after
    group) and are fetched again for every band. The band is the largest whose input rows (with halo) and
    outputs fit in **half** the global buffer (double buffering). ``footprint_words(filters, channels,
    out_rows)`` must count the inputs and outputs only (the weights are not stored); by default they are
    uncompressed.
    """
    footprint = footprint_words or dense_footprint_words(geometry, include_weights=False)
    filters, channels = geometry.filters, geometry.channels
    half_buffer_words = global_buffer_bytes // word_bytes // 2
    fits = functools.partial(_fits, footprint, filters, channels, half_buffer_words)
    out_rows = _largest_fitting(geometry.out_height, fits)
    if not out_rows:
        need = footprint(filters, channels, 1) * 2 * word_bytes
        raise SimulationError(
            f"{layer_name}: no band fits the global buffer: one output row of {filters} filters with its "
            f"input rows needs {need} bytes double-buffered, global_buffer.capacity_bytes is "
            f"{global_buffer_bytes}"
        )
    mapping = LayerMapping(
        dram=Loops((1, 1, covering(geometry.out_height, out_rows)), order="KPC"),
        pe_tile=(filters, channels, out_rows),
        buffer_keeps=frozenset({"Outputs"}),
        pe_keeps=frozenset(),
    )
    return tiles_of(geometry, mapping)
