"""The SRAM buffers of a SCALE-Sim-style systolic array in CALC bandwidth mode, computed in bulk.

Two models, both exact transcriptions of SCALE-Sim 3.0.0's behaviour into event-level numpy:

**Read buffers (ifmap, filter): DRAM reads.** In CALC mode a read never stalls the array; the buffer only
estimates DRAM traffic. Addresses are taken in demand order (cycle by cycle, lane by lane). The buffer
remembers the distinct addresses fetched in the current *epoch*; an address not remembered is one DRAM
read. An epoch holds ``capacity = 50 * floor(sram_words / 100)`` distinct addresses (half the SRAM, in
100 sets): the moment the ``capacity``-th distinct address arrives, the buffer forgets everything and a
new epoch starts. So DRAM reads are the number of distinct addresses when they fit (the common case,
one closed form), and otherwise a count that depends on the order, computed here in one pass of numpy
over the demand stream (:class:`EpochReadCounter`).

**Write buffer (ofmap): stall cycles and DRAM writes.** Outputs enter the ofmap SRAM and are packed into
lines of ``line_words`` words (the array width). Half the SRAM is the drain buffer: when more than
``drain_words`` words are held and no drain is under way, the partly filled line is closed and up to
``ceil(drain_words / line_words)`` lines are written to DRAM, one line per cycle. If the SRAM fills while a
drain is under way, the array stalls until the drain ends. A drain counts every word of its lines as
written except the empty slots of its *last* line (SCALE-Sim's rule: an early-closed line in the middle
of a drain counts as full, so DRAM writes can exceed the outputs). What is left is drained at the end.
The simulation jumps from event to event (drain start, stall) through a :class:`WriteProfile`: the
cumulative writes by cycle and its inverse, never per word or per cycle.

**Memory and cost.** Nothing here holds arrays the size of a layer. The read counter takes the demand
stream in pieces of at most 65,536 addresses and keeps only the current epoch's addresses (at most
``capacity``, half the SRAM), in one of three ways, the fastest that fits:

* a 1-byte epoch stamp per address and a 2-byte scatter slot per address, when the operand's address
  space is at most 2**24 words (48 MiB at most);
* a 1-byte stamp per address, first occurrences found by sorting each piece, when the address space is at
  most 2**26 words or 8 times the capacity (64 MiB, or 8 bytes per address of a full epoch, at most);
* sorted runs of the epoch's addresses otherwise (8 bytes per address of the epoch, 16 while two runs
  merge).

So its memory is at most 64 MiB or 16 bytes per word of half the SRAM (256 MiB for the largest SRAM
sparsesim accepts), whatever the layer. Its time is one pass over the stream
(:func:`read_cost_per_address`). The write buffer keeps only the lines not yet drained and takes a few
Python steps per drain; :func:`write_buffer_steps` bounds the steps before the run, so that a caller can
refuse a layer whose drains would take too long.
"""

from __future__ import annotations

import bisect
import math
from typing import Protocol

import numpy as np

from sparsesim.errors import SimulationError

__all__ = [
    "ArrayWriteProfile",
    "EpochReadCounter",
    "WriteProfile",
    "read_cost_per_address",
    "read_epoch_capacity",
    "simulate_write_buffer",
    "write_buffer_steps",
]

# Addresses taken in one piece by the read counter: at most _PIECE_MAX (its memory; positions within a
# piece fit 16 bits), at least _PIECE_MIN (numpy's overhead per call), about two epochs in between, so that
# restarting the rest of a piece after an epoch ends costs no more than the epoch took.
_PIECE_MIN = 4096
_PIECE_MAX = 1 << 16
# Address spaces up to this size (64 MiB of 1-byte stamps), or up to 8 times the epoch capacity (no more
# than the sorted runs of a full epoch take), are tracked with a stamp per address: the fastest way.
_STAMPED_SPACE = 1 << 26
# Up to this size, first occurrences within a piece are found by scattering positions (2 more bytes per
# address) rather than by sorting the piece.
_SCATTERED_SPACE = 1 << 24


