"""Winograd F(2x2, 3x3) PEs (Lavin & Gray, CVPR 2016): the lecture's Gauss trick generalised to convolution.

A stride-1 3x3 layer runs in the Winograd domain (the transforms, their exactness and the work rules are
:mod:`sparsesim.sparse.winograd`): per 2x2 output tile and input channel, 16 elementwise products of the
transformed weights ``U = G g G^T`` and the transformed input tile ``V = B^T d B`` instead of 36 MACs, so
dense multiplications per output fall from ``9 C`` to ``4 C`` (2.25x). Any other layer (another kernel size, a
stride > 1, a linear layer), and a layer whose Winograd tiles would take more multiplications than direct
convolution (outputs too few to fill the 2x2 tiles), falls back to the dense broadcast PEs of
:mod:`sparsesim.mechanisms.dense`; the report's mechanism summary says which and why.

What is modelled, on the output-stationary dataflow (:mod:`sparsesim.mapper`):

- **Weights** are held in the PEs' weight scratchpads as ``U``, 16 words per kernel instead of 9 (checked
  when a layer is prepared). ``weight_transform: offline`` (as in Lavin & Gray, and in the sparse-Winograd
  accelerators that prune ``U`` itself, Liu et al., ICLR 2018): ``U`` is computed once, off the machine, and
  is what DRAM, the buffer and the NoC hold and move (the plan's ``sized_weights``). ``on_chip``: the 3x3
  kernels move, and each PE transforms those it receives (``weight_transform_add``: 21 additions per
  kernel; its 14 halvings are shifts, free in fixed point).
- **Inputs** arrive as the mapper moves them (spatial rows); an input-transform unit before the PEs turns
  each 4x4 input tile of each channel into ``V`` once per tile of the mapping (``input_transform_add``: 32
  additions per channel and Winograd tile) and broadcasts ``V`` to the PEs, whose filter lanes share it.
- **Tiles.** Each row block of the mapping is a convolution of its own: its Winograd tiles start at the
  block's first output row, and its last tile row is partial when the block has an odd number of rows (that
  tile reads zeros past the block's input rows; its outputs past the block are discarded). A partial tile
  costs a full one.
- **Lanes.** Each filter lane of a PE owns one filter and ``activation_lanes`` multipliers; lane
  ``(filter k, PE row i)`` works through the row block's Winograd tiles ``i, i + rows, ...`` in row-major
  order, issuing its products channel by channel, position by position, ``activation_lanes`` per cycle
  (``skip``: all of them, or only those with a nonzero ``U``, or with nonzero ``U`` and ``V``): a tile takes
  ``max(1, ceil(issued / activation_lanes))`` cycles and the slowest lane ends the mapping tile
  (:func:`~sparsesim.mechanisms.datapath.lane_cycles`). With 16 multipliers a lane does one channel of a tile
  per cycle, dense.
- **Accumulation.** Each issued product is added to its position's accumulator (16 per filter lane, in the
  psum scratchpad); after the channel block, the lane output-transforms its 16 accumulators into the tile's 4
  outputs (``output_transform_add``: 24 additions), which go on as the partial sums of the mapping (the
  output transform is linear, so channel blocks add up in the spatial domain).

Actions (per word or per product, summed over the PEs): ``compute`` elementwise products issued (each a
multiply-accumulate of a ``U`` and a ``V``); ``skipped_compute`` the layer's direct MACs (``9 C`` per output,
the report's algorithmic computes) that were not performed: ``algorithmic - compute`` (negative in a
row block whose tiles take more products than its direct MACs: blocks of 1 or 3 rows of a layer less than
8 outputs wide); ``weight_spad_read``
one ``U`` per product; ``input_spad_read`` one ``V`` per product when lanes skip (each walks its own
products), one per PE per ``V`` value when dense (a PE's filter lanes share it in lockstep);
``input_spad_metadata_read`` one index per product when lanes skip (the position of the nonzero ``U`` or
pair); ``psum_spad_update`` one accumulator update per product; ``input_transform_add``,
``output_transform_add``, ``weight_transform_add`` as above (the mechanism's own actions and energies).

So the report's *actual* computes are elementwise products in the Winograd domain, and may be fewer than
the layer's *effectual* MACs (direct products of two nonzero operands): Winograd removes multiplications that
no zero-skipping can.

Assumed and ignored: an offline weight transform's cost; the transforms' latency (pipelined with the products)
and the input-transform unit's bandwidth (one tile's ``V`` per channel per cycle is 16 words, within the
DaDianNao bus); the numeric growth of ``U`` and ``V`` (a fixed-point datapath needs a few more bits for them;
here they are computed exactly, as :mod:`sparsesim.sparse.winograd` says); the mapper's channel blocks,
sized for 9 words per kernel of weight scratchpad (a layer whose ``U`` does not fit is an error), and, with
uncompressed formats, its buffer footprints (9 words per kernel; with compressed formats it sizes the ``U``
that moves). Compressed formats size ``U`` as the 16-bit words a machine of 16-bit words would store (its
zeros exactly), while the datapath computes with the exact ``U``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesim.config import ConfigBlock, MechanismConfig, block, energy_param, param
from sparsesim.errors import SimulationError
from sparsesim.mapping import LayerTiling, Tile
from sparsesim.mechanisms.base import DatapathOutput, LayerOperands, Mechanism, Plan, TileWork
from sparsesim.mechanisms.datapath import apply_activation, lane_cycles
from sparsesim.mechanisms.dense import Config as DenseConfig
from sparsesim.mechanisms.dense import Dense
from sparsesim.sparse.formats.codec import stored_words
from sparsesim.sparse.winograd import (
    DIRECT_PRODUCTS,
    INPUT_TRANSFORM_ADDS,
    OUTPUT_TRANSFORM_ADDS,
    SKIP_MODES,
    TILE_PRODUCTS,
    WEIGHT_TRANSFORM_ADDS,
    WinogradWork,
    transform_weights,
    unsupported_reason,
    winograd_geometry,
    winograd_output,
    winograd_work,
)

#: Where the weights are transformed (see the module docstring).
WEIGHT_TRANSFORMS = ("offline", "on_chip")


@dataclass(frozen=True, kw_only=True)
class Energy(ConfigBlock):
    """Energy of the Winograd transforms' additions, pJ."""

    input_transform_add: float = energy_param(
        0.05, "pJ per addition of the input transform (assumed: a 16-bit add, as UCNN's activation_add)."
    )
    output_transform_add: float = energy_param(
        0.05, "pJ per addition of the output transform (assumed: a 16-bit add, as UCNN's activation_add)."
    )
    weight_transform_add: float = energy_param(
        0.05,
        "pJ per addition of the weight transform when it is done on chip (assumed: a 16-bit add, as UCNN's "
        "activation_add).",
    )


