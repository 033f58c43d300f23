"""ReLU early termination (SnaPEA, Akhlaghi et al., ISCA 2018): each MAC lane walks one output's MACs in the
order fixed offline from its filter's weights (:mod:`sparsesim.sparse.early_termination`) and stops once the
output is known to be <= 0 (``mode: exact``: positive weights first, then the negative ones, stopping when
the sum is <= 0) or predicted so (``predictive``: after the ``speculative_macs`` largest-magnitude weights, if
the partial sum is <= ``threshold``; lossy, the error is reported).

Lanes work independently, each through the outputs dealt to it (its filter; windows dealt to the PE rows in
turn), one cycle per MAC performed and at least one per output, and a tile ends when its slowest lane does
(:mod:`sparsesim.mechanisms.sequential`). Each MAC reads its weight, the weight's position (metadata) and
the activation at that position. Termination needs a ReLU after the layer: a layer whose activation is
``none`` runs on the same lanes in the same order with nothing terminated (every MAC, the pre-activation
output; the summary's ``relu_follows`` says so), as SnaPEA runs the layers it cannot terminate. With
``skip_zero_activations`` the lanes also skip zero activations (as SnaPEA's do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesim.config import MechanismConfig, param
from sparsesim.mapping import LayerTiling
from sparsesim.mechanisms.base import DatapathOutput, Plan, TileWork
from sparsesim.mechanisms.datapath import im2col_bands, nonzero_products
from sparsesim.mechanisms.sequential import OutputSequentialPe, SequentialWork
from sparsesim.sparse.early_termination import early_termination


def one_lane_problems(values: Mapping[str, Any], bad_paths: set[str], prefix: str) -> list[tuple[str, str]]:
    """A lane that walks one output's sequence needs ``pe_array.pe.activation_lanes`` = 1."""
    lanes = "pe_array.pe.activation_lanes"
    if lanes in bad_paths or values[lanes] == 1:
        return []
    kind = values[prefix + "kind"]
    return [(lanes, f"must be 1 for {kind} (a MAC lane walks one output's sequence), got {values[lanes]}")]


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="relu_early_termination"):
    """ReLU early termination (SnaPEA): stop an output's MACs once it is known (or predicted) to be <= 0."""

    mode: str = param(
        "exact",
        "exact = weights ordered by sign, stop once the output is known to be <= 0; predictive = also stop "
        "after the speculative MACs if the sum <= the threshold (lossy).",
        choices=("exact", "predictive"),
    )
    skip_zero_activations: bool = param(False, "Whether the lanes also skip zero activations.")
    speculative_macs: int = param(
        16, "Predictive mode: MACs of the largest-magnitude weights done first.", ge=0, le=2**20
    )
    threshold: float = param(0.0, "Predictive mode: predict a negative output if the partial sum is <= this.")

    @classmethod
    def cross_field_problems(cls, values, bad_paths, prefix):
        return one_lane_problems(values, bad_paths, prefix)


@dataclass(frozen=True)
class Terminated:
    """The layer's terminations and, per output, the MACs it would perform without them."""

    result: Any
    unterminated_macs: np.ndarray


class ReluEarlyTermination(OutputSequentialPe):
    Config = Config
    needs_whole_filters = True

    def prepare(self, plan: Plan, tiling: LayerTiling) -> SequentialWork:
        operands = plan.operands
        geometry = operands.geometry
        weights = operands.weights_kcrs.reshape(geometry.filters, -1).astype(np.float64)
        skip = self.config.skip_zero_activations
        result = early_termination(
            lambda: im2col_bands(operands.input_chw, geometry),
            weights,
            operands.bias.astype(np.float64),
            mode=self.config.mode,
            n_speculative=self.config.speculative_macs,
            threshold=self.config.threshold,
            skip_zero_activations=skip,
            relu=operands.relu,
        )
        # MACs each output would perform without termination: its nonzero weights (times nonzero activations
        # when zeros are skipped).
        unterminated = nonzero_products(operands.input_chw, geometry, weights, skip)
        return SequentialWork(plan, {0: result.macs_performed}, detail=Terminated(result, unterminated))

    def adjust(self, prepared, filters, windows, actions, algorithmic, cycles) -> TileWork:
        saved = int(prepared.detail.unterminated_macs[filters, windows].sum()) - actions["compute"]
        return TileWork(cycles, actions, early_terminated_macs=saved)

    def output(self, prepared: SequentialWork) -> DatapathOutput:
        return termination_output(prepared.plan, prepared.detail.result)

    def summary(self, prepared: SequentialWork, array) -> dict:
        return termination_summary(prepared.detail.result)

    @classmethod
    def summary_table(cls, layers: list[dict]):
        return termination_table(layers)


def termination_output(plan: Plan, result) -> DatapathOutput:
    """The terminated outputs as the lanes left them, and the mispredicted ones (expected 0)."""
    geometry = plan.operands.geometry
    shape = (geometry.filters, geometry.out_height, geometry.out_width)
    return DatapathOutput(result.output.reshape(shape), result.mispredicted.reshape(shape))


def termination_summary(termination) -> dict:
    """Outputs stopped early, and how many of them a predictive termination got wrong. ``sound`` False:
    terminating was unsafe (negative operands); ``relu_follows`` False: the layer has no ReLU, so there was
    nothing to terminate (every MAC performed)."""
    outputs = termination.terminated.size
    terminated = int(termination.terminated.sum())
    mispredicted = int(termination.mispredicted.sum())
    return {
        "sound": bool(termination.sound),
        "relu_follows": bool(termination.relu),
        "outputs": outputs,
        "terminated_outputs": terminated,
        "mispredicted_outputs": mispredicted,
        "misprediction_rate": float(mispredicted) / terminated if terminated else None,
    }


def termination_table(layers: list[dict]):
    rows = []
    for entry in layers:
        summary = entry["mechanism"]["summary"]
        rows.append(
            [
                entry["name"],
                f"{summary['terminated_outputs'] / summary['outputs'] * 100:.1f}%",
                f"{entry['computes']['early_terminated']:,}",
                f"{summary['mispredicted_outputs']:,}",
                "yes" if summary["sound"] else "no (negative inputs)",
            ]
        )
    return (
        "ReLU early termination (outputs stopped once known, or predicted, to be <= 0; MSB-first: outputs "
        "whose LSB pass was skipped, and the LSB passes saved)",
        ["layer", "terminated", "MACs saved", "mispredicted", "exact rule sound"],
        rows,
    )
