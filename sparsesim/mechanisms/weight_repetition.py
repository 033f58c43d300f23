"""Weight repetition (UCNN, Hegde et al., ISCA 2018): a lane issues one activation per cycle in the order of
an offline indirection table that groups a filter's positions by weight value; the activations of a group are
added (``activation_add``), then multiplied once by its weight (``compute``, one weight read and one
accumulation per group). Zero weights' activations are never issued. Output-sequential lanes
(:mod:`sparsesim.mechanisms.sequential`); each filter must be whole in a PE. The work and the factorised
datapath are :mod:`sparsesim.sparse.weight_repetition`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.config import ConfigBlock, MechanismConfig, block, energy_param
from sparsesim.mapping import LayerTiling
from sparsesim.mechanisms.base import DatapathOutput, Plan, TileWork
from sparsesim.mechanisms.datapath import apply_activation, im2col_bands
from sparsesim.mechanisms.sequential import OutputSequentialPe, SequentialWork

# UCNN's mechanism (sparsesim.sparse.weight_repetition) is imported where UCNN runs, not here: it imports
# scipy.sparse, which adds ~20 MB to the resident memory of every run, and only UCNN needs it.


@dataclass(frozen=True, kw_only=True)
class Energy(ConfigBlock):
    """Energy of UCNN's own action, pJ."""

    activation_add: float = energy_param(
        0.05, "pJ per addition of two activations (UCNN's weight groups; 16-bit add, Horowitz 2014)."
    )


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="weight_repetition"):
    """Activations sharing a weight value added, then one multiply per unique weight (UCNN)."""

    Energy = Energy
    energy_pj: Energy = block(Energy, "Energy of the activation additions.")


class WeightRepetition(OutputSequentialPe):
    Config = Config
    needs_whole_filters = True

    def prepare(self, plan: Plan, tiling: LayerTiling) -> SequentialWork:
        operands = plan.operands
        geometry = operands.geometry
        from sparsesim.sparse.weight_repetition import repetition_work  # see the note after the imports

        weights = operands.weights_kcrs.reshape(geometry.filters, -1).astype(np.float64)
        work = repetition_work(lambda: im2col_bands(operands.input_chw, geometry), weights)
        return SequentialWork(plan, {0: work.issued}, detail=work)

    def adjust(self, prepared, filters, windows, actions, algorithmic, cycles) -> TileWork:
        # Activations sharing a weight are added first; one multiply (and weight read) per group.
        macs = actions["compute"]  # the issued activations are the items
        multiplies = int(prepared.detail.multiplies[filters, windows].sum())
        actions.update(
            compute=multiplies,
            skipped_compute=algorithmic - multiplies,
            weight_spad_read=multiplies,  # one per group, as is the accumulation of its product
            psum_spad_update=multiplies,
            activation_add=macs - multiplies,
        )
        return TileWork(cycles, actions)

    def output(self, prepared: SequentialWork) -> DatapathOutput:
        """UCNN's datapath: per output, activations summed per unique weight, one multiply per group."""
        from sparsesim.sparse.weight_repetition import factorised_output  # see the note after the imports

        operands = prepared.plan.operands
        geometry = operands.geometry
        out = factorised_output(
            lambda: im2col_bands(operands.input_chw, geometry),
            operands.weights_kcrs.reshape(geometry.filters, -1),
            operands.bias,
        ).reshape(geometry.filters, geometry.out_height, geometry.out_width)
        return DatapathOutput(apply_activation(out, operands.activation))
