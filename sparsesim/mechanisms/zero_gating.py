"""Zero gating (Eyeriss): a zero input activation gates the MAC and its weight read: energy saved, the cycle
spent. The broadcast PEs of :mod:`sparsesim.mechanisms.dense`, with ``gated_compute`` for each gated MAC."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.config import MechanismConfig
from sparsesim.mechanisms.dense import BroadcastPe


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="zero_gating"):
    """Zero operands save energy, not cycles: the MAC and the weight read are gated (Eyeriss)."""

    # Windows over the PE rows, or a 1-D convolution per PE (Eyeriss): see sparsesim.sparse.row_stationary.
    DATAFLOWS = ("output_stationary", "row_stationary")


class ZeroGating(BroadcastPe):
    Config = Config
    pace = "zero_gating"
    gates = True