@dataclass(frozen=True, kw_only=True)
class Config(MechanismConfig, kind="winograd"):
    """Stride-1 3x3 layers as Winograd F(2x2, 3x3) (Lavin & Gray, 2016); the others dense (DaDianNao)."""

    skip: str = param(
        "none",
        "Products a lane does not issue: none; transformed_weights (zero U, stored compressed); "
        "transformed_operands (zero U or zero V).",
        choices=SKIP_MODES,
    )
    weight_transform: str = param(
        "offline",
        "Where U = G g G^T is computed: offline (U, 16 words per kernel, is what DRAM, the buffer and the "
        "NoC hold and move) or on_chip (the 3x3 kernels move; each PE transforms those it receives).",
        choices=WEIGHT_TRANSFORMS,
    )
    Energy = Energy
    energy_pj: Energy = block(Energy, "Energy of the transforms' additions.")

    @classmethod
    def cross_field_problems(cls, values, bad_paths, prefix):
        """A filter lane keeps its 16 accumulators in the psum scratchpad."""
        spad, lanes = "pe_array.pe.psum_spad_bytes", "pe_array.pe.filter_lanes"
        if {spad, lanes, "word_bytes"} & bad_paths:
            return []
        need = values[lanes] * TILE_PRODUCTS * values["word_bytes"]
        if values[spad] >= need:
            return []
        return [(spad, f"must hold {TILE_PRODUCTS} accumulators per filter lane for Winograd: >= {need}")]


