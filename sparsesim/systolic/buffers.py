"""The SRAM buffers of a SCALE-Sim-style systolic array in CALC bandwidth mode, computed in bulk.

Two models, both exact transcriptions of SCALE-Sim 3.0.0's behaviour into event-level numpy:

**Read buffers (ifmap, filter): DRAM reads.** In CALC mode a read never stalls the array; the buffer only
estimates DRAM traffic. Addresses are taken in demand order (cycle by cycle, lane by lane). The buffer
remembers the distinct addresses fetched in the current *epoch*; an address not remembered is one DRAM
read. An epoch holds ``capacity = 50 * floor(sram_words / 100)`` distinct addresses (half the SRAM, in
100 sets): the moment the ``capacity``-th distinct address arrives, the buffer forgets everything and a
new epoch starts. So DRAM reads are the number of distinct addresses when they fit (the common case,
one closed form), and otherwise a count that depends on the order, computed here with an epoch stamp
per address in one pass of numpy over the demand stream.

**Write buffer (ofmap): stall cycles and DRAM writes.** Outputs enter the ofmap SRAM and are packed into
lines of ``line_words`` words (the array width). Half the SRAM is the drain buffer: when more than
``drain_words`` words are held and no drain is under way, the partly filled line is closed and up to
``ceil(drain_words / line_words)`` lines are written to DRAM, one line per cycle. If the SRAM fills while a
drain is under way, the array stalls until the drain ends. A drain counts every word of its lines as
written except the empty slots of its *last* line (SCALE-Sim's rule: an early-closed line in the middle
of a drain counts as full, so DRAM writes can exceed the outputs). What is left is drained at the end.
The simulation jumps from event to event (drain start, stall) with :func:`numpy.searchsorted` on the
cumulative writes per cycle, never per word.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

__all__ = ["EpochReadCounter", "read_epoch_capacity", "simulate_write_buffer"]


def read_epoch_capacity(sram_words: int) -> int:
    """Distinct addresses a read buffer remembers before it starts over (0: unlimited).

    SCALE-Sim splits the SRAM into 100 sets of ``floor(words / 100)`` addresses; half of them (the active
    buffer) make an epoch. An SRAM under 100 words has empty sets and never starts over.
    """
    return 50 * (sram_words // 100)


class EpochReadCounter:
    """Counts DRAM reads of a read buffer fed its demand stream in order, chunk by chunk.

    ``address_space`` bounds the (offset-free) addresses fed; ``capacity`` is
    :func:`read_epoch_capacity` (0: one epoch forever).
    """

    def __init__(self, capacity: int, address_space: int):
        self.capacity = capacity
        self.dram_reads = 0
        self._stamp = np.zeros(max(address_space, 1), dtype=np.int32)
        self._first = np.zeros(max(address_space, 1), dtype=np.int32)
        self._epoch = 1
        self._in_epoch = 0

    def feed(self, addresses: np.ndarray) -> None:
        """Take the next demanded addresses (non-negative, in demand order)."""
        piece = max(4096, 2 * self.capacity)
        for start in range(0, len(addresses), piece):
            self._feed_piece(addresses[start : start + piece])

    def _feed_piece(self, chunk: np.ndarray) -> None:
        while len(chunk):
            fresh = np.flatnonzero(self._stamp[chunk] != self._epoch)
            if len(fresh) == 0:
                return
            # First occurrences without sorting: scatter positions in reverse so the earliest one stays.
            candidates = chunk[fresh]
            self._first[candidates[::-1]] = fresh[::-1]
            first_positions = fresh[self._first[candidates] == fresh]
            room = self.capacity - self._in_epoch if self.capacity else len(first_positions) + 1
            if len(first_positions) < room:
                self._stamp[chunk[first_positions]] = self._epoch
                self._in_epoch += len(first_positions)
                self.dram_reads += len(first_positions)
                return
            # The room-th new address completes the epoch: everything after it starts a new one.
            self.dram_reads += room
            cut = int(first_positions[room - 1])
            self._epoch += 1
            self._in_epoch = 0
            chunk = chunk[cut + 1 :]


def simulate_write_buffer(writes_per_cycle: np.ndarray, sram_words: int, line_words: int) -> tuple[int, int]:
    """Stall cycles and DRAM writes of the ofmap SRAM, given the array's writes in each stall-free cycle.

    ``writes_per_cycle[i]`` is the number of outputs written in the ``i``-th cycle of the layer's schedule
    (before stalls). Returns ``(stall_cycles, dram_writes)``; see the module docstring for the rules.
    """
    writes_per_cycle = np.asarray(writes_per_cycle, dtype=np.int64)
    total = int(writes_per_cycle.sum())
    if total == 0:
        return 0, 0
    drain_words = sram_words - math.ceil(sram_words * 0.5)
    if total <= drain_words:
        return 0, total  # nothing drains before the end; then every line is full but the last
    lines_per_drain = math.ceil(drain_words / line_words) if drain_words else 1
    cumulative = np.cumsum(writes_per_cycle)
    rows = len(cumulative)

    segment_first_lines: list[int] = []  # lines closed together: all full but the segment's last
    segment_last_fill: list[int] = []
    state = {"lines": 0, "segment_start": 0, "next_line": 0}

    def close_lines(stored: int) -> None:
        count = stored - state["segment_start"]
        if count > 0:
            n = -(-count // line_words)
            segment_first_lines.append(state["lines"])
            segment_last_fill.append(count - line_words * (n - 1))
            state["lines"] += n
        state["segment_start"] = stored

    def fill_of(line: int) -> int:
        index = bisect.bisect_right(segment_first_lines, line) - 1
        next_first = (
            segment_first_lines[index + 1] if index + 1 < len(segment_first_lines) else state["lines"]
        )
        return segment_last_fill[index] if line == next_first - 1 else line_words

    def drain() -> tuple[int, int]:
        n = min(lines_per_drain, state["lines"] - state["next_line"])
        last = state["next_line"] + n - 1
        state["next_line"] += n
        return n, n * line_words - (line_words - fill_of(last))

    def cycle_row(element: int) -> int:
        return int(np.searchsorted(cumulative, element, side="right"))

    element = used = stall = drain_end = dram_writes = 0
    while element < total:
        if cycle_row(element) + stall < drain_end:
            # A drain is under way until the first cycle whose (stalled) time reaches drain_end.
            last_row = drain_end - stall - 1
            stop = int(cumulative[last_row]) if last_row < rows else total
            full_at = element + max(sram_words - used - 1, 0)
            if full_at < stop:
                used += full_at - element + 1
                stall += drain_end - (cycle_row(full_at) + stall)
                element = full_at + 1
            else:
                used += stop - element
                element = stop
        else:
            trigger = element + max(drain_words - used, 0)
            if trigger >= total:
                break
            used += trigger - element + 1
            element = trigger + 1
            start_cycle = cycle_row(trigger) + stall
            close_lines(element)
            n, data = drain()
            dram_writes += data
            used -= data
            drain_end = start_cycle + n - 1
    close_lines(total)
    while state["next_line"] < state["lines"]:
        dram_writes += drain()[1]
    return stall, dram_writes
