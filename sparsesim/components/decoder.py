"""The decoder: parses compressed tensors on their way from DRAM to the PEs.

Modelled: one decoder, placed by ``decoder.at`` at the global buffer's input (DRAM -> buffer), at its output
(buffer -> NoC) or at the PEs' input (NoC -> PEs; it then stands for the PEs' decoders together, with their
total throughput). It handles every tensor that arrives compressed or that changes format at its boundary.
Metadata and payload are kept in separate streams (as Sparseloop and Eyeriss v2 store them), read in
parallel and decoupled by a FIFO, so a transaction of ``E`` stored elements and ``M`` metadata bits keeps the
decoder busy ``max(ceil(E / elements_per_cycle), ceil(M / metadata_bits_per_cycle))`` cycles, after
``latency_cycles`` once per transaction. A decoder slower than the links around it becomes the bottleneck
of the path, and the report shows it busy while the others stall.
Ignored: encoding on the way out (outputs change format for free), the decoder's own buffering limits.
Actions: ``decode`` = one stored element (value) parsed, padding entries included; ``metadata_read`` = one
word (``word_bytes``) of metadata read.
"""

from __future__ import annotations

import math

import simpy

from sparsesim.core import Component, Hop, Port

RANK = 4


def decoder_cycles(
    elements: int, metadata_bits: int, elements_per_cycle: float, metadata_bits_per_cycle: float
) -> int:
    """Busy cycles to parse ``elements`` stored values and ``metadata_bits`` of metadata (no latency)."""
    return max(
        math.ceil(elements / elements_per_cycle) if elements else 0,
        math.ceil(metadata_bits / metadata_bits_per_cycle) if metadata_bits else 0,
    )


class Decoder(Component):
    ACTIONS = ("decode", "metadata_read")

    def __init__(self, env: simpy.Environment, config, word_bytes: int, path: str = "decoder"):
        super().__init__(path)
        self.at = config.at
        self.elements_per_cycle = config.elements_per_cycle
        self.metadata_bits_per_cycle = config.metadata_bits_per_cycle
        self.word_bits = 8 * word_bytes
        # The port's bandwidth is only nominal: the decoder books its busy cycles itself (see decode()).
        self.port = self.add_port(
            Port(env, path, config.elements_per_cycle, config.latency_cycles, rank=RANK)
        )

    def decode(self, elements: int, metadata_bits: int) -> Hop:
        self.count("decode", elements)
        self.count("metadata_read", -(-metadata_bits // self.word_bits))
        cycles = decoder_cycles(
            elements, metadata_bits, self.elements_per_cycle, self.metadata_bits_per_cycle
        )
        return Hop(self.port, cycles)
