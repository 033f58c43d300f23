"""Kernel patterns (PatDNN, Niu et al., ASPLOS 2020; PCONV, Ma et al., AAAI 2020), run on an accelerator PE.

A lane walks its output's *connected* kernels (channel ``c`` of its filter, in the channel block), reads one
pattern id per kernel (``input_spad_metadata_read``) and issues the pattern's ``entries`` MACs, whatever the
weights at those positions; removed kernels cost nothing, and ``activation_lanes`` MACs issue per cycle as in
the other output-sequential modes (:mod:`sparsesim.mechanisms.sequential`). The filters are dealt to the
lanes in PatDNN's reordered sequence (most connected kernels first,
:func:`sparsesim.sparse.patterns.filter_order`), so that the filters of a tile carry similar work. A layer
whose stored weights follow no pattern library of the PE's size
(:func:`sparsesim.sparse.patterns.layer_patterns`: a kernel with more nonzero weights than the entries, or
too many distinct patterns; e.g. the shipped dense trace) runs dense: every kernel, all ``R*S`` MACs, no
metadata. Metadata stored (the report's summary): one
connectivity bit per kernel, one pattern id per connected kernel, the table; the DRAM and buffer traffic
still follow ``formats`` (the pattern storage is not a format of :mod:`sparsesim.sparse.formats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.config import MechanismConfig, param
from sparsesim.mapping import LayerTiling
from sparsesim.mechanisms.base import Plan
from sparsesim.mechanisms.sequential import OutputSequentialPe, SequentialWork
from sparsesim.sparse.patterns import filter_order, layer_patterns, pattern_metadata_bits


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="kernel_patterns"):
    """Each connected kernel issues its pattern's MACs, one pattern id read per kernel (PatDNN/PCONV)."""

    entries: int = param(
        4,
        "MACs issued per connected kernel (positions of every pattern; PatDNN keeps 4 of 3x3).",
        ge=1,
        le=1024,
    )
    library_size: int = param(
        8,
        "Patterns the PE's table holds (pattern id = ceil(log2) bits); a layer needing more, or with a "
        "kernel of more nonzero weights than the entries, runs dense.",
        ge=1,
        le=2**16,
    )


class KernelPatterns(OutputSequentialPe):
    Config = Config

    def prepare(self, plan: Plan, tiling: LayerTiling) -> SequentialWork:
        """Per channel block, each filter's MACs = entries x its connected kernels (the same for every
        window), the filters in PatDNN's reordered sequence; dense if the layer follows no library."""
        operands = plan.operands
        geometry = operands.geometry
        weights = operands.weights_kcrs
        n_windows = geometry.out_height * geometry.out_width
        patterns = layer_patterns(weights, self.config.entries, self.config.library_size)
        if patterns is None:  # dense fallback: every kernel, every position, no pattern id
            per_kernel = geometry.kernel_positions
            connected = np.ones(weights.shape[:2], dtype=bool)
            order = np.arange(geometry.filters)
            per_read = 0  # none read
        else:
            per_kernel = patterns.entries
            connected = patterns.connected
            order = filter_order(patterns)
            per_read = per_kernel  # one id per kernel walked
        items = {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            per_filter = connected[order, start:stop].sum(axis=1).astype(np.int64) * per_kernel
            items[start] = np.repeat(per_filter[:, None], n_windows, axis=1)
        return SequentialWork(plan, items, macs_per_metadata_read=per_read, detail=patterns)

    def summary(self, prepared: SequentialWork, array) -> dict:
        """Whether the layer ran on patterns, its library and metadata bits."""
        patterns = prepared.detail
        if patterns is None:
            return {"used": False, "reason": "weights follow no pattern library of the PE's size: ran dense"}
        return {
            "used": True,
            "library_size": len(patterns.library),
            "entries": patterns.entries,
            "kernels": int(patterns.pattern_ids.size),
            "connected_kernels": int(patterns.connected.sum()),
            "metadata_bits": pattern_metadata_bits(patterns),
        }

    @classmethod
    def summary_table(cls, layers: list[dict]) -> tuple[str, list[str], list[list[str]]]:
        rows = []
        for entry in layers:
            summary = entry["mechanism"]["summary"]
            if not summary["used"]:
                rows.append([entry["name"], "no (dense)", "-", "-", "-"])
                continue
            kept_weights = max(1, summary["entries"] * summary["connected_kernels"])
            rows.append(
                [
                    entry["name"],
                    f"{summary['library_size']} x {summary['entries']}",
                    f"{summary['connected_kernels']:,} / {summary['kernels']:,}",
                    f"{summary['metadata_bits']['total']:,}",
                    f"{summary['metadata_bits']['total'] / kept_weights:.2f}",
                ]
            )
        return (
            "kernel patterns (PatDNN: one pattern id per connected kernel; else the layer ran dense)",
            ["layer", "patterns x entries", "connected kernels", "metadata bits", "bits per kept weight"],
            rows,
        )
