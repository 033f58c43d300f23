"""Ports: the only way data moves between components, each with a bandwidth and a latency.

A :class:`Port` is a simpy resource of capacity one (a port serves one transaction at a time; others queue
in FIFO order). :func:`transfer` moves one transaction (a tile of operands, a DRAM transfer of whole bursts)
along a path of ports, *cut-through*: it first holds every port of the path, then takes

    duration_cycles = sum(latency_cycles of the ports) + max(busy cycles of the ports)

so a transfer is latency-bound when it is small and bandwidth-bound (by the slowest port) when it is large.
Each port books its own busy cycles (``ceil(bytes / bandwidth)`` for a link) as *busy* and the rest of the
time it was held as *stall* (held, but waiting for latency, for a slower port of the path, or to acquire
the next port).
Ports are acquired in a fixed global order (``rank``), so two transfers can never deadlock.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import simpy


class Port:
    """One transaction at a time at ``bandwidth_bytes_per_cycle``, after ``latency_cycles``."""

    def __init__(
        self,
        env: simpy.Environment,
        path: str,
        bandwidth_bytes_per_cycle: float,
        latency_cycles: int,
        rank: int,
    ):
        if not bandwidth_bytes_per_cycle > 0:
            raise ValueError(f"{path}: bandwidth must be > 0 per cycle, got {bandwidth_bytes_per_cycle}")
        if latency_cycles < 0:
            raise ValueError(f"{path}: latency must be >= 0 cycles, got {latency_cycles}")
        self.path = path
        self.bandwidth_bytes_per_cycle = bandwidth_bytes_per_cycle
        self.latency_cycles = int(latency_cycles)
        self.rank = rank
        self.resource = simpy.Resource(env, capacity=1)
        self.busy_cycles = 0
        self.stall_cycles = 0
        self.transactions = 0

    def cycles_for(self, n_bytes: int) -> int:
        """Cycles this port is busy moving ``n_bytes`` (0 for an empty transfer)."""
        return math.ceil(n_bytes / self.bandwidth_bytes_per_cycle) if n_bytes > 0 else 0


@dataclass(frozen=True)
class Hop:
    """One port of a transfer's path and the cycles it is busy with the transaction.

    The owning component computes ``busy_cycles`` (a link: ``port.cycles_for(bytes)``, with DRAM rounding
    up to bursts; a decoder: from the elements and metadata bits it parses).
    """

    port: Port
    busy_cycles: int


def transfer(env: simpy.Environment, hops: Sequence[Hop]) -> Generator[simpy.Event, object, int]:
    """Move one transaction along ``hops`` (see the module docstring); returns its duration in cycles."""
    ordered = sorted(hops, key=lambda hop: hop.port.rank)
    if len({hop.port for hop in ordered}) != len(ordered):
        raise ValueError("a transfer may cross each port only once")
    if all(hop.busy_cycles == 0 for hop in ordered):
        return 0
    requests = []
    acquired_at = []
    for hop in ordered:
        request = hop.port.resource.request()
        yield request
        requests.append(request)
        acquired_at.append(env.now)
    busy = [hop.busy_cycles for hop in ordered]
    duration = sum(hop.port.latency_cycles for hop in ordered) + max(busy)
    yield env.timeout(duration)
    for hop, request, start, busy_cycles in zip(ordered, requests, acquired_at, busy, strict=True):
        hop.port.busy_cycles += busy_cycles
        hop.port.stall_cycles += int(env.now - start) - busy_cycles
        hop.port.transactions += 1
        hop.port.resource.release(request)
    return duration