def read_epoch_capacity(sram_words: int) -> int:
    """Distinct addresses a read buffer remembers before it starts over (0: unlimited).

    SCALE-Sim splits the SRAM into 100 sets of ``floor(words / 100)`` addresses; half of them (the active
    buffer) make an epoch. An SRAM under 100 words has empty sets and never starts over.
    """
    return 50 * (sram_words // 100)


def read_cost_per_address(capacity: int, address_space: int) -> int:
    """Relative cost of one address fed to an :class:`EpochReadCounter` (with the demand stream's own
    generation): 1 with a stamp and a scattered first position per address (address spaces up to 2**24),
    2 with stamps and sorted pieces (up to 2**26, or 8 times the capacity), 5 with sorted runs (beyond).
    Measured: about 21, 11 and 5 million addresses a second."""
    if address_space > max(_STAMPED_SPACE, 8 * capacity):
        return 5
    return 1 if address_space <= _SCATTERED_SPACE else 2


class EpochReadCounter:
    """Counts DRAM reads of a read buffer fed its demand stream in order, chunk by chunk.

    ``capacity`` is :func:`read_epoch_capacity` (0: one epoch forever). ``address_space``, if given, is an
    exclusive upper bound on the (offset-free, non-negative) addresses fed; it chooses how the epoch is
    kept (stamps per address for small spaces, sorted runs of the epoch's addresses for large ones or
    when it is not given: see the module docstring). Every way gives the same counts; memory is bounded by
    the space's stamps or the epoch, never by the stream.
    """

    def __init__(self, capacity: int, address_space: int | None = None):
        self.capacity = capacity
        self.dram_reads = 0
        self._in_epoch = 0
        self._stamped = address_space is not None and address_space <= max(_STAMPED_SPACE, 8 * capacity)
        if address_space is not None and self._stamped:
            # The epoch's number modulo 255 (1..255) marks its addresses; every 255 epochs all are cleared.
            self._stamp = np.zeros(max(address_space, 1), dtype=np.uint8)
            self._epoch = 1
            # Positions within a piece (< 65,536) of each address's first occurrence, scattered.
            self._first = np.zeros(
                max(address_space, 1) if address_space <= _SCATTERED_SPACE else 0, np.uint16
            )
        self._runs: list[np.ndarray] = []  # sorted, disjoint; each at least twice as long as the next

    def feed(self, addresses: np.ndarray) -> None:
        """Take the next demanded addresses (non-negative, in demand order)."""
        addresses = np.asarray(addresses, dtype=np.int64)
        piece = min(max(_PIECE_MIN, 2 * self.capacity), _PIECE_MAX)
        for start in range(0, len(addresses), piece):
            self._feed_piece(addresses[start : start + piece])

    def _feed_piece(self, chunk: np.ndarray) -> None:
        while len(chunk):
            first_positions = self._fresh_first_positions(chunk)
            if len(first_positions) == 0:
                return
            room = self.capacity - self._in_epoch if self.capacity else len(first_positions) + 1
            if len(first_positions) < room:
                self._remember(chunk[first_positions])
                self._in_epoch += len(first_positions)
                self.dram_reads += len(first_positions)
                return
            # The room-th new address completes the epoch: everything after it starts a new one.
            self.dram_reads += room
            cut = int(first_positions[room - 1])
            self._forget()
            chunk = chunk[cut + 1 :]

    def _fresh_first_positions(self, chunk: np.ndarray) -> np.ndarray:
        """Positions (ascending) in ``chunk`` of the first occurrence of each address the current epoch
        does not remember."""
        if self._stamped:
            fresh = np.flatnonzero(self._stamp[chunk] != self._epoch)
            candidates = chunk[fresh]
            if len(self._first):  # without sorting: scatter positions in reverse so the earliest one stays
                self._first[candidates[::-1]] = fresh[::-1]
                return fresh[self._first[candidates] == fresh]
            _, index = np.unique(candidates, return_index=True)
            return np.sort(fresh[index])
        # Sorted runs: sort the chunk once (stably: equal addresses keep their order, the first leads), so
        # that each search narrows from the last one and the first occurrences are where values change.
        order = np.argsort(chunk, kind="stable")
        keys = chunk[order]
        first = np.empty(len(keys), dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        for run in self._runs:
            index = np.searchsorted(run, keys)
            index[index == len(run)] = 0
            first &= run[index] != keys
        return np.sort(order[first])

    def _remember(self, addresses: np.ndarray) -> None:
        """Add distinct addresses, none of them remembered yet, to the current epoch."""
        if self._stamped:
            self._stamp[addresses] = self._epoch
            return
        self._runs.append(np.sort(addresses))
        # Merge the newest runs while they are of comparable length: at most log2(capacity) runs remain,
        # and every address is copied O(log capacity) times in an epoch. A stable sort of two sorted runs
        # is one merge.
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newest, older = self._runs.pop(), self._runs.pop()
            self._runs.append(np.sort(np.concatenate((older, newest)), kind="stable"))

    def _forget(self) -> None:
        """Start a new epoch."""
        self._in_epoch = 0
        self._runs = []
        if self._stamped:
            self._epoch += 1
            if self._epoch == 256:
                # A fresh calloc'd array: the system zeroes only the pages touched again, where clearing
                # in place would write the whole space (64 MiB) every 255 epochs, however small they are.
                self._stamp = np.zeros(len(self._stamp), dtype=np.uint8)
                self._epoch = 1


class WriteProfile(Protocol):
    """The array's writes to the ofmap SRAM over the stall-free schedule, read through two functions."""

    #: Words written in the whole schedule.
    total: int
    #: Cycles in the schedule.
    cycles: int

    def written_by(self, cycle: int) -> int:
        """Words written in cycles ``0 .. cycle - 1``."""
        ...

    def cycle_of(self, word: int) -> int:
        """The cycle in which word ``word`` (0-based, in write order) is written; ``cycles`` past the end."""
        ...


class ArrayWriteProfile:
    """A :class:`WriteProfile` from an explicit array of writes per cycle (its cumulative sum is kept)."""

    def __init__(self, writes_per_cycle: np.ndarray):
        self._cumulative = np.cumsum(np.asarray(writes_per_cycle, dtype=np.int64))
        self.cycles = len(self._cumulative)
        self.total = int(self._cumulative[-1]) if self.cycles else 0

    def written_by(self, cycle: int) -> int:
        if cycle <= 0:
            return 0
        return int(self._cumulative[min(cycle, self.cycles) - 1])

    def cycle_of(self, word: int) -> int:
        return int(np.searchsorted(self._cumulative, word, side="right"))


def write_buffer_steps(total_words: int, sram_words: int, line_words: int) -> int:
    """An upper bound on the steps :func:`simulate_write_buffer` takes for ``total_words`` writes.

    A step is a drain or the wait for one to end (a few Python operations), and a drain is followed by at
    most one wait. A drain starts when more than ``drain_words`` (half the SRAM) are held and writes its
    lines, whole but the last, so it empties at least ``max(min(drain_words, line_words), drain_words -
    line_words + 1)`` words: steps are at most twice ``total_words`` over that, plus a few. (Checked on
    many random write profiles in the tests; the simulation also stops, with
    :class:`~sparsesim.errors.SimulationError`, past twice this bound.)
    """
    drain_words = sram_words - math.ceil(sram_words * 0.5)
    if total_words <= drain_words:
        return 1
    per_drain = max(min(drain_words, line_words), drain_words - line_words + 1, 1)
    return 2 * (total_words // per_drain + 2)


def simulate_write_buffer(
    writes_per_cycle: np.ndarray | WriteProfile,
    sram_words: int,
    line_words: int,
    max_steps: int | None = None,
) -> tuple[int, int]:
    """Stall cycles and DRAM writes of the ofmap SRAM, given the array's writes in each stall-free cycle.

    ``writes_per_cycle`` is an array (``writes_per_cycle[i]``: the outputs written in the ``i``-th cycle of
    the layer's schedule, before stalls) or a :class:`WriteProfile` computing the same in closed form.
    Returns ``(stall_cycles, dram_writes)``; see the module docstring for the rules. With ``max_steps``,
    :class:`~sparsesim.errors.SimulationError` if the simulation would take more steps (drains and waits).
    """
    profile = (
        writes_per_cycle
        if hasattr(writes_per_cycle, "cycle_of")
        else ArrayWriteProfile(np.asarray(writes_per_cycle))
    )
    total = profile.total
    if total == 0:
        return 0, 0
    drain_words = sram_words - math.ceil(sram_words * 0.5)
    if total <= drain_words:
        return 0, total  # nothing drains before the end; then every line is full but the last
    lines_per_drain = math.ceil(drain_words / line_words) if drain_words else 1
    rows = profile.cycles
    cycle_row = profile.cycle_of

    # Segments of lines closed together (all full but the segment's last), from the oldest one not yet
    # wholly drained (index ``head``): the lists hold only the lines still in the SRAM, give or take one.
    segment_first_lines: list[int] = []
    segment_last_fill: list[int] = []
    state = {"lines": 0, "segment_start": 0, "next_line": 0, "head": 0}

    def close_lines(stored: int) -> None:
        count = stored - state["segment_start"]
        if count > 0:
            n = -(-count // line_words)
            segment_first_lines.append(state["lines"])
            segment_last_fill.append(count - line_words * (n - 1))
            state["lines"] += n
        state["segment_start"] = stored

    def fill_of(line: int) -> int:
        index = bisect.bisect_right(segment_first_lines, line, lo=state["head"]) - 1
        next_first = (
            segment_first_lines[index + 1] if index + 1 < len(segment_first_lines) else state["lines"]
        )
        return segment_last_fill[index] if line == next_first - 1 else line_words

    def drain() -> tuple[int, int]:
        n = min(lines_per_drain, state["lines"] - state["next_line"])
        last = state["next_line"] + n - 1
        state["next_line"] += n
        data = n * line_words - (line_words - fill_of(last))
        head = state["head"]
        while head + 1 < len(segment_first_lines) and segment_first_lines[head + 1] <= state["next_line"]:
            head += 1
        if head > 1024 and 2 * head > len(segment_first_lines):
            del segment_first_lines[:head], segment_last_fill[:head]
            head = 0
        state["head"] = head
        return n, data

    element = used = stall = drain_end = dram_writes = steps = 0
    while element < total:
        steps += 1
        if max_steps is not None and steps > max_steps:
            raise SimulationError(
                f"the ofmap buffer took more than {max_steps:,} steps for {total:,} writes to "
                f"{sram_words:,} words in lines of {line_words:,}"
            )
        if cycle_row(element) + stall < drain_end:
            # A drain is under way until the first cycle whose (stalled) time reaches drain_end.
            last_row = drain_end - stall - 1
            stop = profile.written_by(last_row + 1) if last_row < rows else total
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
