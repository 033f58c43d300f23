"""Off-chip DRAM: one channel with a bandwidth, an access latency and a burst size.

Modelled: a transaction (a tile's weights and input rows, or its finished outputs) is rounded up to whole
bursts, pays the access latency once and then streams at ``bandwidth_bytes_per_cycle``; reads and writes share
the channel, one transaction at a time in FIFO order.
Ignored: banks, row-buffer hits and misses, refresh, read/write turnaround.
Actions: ``read`` and ``write`` = one burst of ``burst_bytes``.
"""

from __future__ import annotations

import simpy

from sparsesim.core import Component, Hop, Port

RANK = 0  # ports are acquired in rank order: DRAM first


class Dram(Component):
    ACTIONS = ("read", "write")

    def __init__(self, env: simpy.Environment, config, path: str = "dram"):
        super().__init__(path)
        self.burst_bytes = config.burst_bytes
        self.port = self.add_port(
            Port(env, path, config.bandwidth_bytes_per_cycle, config.latency_cycles, rank=RANK)
        )

    def _bursts(self, n_bytes: int) -> int:
        return -(-n_bytes // self.burst_bytes)

    def read(self, n_bytes: int) -> Hop:
        bursts = self._bursts(n_bytes)
        self.count("read", bursts)
        return Hop(self.port, self.port.cycles_for(bursts * self.burst_bytes))

    def write(self, n_bytes: int) -> Hop:
        bursts = self._bursts(n_bytes)
        self.count("write", bursts)
        return Hop(self.port, self.port.cycles_for(bursts * self.burst_bytes))
