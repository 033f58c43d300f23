"""The global buffer: on-chip SRAM between DRAM and the NoC, double-buffered by tiles.

Modelled: capacity (the tiling keeps two tiles' weights, inputs and outputs within it), and its ports:
with one bank, reads and writes share a single port; with two or more banks, reads and writes proceed in
parallel on separate ports, each at its own bandwidth.
Ignored: which bank holds what, bank conflicts, SRAM latency (it is hidden behind the NoC and DRAM latency).
Actions: ``read`` and ``write`` = one word of ``word_bytes``.
"""

from __future__ import annotations

import simpy

from sparsesim.core import Component, Hop, Port

READ_RANK, WRITE_RANK = 1, 2


class GlobalBuffer(Component):
    ACTIONS = ("read", "write")

    def __init__(self, env: simpy.Environment, config, word_bytes: int, path: str = "global_buffer"):
        super().__init__(path)
        self.capacity_bytes = config.capacity_bytes
        self.word_bytes = word_bytes
        if config.banks >= 2:
            self.read_port = self.add_port(
                Port(env, f"{path}.read", config.read_bandwidth_bytes_per_cycle, 0, rank=READ_RANK)
            )
            self.write_port = self.add_port(
                Port(env, f"{path}.write", config.write_bandwidth_bytes_per_cycle, 0, rank=WRITE_RANK)
            )
        else:
            # One bank, one port: its bandwidth is the smaller of the two declared ones.
            shared = min(config.read_bandwidth_bytes_per_cycle, config.write_bandwidth_bytes_per_cycle)
            self.read_port = self.write_port = self.add_port(
                Port(env, f"{path}.port", shared, 0, rank=READ_RANK)
            )

    def read(self, n_words: int) -> Hop:
        self.count("read", n_words)
        return Hop(self.read_port, self.read_port.cycles_for(n_words * self.word_bytes))

    def write(self, n_words: int) -> Hop:
        self.count("write", n_words)
        return Hop(self.write_port, self.write_port.cycles_for(n_words * self.word_bytes))
