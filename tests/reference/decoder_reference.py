"""Cycle-stepped reference model of the decoder, one loop iteration per cycle.

It is fed the real encoded bit streams of a transaction (what :func:`sparsesim.sparse.formats.encode`
wrote, not the vectorised sizes the simulator uses): the payload elements and the metadata bits of each
stream go into two FIFOs, and every cycle the decoder takes up to ``elements_per_cycle`` elements and
``metadata_bits_per_cycle`` bits from them (fractional rates accumulate as credit). The transaction is done
when both FIFOs are empty.
"""

from __future__ import annotations


def reference_decoder_cycles(streams, elements_per_cycle, metadata_bits_per_cycle, value_bits=16):
    elements = sum(stream.payload_bits // value_bits for stream in streams)
    metadata_bits = sum(stream.metadata_bits for stream in streams)
    element_credit = bit_credit = 0.0
    cycles = 0
    while elements > 0 or metadata_bits > 0:
        cycles += 1
        element_credit += elements_per_cycle
        bit_credit += metadata_bits_per_cycle
        taken = min(elements, int(element_credit))
        elements -= taken
        element_credit -= taken
        taken = min(metadata_bits, int(bit_credit))
        metadata_bits -= taken
        bit_credit -= taken
    return cycles
