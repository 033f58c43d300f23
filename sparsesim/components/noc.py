"""The network on chip between the global buffer and the PE array: a multicast bus.

Modelled: one bus with a bandwidth and a latency carrying operands to the PEs (weights unicast to the PE
that owns them, input activations multicast once to every PE that needs them) and partial sums and outputs
back to the global buffer; one transaction (a tile's operands or results) at a time.
Ignored: the topology inside the array (a hierarchical mesh or per-row buses are approximated by one bus of
the same total bandwidth), packetisation, arbitration cycles.
Actions: ``transfer`` = one word put on the bus (a multicast word counts once).
"""

from __future__ import annotations

import simpy

from sparsesim.core import Component, Hop, Port

RANK = 3


class Noc(Component):
    ACTIONS = ("transfer",)

    def __init__(self, env: simpy.Environment, config, word_bytes: int, path: str = "noc"):
        super().__init__(path)
        self.word_bytes = word_bytes
        self.port = self.add_port(
            Port(env, path, config.bandwidth_bytes_per_cycle, config.latency_cycles, rank=RANK)
        )

    def send(self, n_words: int) -> Hop:
        self.count("transfer", n_words)
        return Hop(self.port, self.port.cycles_for(n_words * self.word_bytes))
