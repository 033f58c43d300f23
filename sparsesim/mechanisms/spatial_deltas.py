"""Spatial deltas (Diffy, Mahmoud et al., MICRO 2018): the bit-serial engine of
:mod:`sparsesim.mechanisms.effectual_terms` working on the differences between each window's activations and
the previous window's of the same output row, whose terms are fewer on smooth images.

The datapath computes each row's first output directly, then ``y(x) = y(x - 1) + conv(deltas)``
(:func:`sparsesim.sparse.deltas.delta_outputs`), on the 16-bit fixed-point activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.config import MechanismConfig
from sparsesim.mechanisms.base import DatapathOutput
from sparsesim.mechanisms.datapath import apply_activation
from sparsesim.mechanisms.dense import BroadcastWork
from sparsesim.mechanisms.effectual_terms import TERM_WORD_BITS, EffectualTerms
from sparsesim.sparse.deltas import delta_outputs, to_fixed_point


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="effectual_terms_deltas"):
    """Bit-serial PEs on spatial deltas: one cycle per nonzero signed digit of each delta (Diffy)."""


class SpatialDeltas(EffectualTerms):
    Config = Config
    terms_of = "delta"

    def output(self, prepared: BroadcastWork) -> DatapathOutput:
        operands = prepared.plan.operands
        geometry = operands.geometry
        ints, frac_bits = to_fixed_point(operands.input_chw, bits=TERM_WORD_BITS)
        weights = operands.weights_kcrs.reshape(
            geometry.filters, geometry.channels, geometry.kernel_r, geometry.kernel_s
        )
        out = delta_outputs(ints, weights, geometry.stride, geometry.padding, frac_bits)
        out = out + operands.bias.astype(np.float64)[:, None, None]
        return DatapathOutput(apply_activation(out, operands.activation))
