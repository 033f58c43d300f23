"""The PE array: ``rows x columns`` PEs, each with activation lanes x filter lanes of MACs.

Modelled (see :mod:`sparsesim.mapping.tiling` for who works on what):

- Each PE multiplies every input activation it receives by ``filter_lanes`` weights per cycle, one per
  filter it owns, and takes up to ``activation_lanes`` activations per cycle, one per lane, each lane from its
  own slice of the channel block. The PE columns share each activation (it is multicast); the PE rows work on
  consecutive windows in lockstep.
- The cycles of a tile are computed exactly from the real activations of the tile by
  :mod:`sparsesim.sparse.activation_work`: dense and gated PEs spend one lane-cycle per operand; zero-skipping
  PEs (Cnvlutin) one per nonzero operand, the busiest lane setting each window's pace.
- The output values are computed from the operands the machine uses, by each mode's own datapath (see
  :func:`datapath_output`: products a PE skips or gates are exact zeros), then bias and activation
  function. The simulator checks them against numpy's reference.

With ReLU early termination (SnaPEA, ``pe_array.pe.early_termination``) each MAC lane instead walks one
output's MACs in the order fixed offline from its filter's weights (:mod:`sparsesim.sparse.early_termination`)
and stops once the output is known to be <= 0 (or predicted so); lanes work independently, each through the
outputs dealt to it (its filter; windows dealt to the PE rows in turn), one cycle per MAC performed and at
least one per output, and a tile ends when its slowest lane does. Each MAC reads its weight, the weight's
position (metadata) and the activation at that position. Termination needs a ReLU after the layer: a layer
whose activation is ``none`` runs on the same lanes in the same order with nothing terminated (every MAC,
the pre-activation output; the report's ``early_termination.relu_follows`` says so), as SnaPEA runs the
layers it cannot terminate.

MSB-first prediction (PredictiveNet, ``early_termination: msb_first | msb_first_exact``,
:mod:`sparsesim.sparse.msb_first`) splits each lane's 16 x 16-bit multiplier into its two halves: an
``msb_bits`` x 16-bit unit for the activations' top bits and a ``(16 - msb_bits)`` x 16-bit unit for the
rest (together they are one full multiplier; a dense lane would use them as one). Each lane walks its
outputs as above, in index order (no reordering, so no offset is read): the MSB unit performs one output's
MSB pass, one MAC per cycle and at least one cycle per output, then moves to the next output while the LSB
unit performs the LSB pass of the output just decided positive, from the next cycle on. The two passes of
one output have the same MACs, so the LSB unit never falls more than one output behind: a lane takes the
cycles of its MSB passes plus the LSB pass of its last output, and skipping an LSB pass saves its energy, not
its time (the MSB unit sets the pace). That last LSB pass is not overlapped with the next tile (a tile ends
when its slowest lane does): it costs most where lanes get few outputs per tile. A layer without ReLU
(activation ``none``) has no output to predict: every LSB pass is performed. ``msb_compute`` and
``lsb_compute`` count the two kinds of MAC; each pass reads its weight and activation words from the
scratchpads (reading half an activation word is not modelled) and updates the partial sum once per cycle.
Vocabulary: every MAC issued is an *actual* compute (its MSB pass occupies the lane for a cycle); those whose
LSB pass was skipped are *early-terminated* (for SnaPEA they are skipped instead).

Output-sequential modes: with zero-weight skipping (Cambricon-X: a PE holds its filter's nonzero weights and
fetches only the activations they need) or both-operand skipping (SparTen: an inner join of the two
nonzero masks), each filter lane likewise walks its outputs on its own, ``activation_lanes`` work items per
cycle (``ceil(items / activation_lanes)`` cycles per output, at least one): the items are the output's
nonzero weights in the channel block, or its pairs of nonzero weight and nonzero activation.

SIMD-vector weight skipping (``zero_skip_weight_vectors``, the machine Scalpel prunes for) issues the
weights of a filter ``activation_lanes`` consecutive input channels at a time and skips only the vectors
that are all zero: unstructured zeros rarely empty a whole vector, SIMD-aligned block pruning does.
Weight repetition (``weight_repetition``, UCNN) issues one activation per cycle in the order of an offline
indirection table that groups a filter's positions by weight value: the activations of a group are added,
then multiplied once by its weight (:mod:`sparsesim.sparse.weight_repetition`).

Kernel patterns (``kernel_patterns``, PatDNN/PCONV's pattern-based pruning run on an accelerator PE): a
lane walks its output's *connected* kernels (channel ``c`` of its filter, in the channel block), reads one
pattern id per kernel (metadata) and issues the pattern's ``kernel_pattern_entries`` MACs, whatever the
weights at those positions; removed kernels cost nothing, and ``activation_lanes`` MACs issue per cycle as
in the other output-sequential modes. The filters are dealt to the lanes in PatDNN's reordered sequence
(most connected kernels first, :func:`sparsesim.sparse.patterns.filter_order`), so that the filters of a
tile carry similar work. A layer whose stored weights follow no pattern library of the PE's size
(:func:`sparsesim.sparse.patterns.layer_patterns`: a kernel with more nonzero weights than the entries, or
too many distinct patterns; e.g. the shipped dense trace) runs dense: every kernel, all ``R*S`` MACs, no
metadata. Metadata stored (see ``kernel_pattern_summary``): one connectivity bit per kernel, one pattern id
per connected kernel, the table; the DRAM and buffer traffic still follow ``formats`` (the pattern storage
is not a format of :mod:`sparsesim.sparse.formats`).

N:M structured sparsity (``n_m_weights``, a sparse tensor core) keeps the broadcast lanes: each lane owns
whole groups of M channels and issues N slots per group, when the layer's weights follow the pattern (else
the layer runs dense). Bit-serial PEs (``effectual_terms``, Pragmatic; ``effectual_terms_deltas``, Diffy)
spend one lane-cycle per canonical-signed-digit term of each 16-bit fixed-point operand, or of its
difference from the previous window's operand (:mod:`sparsesim.sparse.deltas`).

Mixture of experts (``mixture_of_experts``, MoEfication; :mod:`sparsesim.mapping.experts`) is
output-sequential too: each filter lane walks only the windows routed to its filter's expert (``ceil(C*R*S /
activation_lanes)`` cycles per routed output, no cycle for the others; the lane reads one routing-mask entry
per window). The router runs first, on the same lanes, in the tiles of the first filter group: its ``E`` mean
filters are dealt to the filter lanes, each scoring every window of the tile like a dense output; the experts'
work waits for it (the selection gates it), so a tile of the first filter group takes router + expert cycles.

Ignored: the pipeline fill of the MAC/adder tree, and the scratchpads' own bandwidth (one read per operand
per cycle is assumed to be available).

Actions (one per word or per MAC, summed over all PEs):
``compute`` MAC performed and charged; ``gated_compute`` MAC whose cycle is spent with its datapath gated
(zero activation); ``skipped_compute`` MAC never issued; ``input_spad_read`` activation read by a PE;
``input_spad_metadata_read`` offset read with a zero-free activation (or with a weight; kernel patterns: one
pattern id per kernel walked); ``weight_spad_read`` weight read for a
charged MAC (gating also skips the weight read, as Eyeriss does); ``psum_spad_update`` one accumulation per
filter lane per cycle of a window; ``activation_add`` one addition of two activations (UCNN's groups);
``router_compute`` one MAC of a mixture-of-experts router (not an algorithmic compute of the layer; its
operand reads are counted with the others);
``msb_compute`` / ``lsb_compute`` one reduced-precision MAC of the MSB / LSB pass (MSB-first modes, where
``compute`` stays 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sparsesim.config import MSB_FIRST_MODES
from sparsesim.core import Component
from sparsesim.errors import SimulationError
from sparsesim.mapping import ConvGeometry, LayerTiling, Tile
from sparsesim.mapping.experts import ExpertMapping
from sparsesim.sparse.activation_work import (
    lane_boundaries,
    lockstep_cycles,
    window_cycles,
    window_nonzero_counts,
)
from sparsesim.sparse.deltas import delta_outputs, to_fixed_point, window_terms
from sparsesim.sparse.early_termination import TerminationResult, early_termination
from sparsesim.sparse.msb_first import MsbFirstResult, msb_first
from sparsesim.sparse.patterns import (
    KernelPatterns,
    filter_order,
    layer_patterns,
    pattern_metadata_bits,
)
from sparsesim.sparse.structured import conforms_n_m, n_m_window_cycles, parse_n_m
from sparsesim.workload.trace import ACTIVATIONS

# UCNN's mechanism (sparsesim.sparse.weight_repetition) is imported where UCNN runs, not here: it imports
# scipy.sparse, which adds ~20 MB to the resident memory of every run, and only UCNN needs it.

SKIPPING_MODES = ("zero_skip_activations",)
# Operand values (float64) of one band of the datapath's column matrix: 2 Mi values, 16 MiB. With one BLAS
# thread, or on an idle machine, 1 Mi-value bands already run as fast as one whole-layer product; with
# multi-threaded BLAS (numpy's default, so the CLI's) on a busy machine each call also waits for its threads
# to be scheduled, and fewer, larger calls keep that wait near numpy's own (the VGG16 convolutions with both
# cores loaded: 1.5x numpy's time at 1 Mi values, 1.05x at 2 Mi, 0.86x at 4 Mi, for 8 MiB more per doubling).
DATAPATH_BAND_VALUES = 2 * 1024 * 1024
# Operand values (float64) of one band of im2col_bands: the mechanisms that take them work through a band a
# chunk of windows at a time, so a band need not be large, and each converts it (4 MiB) again.
MECHANISM_BAND_VALUES = 512 * 1024
# Bit-serial modes: an activation lane spends one cycle per effectual term (nonzero signed digit).
TERM_MODES = ("effectual_terms", "effectual_terms_deltas")
# Modes where each MAC lane walks whole outputs on its own instead of sharing broadcast activations.
OUTPUT_SEQUENTIAL_MODES = (
    "zero_skip_weights",
    "zero_skip_both",
    "zero_skip_weight_vectors",
    "weight_repetition",
    "kernel_patterns",
)
#: Word length of the MSB-first modes' fixed-point activations.
MSB_FIRST_WORD_BITS = 16


@dataclass(frozen=True)
class TileWork:
    """What one tile costs the PE array."""

    cycles: int
    actions: dict[str, int]


class PeArray(Component):
    ACTIONS = (
        "compute",
        "gated_compute",
        "skipped_compute",
        "input_spad_read",
        "input_spad_metadata_read",
        "weight_spad_read",
        "psum_spad_update",
        "activation_add",
        "router_compute",
        "msb_compute",
        "lsb_compute",
    )

    def __init__(self, config, path: str = "pe_array"):
        super().__init__(path)
        self.rows = config.rows
        self.columns = config.columns
        self.activation_lanes = config.pe.activation_lanes
        self.filter_lanes = config.pe.filter_lanes
        self.sparsity = config.pe.sparsity
        self.early_termination = config.pe.early_termination
        self.n_m = parse_n_m(config.pe.n_m_pattern)
        self.n_m_used = False
        self.pattern_entries = config.pe.kernel_pattern_entries
        self.pattern_library_size = config.pe.kernel_pattern_library_size
        self.patterns: KernelPatterns | None = None
        self._macs_per_metadata_read = 1
        self.speculative_macs = config.pe.speculative_macs
        self.speculation_threshold = config.pe.speculation_threshold
        self.msb_bits = config.pe.msb_bits
        self.msb_threshold = config.pe.msb_threshold
        self.termination: TerminationResult | MsbFirstResult | None = None
        self.early_terminated_macs = 0
        self.busy_cycles = 0
        self.stall_cycles = 0

    @property
    def mac_lanes(self) -> int:
        return self.rows * self.columns * self.activation_lanes * self.filter_lanes

    @property
    def output_sequential(self) -> bool:
        """Whether each MAC lane walks whole outputs on its own (weight or both-operand skipping, SnaPEA)."""
        return self.sparsity in OUTPUT_SEQUENTIAL_MODES or self.early_termination != "none"

    def prepare(
        self,
        input_chw: np.ndarray,
        geometry: ConvGeometry,
        tiling: LayerTiling,
        weights_kcrs: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        experts: ExpertMapping | None = None,
        activation: str = "relu",
    ) -> None:
        """Precompute, per channel block, the work of every window (or output) from the real tensors.

        Output-sequential modes need the weights (and early termination the bias too); a mixture of experts
        needs its mapping (the layer's filters in the mapping's order). ``activation``: the layer's activation
        function (``relu`` or ``none``); ReLU early termination and MSB-first prediction terminate nothing
        without a ReLU.
        """
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        self._geometry = geometry
        self.termination = None
        self.experts = experts
        if self.sparsity == "mixture_of_experts":
            if experts is None:
                raise ValueError("mixture_of_experts needs the layer's expert mapping")
            self._routed = experts.routed_in_run_order()
            return
        if self.output_sequential:
            if weights_kcrs is None:
                raise ValueError("output-sequential PE modes need the layer's weights")
            self._prepare_sequential(input_chw, weights_kcrs, bias, geometry, tiling, activation == "relu")
            return
        self.n_m_used = self.sparsity == "n_m_weights" and self._follows_n_m(weights_kcrs, tiling)
        if self.sparsity in TERM_MODES:
            self._prepare_terms(input_chw, geometry, tiling)
            return
        counts = window_nonzero_counts(
            input_chw, geometry.kernel_r, geometry.kernel_s, geometry.stride, geometry.padding
        ).reshape(geometry.channels, -1)
        self._block_cycles = {}
        self._block_nonzeros = {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            block = counts[start : start + tiling.channels_per_block]
            if self.n_m_used:
                groups = block.shape[0] // self.n_m[1]
                cycles = n_m_window_cycles(
                    groups, self.activation_lanes, geometry.kernel_positions, self.n_m[0]
                )
                self._block_cycles[start] = np.full(block.shape[1], cycles, dtype=np.int64)
            else:
                mode = "none" if self.sparsity == "n_m_weights" else self.sparsity
                self._block_cycles[start] = window_cycles(
                    block, self.activation_lanes, geometry.kernel_positions, mode
                )
            self._block_nonzeros[start] = block.sum(axis=0, dtype=np.int64)

    def _prepare_terms(self, input_chw, geometry: ConvGeometry, tiling: LayerTiling) -> None:
        """Per channel block: each window's cycles (the busiest lane's effectual terms) and its nonzero
        operands (values, or deltas from the previous window of the row), from the 16-bit activations."""
        ints, _ = to_fixed_point(input_chw, bits=16)
        mode = "delta" if self.sparsity == "effectual_terms_deltas" else "raw"
        shape = (geometry.kernel_r, geometry.kernel_s, geometry.stride, geometry.padding)
        self._block_cycles, self._block_nonzeros = {}, {}
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            bounds = start + lane_boundaries(stop - start, self.activation_lanes)
            lane_terms = np.stack(
                [
                    window_terms(ints[lo:hi], *shape, mode=mode)
                    if hi > lo
                    else np.zeros(geometry.out_height * geometry.out_width, dtype=np.int64)
                    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
                ]
            )
            self._block_cycles[start] = np.maximum(lane_terms.max(axis=0), 1)
            self._block_nonzeros[start] = window_terms(
                ints[start:stop], *shape, mode=mode, encoding="nonzero"
            )

    def _follows_n_m(self, weights_kcrs, tiling: LayerTiling) -> bool:
        """Whether the layer can run in N:M mode: its weights follow the pattern, in whole channel groups.

        If not (dense weights, or a channel count that is not a multiple of M), the layer runs dense.
        """
        n, m = self.n_m
        return (
            weights_kcrs is not None
            and tiling.channels_per_block % m == 0
            and conforms_n_m(weights_kcrs, n, m)
        )

    def _prepare_sequential(
        self, input_chw, weights_kcrs, bias, geometry: ConvGeometry, tiling, relu: bool
    ) -> None:
        """Work items (MACs) of every output (filter, window) in every channel block: ``(K, P)`` arrays.

        The mechanisms that walk each window's operands one by one get the layer's im2col matrix in bands.
        """
        n_windows = geometry.out_height * geometry.out_width
        weights = weights_kcrs.reshape(geometry.filters, -1).astype(np.float64)
        self._block_items = {}
        self._repetition = None
        self._macs_per_metadata_read = 1
        if self.sparsity == "kernel_patterns":
            self._prepare_patterns(weights_kcrs, n_windows, geometry, tiling)
            return
        if self.sparsity == "weight_repetition":
            if tiling.n_channel_blocks != 1:
                raise SimulationError(
                    f"weight repetition needs each filter whole in a PE, but the weight scratchpad holds "
                    f"{tiling.channels_per_block} of {geometry.channels} channels: raise "
                    "pe_array.pe.weight_spad_bytes"
                )
            from sparsesim.sparse.weight_repetition import repetition_work  # see the note after the imports

            self._repetition = repetition_work(lambda: im2col_bands(input_chw, geometry), weights)
            self._block_items[0] = self._repetition.issued
            return
        if self.early_termination in MSB_FIRST_MODES:
            if tiling.n_channel_blocks != 1:
                raise SimulationError(
                    f"MSB-first prediction needs each filter whole in a PE, but the weight scratchpad holds "
                    f"{tiling.channels_per_block} of {geometry.channels} channels: raise "
                    "pe_array.pe.weight_spad_bytes"
                )
            # The activations reach the PE as 16-bit fixed point (operand_input already rounded them: this
            # recovers the same integers and scale).
            ints, frac_bits = to_fixed_point(input_chw, bits=MSB_FIRST_WORD_BITS)
            self.termination = msb_first(
                lambda: im2col_bands(ints, geometry),
                weights,
                bias.astype(np.float64),
                frac_bits=frac_bits,
                msb_bits=self.msb_bits,
                bits=MSB_FIRST_WORD_BITS,
                decision="exact" if self.early_termination == "msb_first_exact" else "predictive",
                threshold=self.msb_threshold,
                skip_zero_activations=self.sparsity in SKIPPING_MODES,
                relu=relu,
            )
            self._block_items[0] = self.termination.msb_macs
            return
        if self.early_termination != "none":
            if tiling.n_channel_blocks != 1:
                raise SimulationError(
                    f"early termination needs each filter whole in a PE, but the weight scratchpad holds "
                    f"{tiling.channels_per_block} of {geometry.channels} channels: raise "
                    "pe_array.pe.weight_spad_bytes"
                )
            self.termination = early_termination(
                lambda: im2col_bands(input_chw, geometry),
                weights,
                bias.astype(np.float64),
                mode=self.early_termination,
                n_speculative=self.speculative_macs,
                threshold=self.speculation_threshold,
                skip_zero_activations=self.sparsity in SKIPPING_MODES,
                relu=relu,
            )
            self._block_items[0] = self.termination.macs_performed
            # MACs each output would perform without termination: its nonzero weights (times nonzero
            # activations when zeros are skipped).
            self._unterminated_items = {
                0: _nonzero_products(input_chw, geometry, weights, self.sparsity in SKIPPING_MODES)
            }
            return
        positions = geometry.kernel_positions
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            if self.sparsity == "zero_skip_weight_vectors":
                vectors = _nonzero_weight_vectors(weights_kcrs[:, start:stop], self.activation_lanes)
                # A vector is one cycle of all lanes: its MACs are lanes-wide, zero weights included.
                items = vectors * self.activation_lanes
                self._block_items[start] = np.repeat(items[:, None], n_windows, axis=1)
                continue
            self._block_items[start] = _nonzero_products(
                input_chw[start:stop],
                dataclasses.replace(geometry, channels=stop - start),
                weights[:, start * positions : stop * positions],
                self.sparsity == "zero_skip_both",
            )

    def _msb_first_work(self, tile: Tile, result: MsbFirstResult) -> TileWork:
        """Cycles and actions of a tile on MSB-first lanes (an MSB unit and an LSB unit per lane)."""
        geometry = self._geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        filters = slice(tile.filter_start, tile.filter_stop)
        msb = result.msb_macs[filters, windows]
        lsb = result.lsb_macs[filters, windows]
        msb_cycles = np.maximum(msb, 1)  # at least the cycle that hands the output on
        cycles = _two_unit_lane_cycles(msb_cycles, lsb, self.rows)
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
        self.early_terminated_macs += msb_macs - lsb_macs
        for action, n in actions.items():
            self.count(action, n)
        return TileWork(cycles, actions)

    def _prepare_patterns(self, weights_kcrs, n_windows: int, geometry: ConvGeometry, tiling) -> None:
        """Kernel patterns: per channel block, each filter's MACs = entries x its connected kernels (the same
        for every window), the filters in PatDNN's reordered sequence; dense if the layer follows no
        library of the PE's size."""
        self.patterns = layer_patterns(weights_kcrs, self.pattern_entries, self.pattern_library_size)
        if self.patterns is None:  # dense fallback: every kernel, every position, no pattern id
            per_kernel = geometry.kernel_positions
            connected = np.ones(weights_kcrs.shape[:2], dtype=bool)
            order = np.arange(geometry.filters)
            self._macs_per_metadata_read = 0  # none read
        else:
            per_kernel = self.patterns.entries
            connected = self.patterns.connected
            order = filter_order(self.patterns)
            self._macs_per_metadata_read = per_kernel  # one id per kernel walked
        for start in range(0, geometry.channels, tiling.channels_per_block):
            stop = min(geometry.channels, start + tiling.channels_per_block)
            items = connected[order, start:stop].sum(axis=1).astype(np.int64) * per_kernel
            self._block_items[start] = np.repeat(items[:, None], n_windows, axis=1)

    def kernel_pattern_summary(self) -> dict | None:
        """For ``kernel_patterns``: whether the layer ran on patterns, its library and metadata bits."""
        if self.sparsity != "kernel_patterns":
            return None
        if self.patterns is None:
            return {"used": False, "reason": "weights follow no pattern library of the PE's size: ran dense"}
        return {
            "used": True,
            "library_size": len(self.patterns.library),
            "entries": self.patterns.entries,
            "kernels": int(self.patterns.pattern_ids.size),
            "connected_kernels": int(self.patterns.connected.sum()),
            "metadata_bits": pattern_metadata_bits(self.patterns),
        }

    def _sequential_work(self, tile: Tile) -> TileWork:
        if isinstance(self.termination, MsbFirstResult):
            return self._msb_first_work(tile, self.termination)
        geometry = self._geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        filters = slice(tile.filter_start, tile.filter_stop)
        items = self._block_items[tile.channel_start][filters, windows]
        # An output takes ceil(items / lanes) cycles, and at least the one that hands it on.
        per_output = np.maximum(-(-items // self.activation_lanes), 1)
        n_filters, n_windows = items.shape
        padded = -(-n_windows // self.rows) * self.rows
        dealt = np.zeros((n_filters, padded), dtype=np.int64)
        dealt[:, :n_windows] = per_output
        # Lane (filter k, PE row i) works through windows i, i + rows, ...; the slowest lane ends the tile.
        cycles = int(dealt.reshape(n_filters, -1, self.rows).sum(axis=1).max()) if items.size else 0
        macs = int(items.sum())
        algorithmic = (
            n_filters * n_windows * (tile.channel_stop - tile.channel_start) * geometry.kernel_positions
        )
        actions = {
            "compute": macs,
            "gated_compute": 0,
            "skipped_compute": algorithmic - macs,
            "input_spad_read": macs,
            "input_spad_metadata_read": macs // self._macs_per_metadata_read
            if self._macs_per_metadata_read
            else 0,
            "weight_spad_read": macs,
            "psum_spad_update": int(per_output.sum()),
        }
        if self._repetition is not None:
            # UCNN: activations sharing a weight are added first; one multiply (and weight read) per group.
            work = self._repetition
            multiplies = int(work.multiplies[filters, windows].sum())
            actions.update(
                compute=multiplies,
                skipped_compute=algorithmic - multiplies,
                weight_spad_read=multiplies,  # one per group, as is the accumulation of its product
                psum_spad_update=multiplies,
                activation_add=macs - multiplies,  # the issued activations are the items
            )
        if self.termination is not None:
            self.early_terminated_macs += int(self._unterminated_items[0][filters, windows].sum()) - macs
        for action, n in actions.items():
            self.count(action, n)
        return TileWork(cycles, actions)

    def _expert_work(self, tile: Tile) -> TileWork:
        """A mixture-of-experts tile: the router (first filter group only), then the routed outputs."""
        geometry = self._geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        routed = self._routed[tile.filter_start : tile.filter_stop, windows]
        n_filters, n_windows = routed.shape
        macs_per_output = geometry.channels * geometry.kernel_positions
        cycles_per_output = -(-macs_per_output // self.activation_lanes)
        per_output = routed.astype(np.int64) * cycles_per_output
        cycles = _lane_cycles(per_output, self.rows)
        router_outputs = 0
        if tile.filter_start == 0:
            # The router's E mean filters, dealt to the filter lanes in turn, score every window of the tile.
            experts = self.experts.experts
            lanes = self.columns * self.filter_lanes
            per_lane = np.zeros((-(-experts // lanes) * lanes, n_windows), dtype=np.int64)
            per_lane[:experts] = cycles_per_output
            cycles += _lane_cycles(per_lane.reshape(-1, lanes, n_windows).sum(axis=0), self.rows)
            router_outputs = experts * n_windows
        macs = int(routed.sum()) * macs_per_output
        router_macs = router_outputs * macs_per_output
        actions = {
            "compute": macs,
            "gated_compute": 0,
            "skipped_compute": n_filters * n_windows * macs_per_output - macs,
            "input_spad_read": macs + router_macs,
            "input_spad_metadata_read": n_filters * n_windows,  # one routing-mask entry per window and lane
            "weight_spad_read": macs + router_macs,
            "psum_spad_update": int(per_output.sum()) + router_outputs * cycles_per_output,
            "router_compute": router_macs,
        }
        for action, n in actions.items():
            self.count(action, n)
        return TileWork(cycles, actions)

    def work(self, tile: Tile) -> TileWork:
        """Cycles and actions of one tile; the actions are also added to this component's counts."""
        if self.sparsity == "mixture_of_experts":
            work = self._expert_work(tile)
        else:
            work = self._sequential_work(tile) if self.output_sequential else self._broadcast_work(tile)
        return TileWork(work.cycles, {action: work.actions.get(action, 0) for action in self.ACTIONS})

    def _broadcast_work(self, tile: Tile) -> TileWork:
        geometry = self._geometry
        windows = slice(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width)
        per_window = self._block_cycles[tile.channel_start][windows]
        cycles = lockstep_cycles(per_window, self.rows)
        n_windows = per_window.shape[0]
        n_filters = tile.filter_stop - tile.filter_start
        active_pes_per_window = -(-n_filters // self.filter_lanes)
        operands = n_windows * (tile.channel_stop - tile.channel_start) * geometry.kernel_positions
        nonzeros = int(self._block_nonzeros[tile.channel_start][windows].sum())
        zeros = operands - nonzeros
        skipping = self.sparsity in SKIPPING_MODES or self.sparsity in TERM_MODES
        gating = self.sparsity == "zero_gating"
        charged = n_filters * (nonzeros if (skipping or gating) else operands)
        if self.n_m_used:
            # N slots issued per group of M channels, zero weights or not; each slot's index picks its input.
            n, m = self.n_m
            issued = n_windows * (tile.channel_stop - tile.channel_start) // m * n * geometry.kernel_positions
            actions = {
                "compute": n_filters * issued,
                "gated_compute": 0,
                "skipped_compute": n_filters * (operands - issued),
                "input_spad_read": active_pes_per_window * issued,
                "input_spad_metadata_read": n_filters * issued,
                "weight_spad_read": n_filters * issued,
                "psum_spad_update": n_filters * int(per_window.sum()),
            }
            for action, count in actions.items():
                self.count(action, count)
            return TileWork(cycles, actions)
        actions = {
            "compute": charged,
            "gated_compute": n_filters * zeros if gating else 0,
            "skipped_compute": n_filters * zeros if skipping else 0,
            "input_spad_read": active_pes_per_window * (nonzeros if skipping else operands),
            "input_spad_metadata_read": active_pes_per_window * nonzeros if skipping else 0,
            "weight_spad_read": charged,
            "psum_spad_update": n_filters * int(per_window.sum()),
        }
        for action, n in actions.items():
            self.count(action, n)
        return TileWork(cycles, actions)


def _lane_cycles(per_output: np.ndarray, rows: int) -> int:
    """Cycles of a tile whose output ``(filter lane k, window p)`` takes ``per_output[k, p]`` cycles: lane
    ``(k, PE row i)`` works through windows ``i, i + rows, ...``; the slowest lane ends the tile."""
    n_filters, n_windows = per_output.shape
    if not per_output.size:
        return 0
    dealt = np.zeros((n_filters, -(-n_windows // rows) * rows), dtype=np.int64)
    dealt[:, :n_windows] = per_output
    return int(dealt.reshape(n_filters, -1, rows).sum(axis=1).max())


def _two_unit_lane_cycles(msb_cycles: np.ndarray, lsb_cycles: np.ndarray, rows: int) -> int:
    """A tile's cycles when each lane (filter k, PE row i; windows i, i + rows, ...) has an MSB unit and an
    LSB unit: the slowest lane's finish time.

    ``msb_cycles``, ``lsb_cycles``: (K, P) per output. A two-stage flow shop: output j's LSB pass starts once
    its MSB pass and the previous LSB pass are over, so the lane ends at ``max_j (MSB cycles of outputs
    <= j + LSB cycles of outputs >= j)``; outputs added as padding cost nothing in either unit.
    """
    n_filters, n_windows = msb_cycles.shape
    if not msb_cycles.size:
        return 0
    padded = -(-n_windows // rows) * rows
    stages = np.zeros((2, n_filters, padded), dtype=np.int64)
    stages[0, :, :n_windows] = msb_cycles
    stages[1, :, :n_windows] = lsb_cycles
    # (K, outputs per lane, rows): a lane is one (k, row) column, walked along axis 1.
    msb_lane, lsb_lane = stages.reshape(2, n_filters, -1, rows)
    msb_done = np.cumsum(msb_lane, axis=1)
    lsb_after = np.cumsum(lsb_lane[:, ::-1], axis=1)[:, ::-1]
    return int((msb_done + lsb_after).max())


def _nonzero_weight_vectors(weights_kcrs: np.ndarray, width: int) -> np.ndarray:
    """``(K,)``: per filter, the vectors of ``width`` consecutive input channels (per kernel position) that
    hold a nonzero weight: what a SIMD PE must still issue when it skips all-zero weight vectors."""
    filters, channels, kernel_r, kernel_s = weights_kcrs.shape
    padded = -(-channels // width) * width
    nonzero = np.zeros((filters, padded, kernel_r, kernel_s), dtype=bool)
    nonzero[:, :channels] = weights_kcrs != 0
    grouped = nonzero.reshape(filters, padded // width, width, kernel_r, kernel_s).any(axis=2)
    return grouped.sum(axis=(1, 2, 3)).astype(np.int64)


def _nonzero_products(
    input_chw: np.ndarray, geometry: ConvGeometry, weights_kn: np.ndarray, skip_zero_activations: bool
) -> np.ndarray:
    """``(K, P)``: per output, its nonzero weights, or its pairs of nonzero weight and nonzero activation.

    ``weights_kn``: the filters' weights over the channels of ``input_chw``, in ``(c, r, s)`` order. The pairs
    are counted a band of output rows at a time, from each band's :func:`window_columns`.
    """
    n_windows = geometry.out_height * geometry.out_width
    if not skip_zero_activations:
        per_filter = np.count_nonzero(weights_kn, axis=1).astype(np.int64)
        return np.repeat(per_filter[:, None], n_windows, axis=1)
    nonzero_weights = (weights_kn != 0).astype(np.float32)
    width = geometry.out_width
    pairs = np.empty((weights_kn.shape[0], n_windows), dtype=np.int64)
    rows_per_band = max(1, DATAPATH_BAND_VALUES // (width * weights_kn.shape[1]))
    for start in range(0, geometry.out_height, rows_per_band):
        stop = min(geometry.out_height, start + rows_per_band)
        nonzero_operands = (window_columns(input_chw, geometry, start, stop) != 0).astype(np.float32)
        # Exact: float32 holds integers up to 2**24, far above C*R*S.
        pairs[:, start * width : stop * width] = np.rint(nonzero_weights @ nonzero_operands)
    return pairs


def _band_windows(
    input_chw: np.ndarray, geometry: ConvGeometry, out_row_start: int, out_row_stop: int
) -> np.ndarray:
    """The receptive fields of output rows ``[start, stop)``: a ``(C, rows, Wout, R, S)`` float64 view of
    the band of input rows they read, zero-padded (only the band is padded and converted)."""
    p = geometry.padding
    first = out_row_start * geometry.stride - p  # in unpadded rows; may be negative
    last = (out_row_stop - 1) * geometry.stride + geometry.kernel_r - p
    band = np.zeros((geometry.channels, last - first, geometry.width + 2 * p), dtype=np.float64)
    top, bottom = max(first, 0), min(last, geometry.height)
    band[:, top - first : bottom - first, p : p + geometry.width] = input_chw[:, top:bottom]
    views = np.lib.stride_tricks.sliding_window_view(
        band, (geometry.kernel_r, geometry.kernel_s), axis=(1, 2)
    )
    return views[:, :: geometry.stride, :: geometry.stride][:, :, : geometry.out_width]


def im2col(
    input_chw: np.ndarray, geometry: ConvGeometry, out_row_start: int, out_row_stop: int
) -> np.ndarray:
    """The operands of output rows ``[start, stop)``: a ``(windows, C*R*S)`` float64 matrix."""
    views = _band_windows(input_chw, geometry, out_row_start, out_row_stop)
    # (C, rows, Wout, R, S) -> (rows, Wout, C, R, S)
    return np.ascontiguousarray(views.transpose(1, 2, 0, 3, 4)).reshape(
        -1, geometry.channels * geometry.kernel_positions
    )


def im2col_bands(input_chw: np.ndarray, geometry: ConvGeometry) -> Iterator[np.ndarray]:
    """The layer's :func:`im2col` matrix in bands of whole output rows, each of about
    ``MECHANISM_BAND_VALUES`` values (at least one row)."""
    rows_per_band = max(
        1, MECHANISM_BAND_VALUES // (geometry.out_width * geometry.channels * geometry.kernel_positions)
    )
    for start in range(0, geometry.out_height, rows_per_band):
        yield im2col(input_chw, geometry, start, min(geometry.out_height, start + rows_per_band))


def window_columns(
    input_chw: np.ndarray, geometry: ConvGeometry, out_row_start: int, out_row_stop: int
) -> np.ndarray:
    """The operands of output rows ``[start, stop)`` as columns: a ``(C*R*S, windows)`` float64 matrix,
    :func:`im2col` transposed. Built with the output row as the inner dimension of the copy, and
    ``weights (K, C*R*S) @ columns`` gives the outputs in ``(K, Hout, Wout)`` order."""
    views = _band_windows(input_chw, geometry, out_row_start, out_row_stop)
    # (C, rows, Wout, R, S) -> (C, R, S, rows, Wout)
    return np.ascontiguousarray(views.transpose(0, 3, 4, 1, 2)).reshape(
        geometry.channels * geometry.kernel_positions, -1
    )


def datapath_output(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    bias: np.ndarray,
    geometry: ConvGeometry,
    sparsity: str,
    activation: str,
    rows_per_band: int | None = None,
) -> np.ndarray:
    """The layer's output as the PEs compute it: ``(K, Hout, Wout)`` float64, computed in bands of
    ``rows_per_band`` output rows (by default as many as keep the band's operands near
    ``DATAPATH_BAND_VALUES`` values) and blocks of filters of about as many weights.

    Modes whose products differ from a plain dot product have their own datapath here (UCNN's factorised
    sums, Diffy's deltas; SnaPEA, MSB-first and mixtures of experts are computed by their mechanisms). The
    skipping and gating PEs (of zero activations, zero weights, both, N:M slots, pattern entries) perform
    exactly the products of the dense dot product minus some whose operand is zero: every product they leave
    out is an exact zero (0 x w = 0 in floating point), so one BLAS product over the machine's operands sums
    the products they perform, up to summation order, which the functional check's tolerance covers. (The
    literal form, a CSR matrix of the performed products, gave the same outputs at 3x the cost of the
    whole simulation.) The *operands* are the machine's: pruned, quantised or compacted as it runs them.
    """
    if sparsity == "weight_repetition":
        # UCNN's datapath: per output, activations summed per unique weight, one multiply per group.
        from sparsesim.sparse.weight_repetition import factorised_output  # see the note after the imports

        bands = lambda: im2col_bands(input_chw, geometry)  # noqa: E731
        out = factorised_output(bands, weights_kcrs.reshape(geometry.filters, -1), bias).reshape(
            geometry.filters, geometry.out_height, geometry.out_width
        )
        return np.maximum(out, 0.0) if activation == "relu" else out
    if sparsity == "effectual_terms_deltas":
        # Diffy's datapath: each row's first output directly, then y(x) = y(x - 1) + conv(deltas).
        ints, frac_bits = to_fixed_point(input_chw, bits=16)
        out = delta_outputs(ints, weights_kcrs, geometry.stride, geometry.padding, frac_bits)
        out = out + bias.astype(np.float64)[:, None, None]
        return np.maximum(out, 0.0) if activation == "relu" else out
    weights_kn = weights_kcrs.reshape(geometry.filters, -1)
    width = geometry.out_width
    out = np.empty((geometry.filters, geometry.out_height * width), dtype=np.float64)
    if rows_per_band is None:
        rows_per_band = max(1, DATAPATH_BAND_VALUES // (width * weights_kn.shape[1]))
    # Equal blocks of filters whose float64 weights hold at most about as many values as a band: the weights
    # of the large layers (VGG16's conv4 and conv5: 2.4 Mi values) are converted a block at a time.
    blocks = -(-weights_kn.size // DATAPATH_BAND_VALUES)
    filters_per_block = -(-geometry.filters // blocks)
    for start in range(0, geometry.out_height, rows_per_band):
        stop = min(geometry.out_height, start + rows_per_band)
        columns = window_columns(input_chw, geometry, start, stop)
        for first in range(0, geometry.filters, filters_per_block):
            block = slice(first, first + filters_per_block)
            # Written in place: a block of rows of ``out`` is a valid BLAS output.
            np.matmul(
                weights_kn[block].astype(np.float64), columns, out=out[block, start * width : stop * width]
            )
        del columns  # before the next band's are built
    out += bias.astype(np.float64)[:, None]
    if activation == "relu":
        np.maximum(out, 0.0, out=out)
    return out.reshape(geometry.filters, geometry.out_height, width)
