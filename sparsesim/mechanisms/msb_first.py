"""MSB-first prediction (PredictiveNet, Lin et al., ISCAS 2017; :mod:`sparsesim.sparse.msb_first`).

Each lane's 16 x 16-bit multiplier is split into its two halves: an ``msb_bits`` x 16-bit unit for the
activations' top bits and a ``(16 - msb_bits)`` x 16-bit unit for the rest (together they are one full
multiplier; a dense lane would use them as one). Each lane walks its outputs as the output-sequential lanes
do (:mod:`sparsesim.mechanisms.sequential`), in index order (no reordering, so no offset is read): the MSB
unit performs one output's MSB pass, one MAC per cycle and at least one cycle per output, then moves to the
next output while the LSB unit performs the LSB pass of the output just decided positive, from the next cycle
on. The two passes of one output have the same MACs, so the LSB unit never falls more than one output behind:
a lane takes the cycles of its MSB passes plus the LSB pass of its last output, and skipping an LSB pass
saves its energy, not its time (the MSB unit sets the pace). That last LSB pass is not overlapped with the
next tile (a tile ends when its slowest lane does): it costs most where lanes get few outputs per tile.

``decision: predictive`` skips the LSB pass if the MSB sum (bias included) is <= ``threshold`` (lossy);
``exact`` unless a bound on the low bits proves the output <= 0 (lossless). A layer without ReLU (activation
``none``) has no output to predict: every LSB pass is performed. ``msb_compute`` and ``lsb_compute`` count
the two kinds of MAC (``compute`` stays 0); each pass reads its weight and activation words from the
scratchpads (reading half an activation word is not modelled) and updates the partial sum once per cycle.
Vocabulary: every MAC issued is an *actual* compute (its MSB pass occupies the lane for a cycle); those whose
LSB pass was skipped are *early-terminated*. The activations are 16-bit fixed point (one power-of-two scale
per layer): lossy below the last bit, and the functional check measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.config import ConfigBlock, MechanismConfig, block, energy_param, param
from sparsesim.mapping import LayerTiling, Tile
from sparsesim.mechanisms.base import DatapathOutput, Plan, TileWork
from sparsesim.mechanisms.datapath import im2col_bands, two_unit_lane_cycles
from sparsesim.mechanisms.relu_early_termination import (
    one_lane_problems,
    termination_output,
    termination_summary,
    termination_table,
)
from sparsesim.mechanisms.sequential import OutputSequentialPe, SequentialWork
from sparsesim.sparse.deltas import from_fixed_point, to_fixed_point
from sparsesim.sparse.msb_first import msb_first

#: Word length of the MSB-first lanes' fixed-point activations.
MSB_FIRST_WORD_BITS = 16


@dataclass(frozen=True, kw_only=True)
class Energy(ConfigBlock):
    """Energy of the two half-width MACs, pJ."""

    msb_compute: float = energy_param(
        0.55,
        "pJ per MSB-pass MAC (assumed, for msb_bits = 8: an 8 x 16-bit multiply, about half of a 16 x 16 one "
        "(energy scales with the product of the widths), plus a full-width add).",
    )
    lsb_compute: float = energy_param(
        0.55, "pJ per LSB-pass MAC (assumed, for msb_bits = 8: as msb_compute)."
    )


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="msb_first"):
    """MSB first (PredictiveNet): a pass on the activations' top bits, the low bits only if the output may
    be positive."""

    decision: str = param(
        "predictive",
        "predictive = skip the low-bits pass if the MSB sum > threshold fails (lossy); exact = skip it only "
        "when a bound on the low bits proves the output <= 0 (lossless).",
        choices=("predictive", "exact"),
    )
    skip_zero_activations: bool = param(False, "Whether the lanes also skip zero activations.")
    msb_bits: int = param(
        8,
        "Top bits of each 16-bit fixed-point activation (sign bit included) in the first pass; the other "
        "16 - msb_bits in the second (one bit at least for the LSB pass).",
        ge=1,
        le=15,
    )
    threshold: float = param(
        0.0,
        "Predictive decision: skip the low-bits pass (output 0) if the MSB pass's sum (bias included) is <= "
        "this.",
    )
    Energy = Energy
    energy_pj: Energy = block(Energy, "Energy of the MSB and LSB passes' MACs.")

    @classmethod
    def cross_field_problems(cls, values, bad_paths, prefix):
        return one_lane_problems(values, bad_paths, prefix)


class MsbFirst(OutputSequentialPe):
    Config = Config
    needs_whole_filters = True
    # Every MAC issued has its MSB pass (compute stays 0).
    charged_actions = ("compute", "msb_compute")

    def machine_input(self, activations: np.ndarray) -> np.ndarray:
        ints, frac_bits = to_fixed_point(activations, bits=MSB_FIRST_WORD_BITS)
        return from_fixed_point(ints, frac_bits).astype(np.float32)

    def prepare(self, plan: Plan, tiling: LayerTiling) -> SequentialWork:
        operands = plan.operands
        geometry = operands.geometry
        # The activations reach the PE as 16-bit fixed point (machine_input already rounded them: this
        # recovers the same integers and scale).
        ints, frac_bits = to_fixed_point(operands.input_chw, bits=MSB_FIRST_WORD_BITS)
        result = msb_first(
            lambda: im2col_bands(ints, geometry),
            operands.weights_kcrs.reshape(geometry.filters, -1).astype(np.float64),
            operands.bias.astype(np.float64),
            frac_bits=frac_bits,
            msb_bits=self.config.msb_bits,
            bits=MSB_FIRST_WORD_BITS,
            decision=self.config.decision,
            threshold=self.config.threshold,
            skip_zero_activations=self.config.skip_zero_activations,
            relu=operands.relu,
        )
        return SequentialWork(plan, {0: result.msb_macs}, detail=result)

    def tile_work(self, prepared: SequentialWork, tile: Tile) -> TileWork:
        """A tile on MSB-first lanes (an MSB unit and an LSB unit per lane)."""
        result = prepared.detail
        geometry = prepared.plan.operands.geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        filters = slice(tile.filter_start, tile.filter_stop)
        msb = result.msb_macs[filters, windows]
        lsb = result.lsb_macs[filters, windows]
        msb_cycles = np.maximum(msb, 1)  # at least the cycle that hands the output on
        cycles = two_unit_lane_cycles(msb_cycles, lsb, self.rows)
        msb_macs, lsb_macs = int(msb.sum()), int(lsb.sum())
        n_filters, n_windows = msb.shape
        algorithmic = (
            n_filters * n_windows * (tile.channel_stop - tile.channel_start) * geometry.kernel_positions
        )
        actions = {
            "compute": 0,
            "msb_compute": msb_macs,
            "lsb_compute": lsb_macs,
            "gated_compute": 0,
            "skipped_compute": algorithmic - msb_macs,
            "input_spad_read": msb_macs + lsb_macs,
            "input_spad_metadata_read": 0,
            "weight_spad_read": msb_macs + lsb_macs,
            "psum_spad_update": int(msb_cycles.sum()) + lsb_macs,
        }
        return TileWork(cycles, actions, early_terminated_macs=msb_macs - lsb_macs)

    def output(self, prepared: SequentialWork) -> DatapathOutput:
        return termination_output(prepared.plan, prepared.detail)

    def summary(self, prepared: SequentialWork, array) -> dict:
        return termination_summary(prepared.detail)

    @classmethod
    def summary_table(cls, layers: list[dict]):
        return termination_table(layers)