@dataclass(frozen=True)
class WinogradPlan:
    """Whether the layer runs as Winograd, and why not if it does not."""

    reason: str | None  # None: Winograd

    @property
    def used(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class WinogradLayer:
    """A prepared layer: per (row block, channel block), by their first row and channel, its Winograd work
    (``issued``: the products of each (filter, Winograd tile), ``(K, tile_rows, tile_cols)``); or the dense
    PEs' work (``direct``)."""

    plan: Plan
    blocks: dict[tuple[int, int], WinogradWork]
    direct: Any = None


def _direct_multiplies(geometry) -> int:
    return geometry.algorithmic_macs


def _weight_words(u: np.ndarray) -> np.ndarray:
    """``U`` as the 16-bit words the buffer and DRAM hold (what the formats size): rounded to float16 and
    saturated (:func:`~sparsesim.sparse.formats.codec.stored_words`), a nonzero that would round to zero kept
    as the smallest float16 of its sign, so that compressed formats size exactly the zeros of ``U``."""
    words = stored_words(u)
    lost = (words == 0) & (u != 0)
    words[lost] = np.copysign(np.float16(2.0**-24), u[lost])
    return words


def _block_input(input_chw: np.ndarray, padding: int, row_start: int, row_stop: int) -> np.ndarray:
    """The padded input rows that output rows ``[row_start, row_stop)`` of a stride-1 3x3 convolution read
    (``row_stop - row_start + 2`` rows, padding included, zero outside the input), padded along W too."""
    channels, height, width = input_chw.shape
    first = row_start - padding
    band = np.zeros((channels, row_stop - row_start + 2, width + 2 * padding))
    top, bottom = max(first, 0), min(first + band.shape[1], height)
    if bottom > top:
        band[:, top - first : bottom - first, padding : padding + width] = input_chw[:, top:bottom]
    return band


class Winograd(Mechanism):
    Config = Config

    def __init__(self, config: MechanismConfig, array: Any, word_bytes: int = 2):
        super().__init__(config, array, word_bytes)
        self.weight_spad_bytes = int(array.pe.weight_spad_bytes)
        self.direct = Dense(DenseConfig(), array, word_bytes)

    def plan(self, operands: LayerOperands) -> Plan:
        """Winograd if the layer is a stride-1 3x3 convolution with enough outputs to fill the tiles; the
        buffer and DRAM then hold the transformed weights."""
        geometry = operands.geometry
        shape = (geometry.filters, geometry.channels, geometry.kernel_r, geometry.kernel_s)
        reason = unsupported_reason("conv2d", shape, geometry.stride)
        if reason is None:
            tiles = winograd_geometry(
                (geometry.channels, geometry.height, geometry.width), shape, geometry.padding
            )
            if tiles.dense_multiplies > _direct_multiplies(geometry):
                reason = (
                    f"{geometry.out_height}x{geometry.out_width} outputs: its 2x2 tiles would take "
                    f"{tiles.dense_multiplies} multiplications, direct convolution {tiles.direct_multiplies}"
                )
        if reason is not None or self.config.weight_transform == "on_chip":
            return Plan(operands, operands.weights_kcrs, WinogradPlan(reason))
        return Plan(operands, _weight_words(transform_weights(operands.weights_kcrs)), WinogradPlan(None))

    def spad_words_per_kernel(self, plan: Plan) -> int:
        """A PE holds each kernel as its 4 x 4 ``U`` (transformed offline, or by the PE on arrival)."""
        return TILE_PRODUCTS if plan.state.used else super().spad_words_per_kernel(plan)

    def prepare(self, plan: Plan, tiling: LayerTiling) -> WinogradLayer:
        """Per row block and channel block of the mapping, the products each (filter, Winograd tile)
        issues, counted on the real operands (:func:`~sparsesim.sparse.winograd.winograd_work`)."""
        if not plan.state.used:
            return WinogradLayer(plan, {}, direct=self.direct.prepare(plan, tiling))
        operands = plan.operands
        geometry = operands.geometry
        # The mappers size channel blocks by spad_words_per_kernel; a tiling made by hand may not.
        need = self.filter_lanes * tiling.channels_per_block * TILE_PRODUCTS * self.word_bytes
        if need > self.weight_spad_bytes:
            raise SimulationError(
                f"{operands.name}: the transformed weights of {self.filter_lanes} filter lanes x "
                f"{tiling.channels_per_block} channels need {need} bytes of weight scratchpad, "
                f"pe_array.pe.weight_spad_bytes is {self.weight_spad_bytes}"
            )
        rows = sorted({(t.out_row_start, t.out_row_stop) for t in tiling.tiles})
        channels = sorted({(t.channel_start, t.channel_stop) for t in tiling.tiles})
        blocks = {}
        for row_start, row_stop in rows:
            band = _block_input(operands.input_chw, geometry.padding, row_start, row_stop)
            for channel_start, channel_stop in channels:
                blocks[(row_start, channel_start)] = winograd_work(
                    band[channel_start:channel_stop],
                    operands.weights_kcrs[:, channel_start:channel_stop],
                    0,
                    skip=self.config.skip,
                    lanes=self.activation_lanes,
                )
        return WinogradLayer(plan, blocks)

    def held_kernel_words(self, kernel: tuple[int, int]) -> int:
        """A 3x3 kernel may be held as its 4 x 4 ``U`` (whether the layer runs as Winograd depends on more
        than the kernel: counted as if it did)."""
        return max(TILE_PRODUCTS, kernel[0] * kernel[1]) if kernel == (3, 3) else kernel[0] * kernel[1]

    def prepare_key(self, tiling: LayerTiling) -> tuple:
        """The work is counted per row block and channel block."""
        rows = sorted({(t.out_row_start, t.out_row_stop) for t in tiling.tiles})
        channels = sorted({(t.channel_start, t.channel_stop) for t in tiling.tiles})
        return tiling.channels_per_block, tuple(rows), tuple(channels)

    def tile_work(self, prepared: WinogradLayer, tile: Tile) -> TileWork:
        if prepared.direct is not None:
            return self.direct.tile_work(prepared.direct, tile)
        geometry = prepared.plan.operands.geometry
        work = prepared.blocks[(tile.out_row_start, tile.channel_start)]
        issued = work.issued[tile.filter_start : tile.filter_stop]
        n_filters = issued.shape[0]
        n_tiles = issued.shape[1] * issued.shape[2]
        per_tile = np.maximum(-(-issued.reshape(n_filters, n_tiles) // self.activation_lanes), 1)
        cycles = lane_cycles(per_tile, self.rows)
        products = int(issued.sum())
        n_channels = tile.channel_stop - tile.channel_start
        outputs = (tile.out_row_stop - tile.out_row_start) * geometry.out_width
        algorithmic = n_filters * outputs * n_channels * DIRECT_PRODUCTS
        skips = self.config.skip != "none"
        pes = -(-n_filters // self.filter_lanes)  # the PEs the tile's filters occupy
        actions = {
            "compute": products,
            "gated_compute": 0,
            "skipped_compute": algorithmic - products,
            "input_spad_read": products if skips else pes * TILE_PRODUCTS * n_channels * n_tiles,
            "input_spad_metadata_read": products if skips else 0,
            "weight_spad_read": products,
            "psum_spad_update": products,
            "input_transform_add": INPUT_TRANSFORM_ADDS * n_channels * n_tiles,
            "output_transform_add": OUTPUT_TRANSFORM_ADDS * n_filters * n_tiles,
            "weight_transform_add": WEIGHT_TRANSFORM_ADDS * n_filters * n_channels
            if self.config.weight_transform == "on_chip" and tile.weight_words
            else 0,
        }
        return TileWork(cycles, actions)

    def output(self, prepared: WinogradLayer) -> DatapathOutput:
        """``A^T [sum_c U * V] A`` per tile, cropped, plus the bias, then the activation (Winograd layers);
        the dot products otherwise. Skipped products are zeros: they change no value."""
        operands = prepared.plan.operands
        if prepared.direct is not None:
            return self.direct.output(prepared.direct)
        values = winograd_output(
            operands.input_chw, operands.weights_kcrs, operands.bias, operands.geometry.padding
        )
        return DatapathOutput(apply_activation(values, operands.activation))

    def summary(self, prepared: WinogradLayer, array: Any) -> dict:
        """Whether the layer ran as Winograd (or why not), the weights' density before and after the
        transform, and the products performed against the direct MACs and dense Winograd's."""
        plan = prepared.plan
        geometry = plan.operands.geometry
        if prepared.direct is not None:
            return {"winograd": False, "reason": plan.state.reason}
        weights = plan.operands.weights_kcrs
        u = transform_weights(weights)
        works = prepared.blocks.values()
        return {
            "winograd": True,
            "skip": self.config.skip,
            "weight_transform": self.config.weight_transform,
            "weight_density": float(np.count_nonzero(weights)) / weights.size,
            "transformed_weight_density": float(np.count_nonzero(u)) / u.size,
            "direct_macs": _direct_multiplies(geometry),
            "dense_winograd_products": sum(work.geometry.dense_multiplies for work in works),
            "products": sum(work.total_multiplies for work in works),
        }

    @classmethod
    def summary_table(cls, layers: list[dict]) -> tuple[str, list[str], list[list[str]]]:
        rows = []
        for entry in layers:
            summary = entry["mechanism"]["summary"]
            if not summary["winograd"]:
                rows.append([entry["name"], f"no (dense): {summary['reason']}", "-", "-", "-", "-", "-"])
                continue
            rows.append(
                [
                    entry["name"],
                    f"yes, skip {summary['skip']}",
                    f"{summary['weight_density']:.3f}",
                    f"{summary['transformed_weight_density']:.3f}",
                    f"{summary['direct_macs']:,}",
                    f"{summary['products']:,}",
                    f"{summary['direct_macs'] / max(summary['products'], 1):.2f}x",
                ]
            )
        return (
            "Winograd F(2x2, 3x3) (Lavin & Gray 2016): elementwise products vs direct convolution's MACs",
            ["layer", "Winograd", "weight density", "U density", "direct MACs", "products", "fewer"],
            rows,
        )
