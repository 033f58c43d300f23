"""Cycle-stepped reference model of a dense systolic array in SCALE-Sim's CALC mode, written for clarity.

One loop iteration per cycle of the schedule. In each cycle every array lane asks, from the timing rules
of its dataflow, which operand it reads and which output it writes; the read buffers remember the
addresses of the current epoch in a Python set, and the ofmap buffer follows the rules word by word
(fill lines, start a drain past half full, stall when full while draining). Plain Python ints and lists
only, so that :mod:`sparsesim.systolic.array`'s closed forms can be checked against it on tiny layers.

Timing rules, per fold (``r0``/``rh``: first spatial row and rows used, ``c0``/``cw``: same for columns;
``t`` counts cycles from the fold's start; ``R x C`` array):

* ``ws``: cycle ``t < R`` loads filter row ``R - 1 - t`` of the block (bottom row first); row lane ``j``
  reads ifmap ``[m, r0 + j]`` at ``t = R + j + m``; column ``c`` writes output ``m`` at
  ``t = 2R - 1 + c + m``.
* ``os``: row lane ``j`` reads ifmap ``[r0 + j, k]`` and column ``c`` reads filter ``[k, c0 + c]`` at
  ``t = j + k`` / ``t = c + k``; column ``c`` writes the block's row ``R - 1 - p`` at ``t = K - 1 + c + p``
  for the block rows in use.
* ``is``: cycle ``t < R`` loads ifmap block row ``R - 1 - t``; row lane ``j`` reads filter
  ``[r0 + j, n]`` at ``t = R + j + n``; column ``c`` writes filter ``n``'s output at ``t = 2R - 1 + c + n``.
"""

from __future__ import annotations

import math


def _ifmap_address(layer, pixel, position):
    out_row, out_col = divmod(pixel, layer.ofmap_width)
    kernel_row, rest = divmod(position, layer.filter_width * layer.channels)
    kernel_col, channel = divmod(rest, layer.channels)
    row = out_row * layer.stride + kernel_row
    col = out_col * layer.stride + kernel_col
    if row >= layer.ifmap_height or col >= layer.ifmap_width:
        return None  # past the input edge: a read of no address
    return (row * layer.ifmap_width + col) * layer.channels + channel


class ReadBuffer:
    def __init__(self, sram_words):
        self.capacity = 50 * (sram_words // 100)
        self.epoch = set()
        self.sram_reads = 0
        self.dram_reads = 0

    def read(self, address):
        self.sram_reads += 1
        if address is None or address in self.epoch:
            return
        self.epoch.add(address)
        self.dram_reads += 1
        if self.capacity and len(self.epoch) == self.capacity:
            self.epoch = set()


class WriteBuffer:
    def __init__(self, sram_words, line_words):
        self.size = sram_words
        self.drain_words = sram_words - math.ceil(sram_words * 0.5)
        self.line_words = line_words
        self.lines_per_drain = max(1, math.ceil(self.drain_words / line_words))
        self.free = sram_words
        self.lines = []  # words in each closed line
        self.open_line = 0
        self.next_line = 0
        self.drain_end = 0
        self.dram_writes = 0
        self.sram_writes = 0

    def _close_open_line(self):
        if self.open_line:
            self.lines.append(self.open_line)
            self.open_line = 0

    def _drain(self, start_cycle):
        chunk = self.lines[self.next_line : self.next_line + self.lines_per_drain]
        self.next_line += len(chunk)
        data = len(chunk) * self.line_words - (self.line_words - chunk[-1])
        self.dram_writes += data
        self.free += data
        return start_cycle + len(chunk) - 1

    def cycle(self, writes, cycle):
        """Take this cycle's writes at (stalled) time ``cycle``; return the stall cycles they caused."""
        now = cycle
        for _ in range(writes):
            self.sram_writes += 1
            self.free -= 1
            self.open_line += 1
            if self.open_line == self.line_words:
                self._close_open_line()
            if now < self.drain_end:
                if self.free <= 0:
                    now = self.drain_end
            elif self.free < self.size - self.drain_words:
                self._close_open_line()
                self.drain_end = self._drain(now)
        return now - cycle

    def finish(self):
        self._close_open_line()
        while self.next_line < len(self.lines):
            self._drain(0)


def _fold_spans(total, width):
    return [(start, min(width, total - start)) for start in range(0, total, width)]


def reference_systolic_layer(rows, cols, ifmap_words, filter_words, ofmap_words, dataflow, layer):
    """Run ``layer`` cycle by cycle; return the same quantities as ``SystolicLayerResult``."""
    m, n, k = layer.ofmap_pixels, layer.num_filters, layer.window_size
    sr, sc, temporal = {"ws": (k, n, m), "os": (m, n, k), "is": (k, m, n)}[dataflow]
    fold_cycles = (rows if dataflow == "os" else 2 * rows) + cols + temporal - 2
    ifmap, filt = ReadBuffer(ifmap_words), ReadBuffer(filter_words)
    ofmap = WriteBuffer(ofmap_words, cols)
    schedule = stall = 0
    for c0, cw in _fold_spans(sc, cols):
        for r0, rh in _fold_spans(sr, rows):
            for t in range(fold_cycles):
                writes = 0
                if dataflow == "ws":
                    if t < rows and rows - 1 - t < rh:
                        for c in range(cw):
                            filt.read((c0 + c) * k + r0 + rows - 1 - t)
                    for j in range(rh):
                        if 0 <= t - rows - j < m:
                            ifmap.read(_ifmap_address(layer, t - rows - j, r0 + j))
                    writes = sum(1 for c in range(cw) if 0 <= t - (2 * rows - 1) - c < m)
                elif dataflow == "os":
                    for j in range(rh):
                        if 0 <= t - j < k:
                            ifmap.read(_ifmap_address(layer, r0 + j, t - j))
                    for c in range(cw):
                        if 0 <= t - c < k:
                            filt.read((c0 + c) * k + t - c)
                    writes = sum(1 for c in range(cw) if rows - rh <= t - (k - 1) - c < rows)
                else:
                    if t < rows and rows - 1 - t < rh:
                        for c in range(cw):
                            ifmap.read(_ifmap_address(layer, c0 + c, r0 + rows - 1 - t))
                    for j in range(rh):
                        if 0 <= t - rows - j < n:
                            filt.read((t - rows - j) * k + r0 + j)
                    writes = sum(1 for c in range(cw) if 0 <= t - (2 * rows - 1) - c < n)
                stall += ofmap.cycle(writes, schedule + stall)
                schedule += 1
    ofmap.finish()
    os_extra = (math.ceil(sr / rows) * math.ceil(sc / cols) * (rows + cols)) if dataflow == "os" else 0
    return {
        "schedule_cycles": schedule,
        "compute_cycles": schedule - 1,
        "stall_cycles": stall,
        "ifmap_sram_reads": ifmap.sram_reads,
        "filter_sram_reads": filt.sram_reads,
        "ofmap_sram_writes": ofmap.sram_writes + os_extra,
        "ifmap_dram_reads": ifmap.dram_reads,
        "filter_dram_reads": filt.dram_reads,
        "ofmap_dram_writes": ofmap.dram_writes,
    }


def reference_write_buffer(writes_per_cycle, sram_words, line_words):
    """The ofmap buffer alone on an arbitrary write profile: ``(stall_cycles, dram_writes)``."""
    buffer = WriteBuffer(sram_words, line_words)
    stall = 0
    for cycle, writes in enumerate(writes_per_cycle):
        stall += buffer.cycle(int(writes), cycle + stall)
    buffer.finish()
    return stall, buffer.dram_writes
