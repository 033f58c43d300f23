"""The whole-layer numpy versions of the systolic model's counts, kept as a straightforward reference.

These are the implementations :mod:`sparsesim.systolic` used before its memory was bounded: each builds
arrays the size of the layer (the per-cycle write profile of every fold, the ``M x K`` matrix of ifmap
addresses, an epoch stamp per address of the operand) and is obviously right by construction. The bounded
code (closed forms, chunked demand streams, a set of at most one epoch of addresses) must give exactly the
same numbers; the property tests in ``test_bounded.py`` compare them on small synthetic shapes.
"""

from __future__ import annotations

import functools

import numpy as np

from sparsesim.systolic.array import fold_plan
from sparsesim.systolic.buffers import read_epoch_capacity


def _fold_spans(total, width):
    return [(start, min(width, total - start)) for start in range(0, total, width)]


def writes_per_cycle(config, plan):
    """Outputs written to the ofmap SRAM in each stall-free cycle of the layer's schedule."""
    rows = config.array_rows
    profile = np.zeros((plan.folds, plan.fold_cycles), dtype=np.int64)
    fold = 0
    for _, cols_used in _fold_spans(plan.spatial_cols, config.array_cols):
        for _, rows_used in _fold_spans(plan.spatial_rows, rows):
            if plan.dataflow == "os":
                start, height = plan.temporal - 1 + rows - rows_used, rows_used
            else:
                start, height = 2 * rows - 1, plan.temporal
            box = np.convolve(np.ones(height, dtype=np.int64), np.ones(cols_used, dtype=np.int64))
            profile[fold, start : start + len(box)] = box
            fold += 1
    return profile.ravel()


def distinct_ifmap_addresses(layer):
    """Ifmap words the layer touches: covered rows x covered columns x channels, by marking them."""

    def covered(size, kernel, outputs):
        mask = np.zeros(size, dtype=bool)
        for start in range(0, outputs * layer.stride, layer.stride):
            mask[start : start + kernel] = True
        return int(mask.sum())

    return (
        covered(layer.ifmap_height, layer.filter_height, layer.ofmap_height)
        * covered(layer.ifmap_width, layer.filter_width, layer.ofmap_width)
        * layer.channels
    )


def ifmap_address_matrix(layer):
    """The layer's ``M x K`` matrix of offset-free ifmap addresses, -1 past the input edge."""
    pixel = np.arange(layer.ofmap_pixels)[:, None]
    position = np.arange(layer.window_size)[None, :]
    out_row, out_col = np.divmod(pixel, layer.ofmap_width)
    kernel_row, rest = np.divmod(position, layer.filter_width * layer.channels)
    kernel_col, channel = np.divmod(rest, layer.channels)
    row = out_row * layer.stride + kernel_row
    col = out_col * layer.stride + kernel_col
    inside = (row < layer.ifmap_height) & (col < layer.ifmap_width)
    return np.where(inside, (row * layer.ifmap_width + col) * layer.channels + channel, -1)


class StampedEpochReadCounter:
    """DRAM reads of a read buffer with one epoch stamp per address of the whole address space."""

    def __init__(self, capacity, address_space):
        self.capacity = capacity
        self.dram_reads = 0
        self._stamp = np.zeros(max(address_space, 1), dtype=np.int32)
        self._first = np.zeros(max(address_space, 1), dtype=np.int32)
        self._epoch = 1
        self._in_epoch = 0

    def feed(self, addresses):
        piece = max(4096, 2 * self.capacity)
        for start in range(0, len(addresses), piece):
            self._feed_piece(addresses[start : start + piece])

    def _feed_piece(self, chunk):
        while len(chunk):
            fresh = np.flatnonzero(self._stamp[chunk] != self._epoch)
            if len(fresh) == 0:
                return
            candidates = chunk[fresh]
            self._first[candidates[::-1]] = fresh[::-1]
            first_positions = fresh[self._first[candidates] == fresh]
            room = self.capacity - self._in_epoch if self.capacity else len(first_positions) + 1
            if len(first_positions) < room:
                self._stamp[chunk[first_positions]] = self._epoch
                self._in_epoch += len(first_positions)
                self.dram_reads += len(first_positions)
                return
            self.dram_reads += room
            cut = int(first_positions[room - 1])
            self._epoch += 1
            self._in_epoch = 0
            chunk = chunk[cut + 1 :]


@functools.lru_cache(maxsize=8)
def _block_order(kind, height, width):
    i, j = np.indices((height, width), dtype=np.int32)
    if kind == "skewed":
        order = np.argsort(((i + j) * width + j).ravel(), kind="stable")
        return i.ravel()[order], j.ravel()[order]
    return i[::-1].ravel(), j[::-1].ravel()


def demand_stream(config, layer, operand):
    """Every address the ifmap or filter buffer is asked for, in demand order (-1: past the input edge)."""
    plan = fold_plan(config, layer)
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    matrix = ifmap_address_matrix(layer).ravel() if operand == "ifmap" else np.arange(n * k)
    pieces = []
    for c0, cw in _fold_spans(plan.spatial_cols, config.array_cols):
        for r0, rh in _fold_spans(plan.spatial_rows, config.array_rows):
            if plan.dataflow == "ws":
                if operand == "ifmap":
                    t, lane = _block_order("skewed", m, rh)
                    index = t * k + r0 + lane
                else:
                    i, j = _block_order("flipped", rh, cw)
                    index = (c0 + j) * k + r0 + i
            elif plan.dataflow == "os":
                if operand == "ifmap":
                    t, lane = _block_order("skewed", k, rh)
                    index = (r0 + lane) * k + t
                else:
                    t, lane = _block_order("skewed", k, cw)
                    index = (c0 + lane) * k + t
            elif operand == "ifmap":
                i, j = _block_order("flipped", rh, cw)
                index = (c0 + j) * k + r0 + i
            else:
                t, lane = _block_order("skewed", n, rh)
                index = t * k + r0 + lane
            pieces.append(matrix[index])
    return np.concatenate(pieces)


def dram_reads_in_order(config, layer, operand):
    """DRAM reads of the ifmap or filter buffer, its whole demand stream fed to a stamped counter."""
    words = config.ifmap_sram_bytes if operand == "ifmap" else config.filter_sram_bytes
    if operand == "ifmap":
        space = layer.ifmap_height * layer.ifmap_width * layer.channels
    else:
        space = layer.window_size * layer.num_filters
    counter = StampedEpochReadCounter(read_epoch_capacity(words), space)
    stream = demand_stream(config, layer, operand)
    counter.feed(stream[stream >= 0])
    return counter.dram_reads
