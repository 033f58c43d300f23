"""Residency across layers: the network's weights kept in the PEs' weight scratchpads, and a layer's output
kept in the global buffer as the next layer's input.

A machine whose weight scratchpads are large enough holds every layer's weights at once (DaDianNao's
synapse buffers: 2 MiB eDRAM per tile, 32 MiB in all, "all synapses on chip"). Its weights are then loaded
once, before the first inference, and stay: a layer fetches none from DRAM, and none pass through the
global buffer or over the NoC. The report counts that one-time load apart from the layers' cycles.

The test: each PE holds, for every layer, its ``filter_lanes`` filters of every filter group (the PEs of a
column share the filters, the rows replicate them), uncompressed, each kernel as the mechanism holds it
(:meth:`~sparsesim.mechanisms.Mechanism.held_kernel_words`); the layers simulated together must fit in
``pe_array.pe.weight_spad_bytes``. Compressed weight formats in the PEs are not credited (conservative).
Ignored: the one-time load's cycles; weights kept in the global buffer (it holds the activations).

**Activations.** When a layer's input is the previous layer's output (the same tensor: no pooling or other
operation between them), the output can stay in the global buffer instead of going to DRAM and coming back.
It stays when the mappings chosen for the two layers leave room for it: each layer is mapped as if nothing
stayed (so keeping a tensor never costs a layer a worse mapping), and the tensor, at its real size in the
buffer's format, is kept if it fits beside both layers' two buffer tiles (and beside the first layer's own
resident input). The two layers then run their mappings again without moving it through DRAM. Otherwise it
spills, and the report counts the spill (written by one layer, read back by the next). Ignored: a tensor
kept across more than one layer (a skip connection), and an operation between layers done in the buffer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class WeightResidency:
    """Whether the layers' weights stay in the PEs, and the words one PE needs and holds."""

    resident: bool
    words_per_pe: int  # every layer's weights one PE holds, uncompressed
    spad_words: int  # what its weight scratchpad holds
    bytes_loaded: int  # the whole network's weights, loaded once when resident (else 0)

    def as_dict(self) -> dict:
        return {
            "weights_in_pes": self.resident,
            "words_per_pe": self.words_per_pe,
            "weight_spad_words": self.spad_words,
            "bytes_loaded_once": self.bytes_loaded,
        }


def weight_residency(hw, mechanism, weight_shapes: Iterable[tuple[int, ...]]) -> WeightResidency:
    """Whether the weights of the layers of ``weight_shapes`` (``(K, C, R, S)``, or ``(K, C)`` for a
    linear layer) all fit in ``hw``'s PEs at once (see the module docstring), on an output-stationary
    machine: a planar-tiled one (SCNN) streams its weights by design, and a row-stationary one holds a
    filter row per pair of its set for the tile at hand only (see :mod:`sparsesim.sparse.row_stationary`):
    never resident."""
    pe = hw.pe_array.pe
    lanes = hw.pe_array.columns * pe.filter_lanes
    spad_words = pe.weight_spad_bytes // hw.word_bytes
    words = total = 0
    for shape in weight_shapes:
        filters, channels, *kernel = shape
        kernel_words = mechanism.held_kernel_words(tuple(kernel) or (1, 1))
        words += -(-filters // lanes) * pe.filter_lanes * channels * kernel_words
        total += filters * channels * kernel_words
    resident = hw.pe_array.dataflows == ("output_stationary",) and words <= spad_words
    return WeightResidency(resident, words, spad_words, total * hw.word_bytes if resident else 0)


@dataclass(frozen=True)
class ActivationResidency:
    """One layer's activations kept in the global buffer across layers, and the room they take there."""

    inputs: bool = False  # the previous layer left this layer's input in the buffer
    outputs: bool = False  # this layer leaves its output in the buffer for the next one
    resident_bytes: int = 0  # what the kept tensors occupy in the buffer while this layer runs

    @property
    def tensors(self) -> frozenset[str]:
        """The tensors resident for the whole layer (by the loop nest's names)."""
        return frozenset({"Inputs"} if self.inputs else ()) | frozenset({"Outputs"} if self.outputs else ())
