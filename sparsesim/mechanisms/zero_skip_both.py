"""Both-operand skipping (SparTen, Gondimalla et al., MICRO 2019): each lane issues only the pairs of a
nonzero weight and a nonzero activation of its output (an inner join of the two bitmasks),
``activation_lanes`` pairs per cycle. The output-sequential lanes of
:mod:`sparsesim.mechanisms.zero_skip_weights`."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.config import MechanismConfig
from sparsesim.mechanisms.zero_skip_weights import ZeroSkipWeights


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="zero_skip_both"):
    """Only pairs of nonzero weight and nonzero activation issued (SparTen)."""


class ZeroSkipBoth(ZeroSkipWeights):
    Config = Config
    skip_zero_activations = True
