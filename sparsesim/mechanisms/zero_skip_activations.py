"""Zero-activation skipping (Cnvlutin, Albericio et al., ISCA 2016): each activation lane walks its own slice
of the channel block through zero-free activations, one lane-cycle per nonzero operand, the busiest lane
setting each window's pace; each nonzero activation is read with its offset (``input_spad_metadata_read``).
The broadcast PEs of :mod:`sparsesim.mechanisms.dense`."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.config import MechanismConfig
from sparsesim.mechanisms.dense import BroadcastPe


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="zero_skip_activations"):
    """Zero activations skipped: lanes decoupled, one cycle per nonzero operand (Cnvlutin)."""


class ZeroSkipActivations(BroadcastPe):
    Config = Config
    pace = "zero_skip_activations"
    skips = True
