"""Bit-serial effectual terms (Pragmatic, Albericio et al., MICRO 2017): each activation lane spends one
cycle per nonzero canonical-signed-digit term of each 16-bit fixed-point activation it processes (at least
one cycle per window), the busiest lane setting each window's pace; MACs with a zero activation are skipped.

The broadcast PEs of :mod:`sparsesim.mechanisms.dense`. The activations are rounded to 16-bit fixed point
(one power-of-two scale per layer) before they are stored: lossy below the last bit, and the functional
check reports that error. :mod:`sparsesim.mechanisms.spatial_deltas` (Diffy) is the same engine on deltas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sparsesim.config import MechanismConfig
from sparsesim.mapping import LayerTiling
from sparsesim.mechanisms.base import Plan
from sparsesim.mechanisms.dense import BroadcastPe, BroadcastWork
from sparsesim.sparse.activation_work import lane_boundaries
from sparsesim.sparse.deltas import from_fixed_point, to_fixed_point, window_terms

#: Word length of the bit-serial engines' fixed-point activations.
TERM_WORD_BITS = 16


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="effectual_terms"):
    """Bit-serial PEs: one cycle per nonzero signed digit of each 16-bit activation (Pragmatic)."""


class EffectualTerms(BroadcastPe):
    Config = Config
    skips = True
    #: What a lane's terms are counted on: the activations (``raw``) or their deltas (``delta``).
    terms_of: ClassVar[str] = "raw"

    def machine_input(self, activations: np.ndarray) -> np.ndarray:
        ints, frac_bits = to_fixed_point(activations, bits=TERM_WORD_BITS)
        return from_fixed_point(ints, frac_bits).astype(np.float32)

    def prepare(self, plan: Plan, tiling: LayerTiling) -> BroadcastWork:
        """Per channel block: each window's cycles (the busiest lane's effectual terms) and its nonzero
        operands (values, or deltas from the previous window of the row), from the 16-bit activations."""
        geometry = plan.operands.geometry
        ints, _ = to_fixed_point(plan.operands.input_chw, bits=TERM_WORD_BITS)
        shape = (geometry.kernel_r, geometry.kernel_s, geometry.stride, geometry.padding)
        block_cycles, block_nonzeros = {}, {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            bounds = start + lane_boundaries(stop - start, self.activation_lanes)
            lane_terms = np.stack(
                [
                    window_terms(ints[lo:hi], *shape, mode=self.terms_of)
                    if hi > lo
                    else np.zeros(geometry.out_height * geometry.out_width, dtype=np.int64)
                    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
                ]
            )
            block_cycles[start] = np.maximum(lane_terms.max(axis=0), 1)
            block_nonzeros[start] = window_terms(
                ints[start:stop], *shape, mode=self.terms_of, encoding="nonzero"
            )
        return BroadcastWork(plan, block_cycles, block_nonzeros)
