"""Hardware configs: a YAML file in ``hwconfigs/`` → a validated tree of frozen dataclasses.

One frozen dataclass per hardware block (:class:`DramConfig`, :class:`GlobalBufferConfig`,
:class:`NocConfig`, :class:`PeArrayConfig`, :class:`PeConfig`, :class:`EnergyConfig`), gathered under
:class:`HwConfig`. Every parameter is declared once, with :func:`~sparsesim.config.schema.param`: its type
(the annotation), its default, a one-line description and its allowed values (``ge`` / ``gt`` bounds or
``choices``). That single declaration drives the defaults, the validation, :func:`explain_hwconfig`
(``sparsesim validate --explain``) and :func:`hwconfig_to_dict`, through the engine every config reader
shares (:mod:`sparsesim.config.schema`); this module adds the hardware: its blocks, the mechanisms'
registry, the rules across parameters, ``base:`` files and the YAML loader. Rules that tie several
parameters together (a burst holds at least one word, a scratchpad holds at least one word per lane, ...)
are declared once in ``_CROSS_FIELD_RULES``.

Validation collects every problem before raising one :class:`~sparsesim.errors.ConfigError`, each problem
with the dotted path of the parameter (``pe_array.pe.activation_lanes: must be >= 1, got 0``). It runs when
a mapping is parsed and again whenever an :class:`HwConfig` is constructed, so ``dataclasses.replace`` in a
sweep cannot build an impossible machine either.

Every size, count, rate and energy has an upper bound (``le``), listed by ``sparsesim validate --explain``:
generous for any machine built or proposed, and tight enough that a value that passes validation cannot
make a run allocate memory in proportion to it or overflow a float in a report. Where a bound limits the
cost of a run it was measured: at the bounds, one parameter at a time, every shipped config simulates
VGG16's conv5_3 (and at 256 x 256 PEs, conv1_2) in seconds; the costliest are SCNN with 256 activation
lanes or 256 accumulator banks (about 250 MiB and 5-10x its usual time on conv1_2) and EVA²'s motion search
at a radius of 64 (about 300 MiB). Hardware config files are limited to ``MAX_HWCONFIG_BYTES`` and their
nesting to ``MAX_HWCONFIG_DEPTH``.

YAML is read with a :class:`yaml.SafeLoader` subclass only. It differs from ``SafeLoader`` in two ways:
numbers in exponent notation without a dot or a signed exponent (``1e9``, ``606e6``, ``1.5e9``) are floats,
not strings as in YAML 1.1; and a key repeated in one mapping is an error instead of silently keeping the
last value.

A config file may **extend another**: ``base: cnvlutin.yaml`` at its top level (a path relative to the
extending file's folder) makes :func:`load_hwconfig` read that file first, and merge this file's keys over
it: blocks (mappings) key by key, any other value replacing the base's; a block left empty changes nothing,
and a block with another ``kind`` than the base's (another mechanism) replaces the base's block whole.
A base may have a base of its own, up to ``MAX_HWCONFIG_BASES`` files in a chain, never a cycle. The merged
mapping is validated as one config, as usual (a base need not be a whole config on its own). Every error
names the file loaded and the dotted path, and a problem in a base file, or with a value a base set, adds
``(in base file PATH)``. ``sparsesim validate FILE`` prints the merged config. ``base`` is read from files
only: :func:`parse_hwconfig` takes a mapping already merged.

Default energy table (``energy_pj``, pJ per action)
---------------------------------------------------
Relative costs of one 16-bit word access from Eyeriss (Chen, Emer, Sze, ISCA 2016, "Eyeriss: A Spatial
Architecture for Energy-Efficient Dataflow for Convolutional Neural Networks"), normalised to one MAC:
MAC 1x, register file / scratchpad 1x, NoC (inter-PE) 2x, global buffer 6x, DRAM 200x. They are anchored to
an absolute 45 nm scale by taking one 16-bit MAC = 1.0 pJ, the order of Horowitz (ISSCC 2014, "Computing's
energy problem"): a 16-bit integer multiply is about 0.8 pJ, plus the add. Hence, per action:

- ``pe_array.compute`` 1.0 per MAC; ``pe_array.input_spad_read``, ``weight_spad_read`` and
  ``psum_spad_update`` 1.0 per word.
- ``pe_array.gated_compute`` 0.1 per gated MAC. Assumption (not from the papers): the multiplier's datapath
  does not toggle, but the clock tree, the pipeline registers and the zero detection still do.
- ``pe_array.skipped_compute`` 0.0: a skipped MAC spends neither a cycle nor energy in the MAC unit.
- ``pe_array.input_spad_metadata_read`` 0.25 per offset: a 4-bit offset read costs a quarter of a 16-bit word.
- A mechanism's own actions have their energies in its block, ``pe_array.pe.mechanism.energy_pj``, declared
  with their sources in its module (:mod:`sparsesim.mechanisms`): e.g. SCNN's ``wasted_compute`` 1.0 per
  dropped product, ``crossbar_transfer`` 0.25 per product routed to a bank, ``halo_transfer`` 2.0 per halo
  partial sum, ``weight_spad_metadata_read`` 0.25 per weight index; UCNN's ``activation_add`` 0.05;
  PredictiveNet's ``msb_compute`` / ``lsb_compute`` 0.55; a mixture of experts' ``router_compute`` 1.0.
- ``noc.transfer`` 2.0 per word injected (a multicast word counts once).
- ``global_buffer.read`` / ``write`` 6.0 per word.
- ``dram.read`` / ``write`` per burst: 200 pJ per word, times the words in a burst. This default depends on
  two other parameters, so a config leaves it ``None`` and :meth:`HwConfig.energy_table` derives it each
  time: ``200 * dram.burst_bytes / word_bytes`` (6400.0 pJ with the defaults). A sweep that changes
  ``burst_bytes`` or ``word_bytes`` therefore changes the DRAM energy with it. Give ``energy_pj.dram.read``
  / ``write`` explicitly to override it.

The ratios were measured for 16-bit words: with another ``word_bytes`` the defaults still charge them per
word, so set the table explicitly for a machine with wider or narrower words.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import os
import re
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from sparsesim.config.schema import (
    Block,
    block,
    build,
    describe,
    explain_param,
    flat_defaults,
    flatten,
    iter_params,
    param,
    read_block,
    required_param,
    tree_problems,
)
from sparsesim.errors import ConfigError
from sparsesim.files import InputFileError, read_input_text
from sparsesim.sparse.motion import INTERPOLATIONS

__all__ = [
    "DATAFLOWS",
    "NOC_KINDS",
    "DramConfig",
    "DECODER_PLACEMENTS",
    "ACTIVATION_FORMATS",
    "WEIGHT_FORMATS",
    "DecoderConfig",
    "MappingConfig",
    "DecoderEnergyConfig",
    "FormatsConfig",
    "LevelFormatsConfig",
    "PeFormatsConfig",
    "DramEnergyConfig",
    "EnergyConfig",
    "GlobalBufferConfig",
    "GlobalBufferEnergyConfig",
    "HwConfig",
    "NocConfig",
    "NocEnergyConfig",
    "PeArrayConfig",
    "PeArrayEnergyConfig",
    "PeConfig",
    "MechanismConfig",
    "mechanism_config_class",
    "mechanism_kinds",
    "param",
    "energy_param",
    "block",
    "ConfigBlock",
    "TemporalConfig",
    "MotionUnitEnergyConfig",
    "explain_hwconfig",
    "hwconfig_to_dict",
    "load_hwconfig",
    "parse_hwconfig",
    "parse_yaml_value",
]

#: The interconnects a ``noc.kind`` may name.
NOC_KINDS: tuple[str, ...] = ("multicast_bus",)
#: Storage formats a tensor may have (presets of :mod:`sparsesim.sparse.formats`, by the tensor's role).
ACTIVATION_FORMATS: tuple[str, ...] = ("U", "B", "RLE", "RLE_gamma", "CP", "CSR", "CSC", "BB", "ZFB")
WEIGHT_FORMATS: tuple[str, ...] = ("U", "B", "RLE", "RLE_gamma", "CP", "CSR", "CSC", "BB")
#: Where the decoder may sit, on the way from DRAM to the PEs.
DECODER_PLACEMENTS: tuple[str, ...] = ("none", "global_buffer_input", "global_buffer_output", "pe_input")

#: DRAM energy per 16-bit word relative to one MAC (Eyeriss, ISCA 2016), times 1.0 pJ per MAC.
DRAM_PJ_PER_WORD = 200.0

# Upper (and some lower) bounds shared by many parameters. Generous for any machine that has been built or
# proposed, and tight enough that a value passing validation can neither make the simulator allocate
# memory in proportion to it nor overflow a float in a report (an energy or a time of inf).
#: Rates (bytes, elements or bits per cycle): 1/1024 to 2**30 per cycle.
MIN_RATE_PER_CYCLE = 1 / 1024
MAX_RATE_PER_CYCLE = float(2**30)
#: Latencies: up to a billion cycles.
MAX_LATENCY_CYCLES = 10**9
#: Energies: up to 1e9 pJ (a millijoule) per action, a million times a DRAM burst.
MAX_PJ_PER_ACTION = 1e9
#: The PE array: at most 1024 rows, 1024 columns and 65,536 PEs in all (a TPU-sized 256 x 256 array).
MAX_PE_ROWS = MAX_PE_COLUMNS = 1024
MAX_PES = 65536
#: The dataflows a PE array can be wired for (see ``pe_array.dataflow``).
DATAFLOWS = ("output_stationary", "row_stationary", "planar")


def _rate(default: float, doc: str) -> float:
    """A transfer or processing rate per cycle, from ``MIN_RATE_PER_CYCLE`` to ``MAX_RATE_PER_CYCLE``."""
    return param(default, doc, ge=MIN_RATE_PER_CYCLE, le=MAX_RATE_PER_CYCLE)


def _latency(default: int, doc: str) -> int:
    """A latency in cycles, from 0 to ``MAX_LATENCY_CYCLES``."""
    return param(default, doc, ge=0, le=MAX_LATENCY_CYCLES)


def _energy(default: float | None, doc: str, derived: str | None = None) -> Any:
    """An energy per action in pJ, from 0 to ``MAX_PJ_PER_ACTION``."""
    return param(default, doc, ge=0, le=MAX_PJ_PER_ACTION, derived=derived)


#: The base of every config block, for the blocks a mechanism declares (its ``Energy``). The mechanisms
#: declare their parameters with the same ``param``, ``energy_param`` and ``block``.
ConfigBlock = Block
energy_param = _energy
_iter_params = iter_params  # the name the tests use

# ---------------------------------------------------------------------------------------------------------
# The hardware blocks
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DramConfig(Block):
    """Off-chip DRAM: one channel with a peak bandwidth, a latency per transaction and a burst size."""

    bandwidth_bytes_per_cycle: float = _rate(
        16.0, "Peak off-chip transfer rate, in bytes per accelerator clock cycle."
    )
    latency_cycles: int = _latency(
        100, "Access latency, paid once per transaction (a transaction is one or more bursts)."
    )
    burst_bytes: int = param(
        64,
        "Transfer granularity: transfers are rounded up to whole bursts; one read/write action = one burst.",
        ge=1,
        le=2**20,
    )


@dataclass(frozen=True, kw_only=True)
class GlobalBufferConfig(Block):
    """On-chip global buffer (SRAM or eDRAM) between DRAM and the NoC."""

    capacity_bytes: int = param(131072, "Storage capacity of the global buffer.", ge=1, le=2**40)
    banks: int = param(
        1,
        "1 = a single port shared by reads and writes; >= 2 = separate read and write ports.",
        ge=1,
        le=1024,
    )
    read_bandwidth_bytes_per_cycle: float = _rate(32.0, "Peak read rate of the global buffer.")
    write_bandwidth_bytes_per_cycle: float = _rate(32.0, "Peak write rate of the global buffer.")


@dataclass(frozen=True, kw_only=True)
class NocConfig(Block):
    """On-chip network from the global buffer to the PEs."""

    kind: str = param(
        "multicast_bus",
        "Interconnect model; on a multicast bus a word sent to many PEs is sent once.",
        choices=NOC_KINDS,
    )
    bandwidth_bytes_per_cycle: float = _rate(32.0, "Peak injection rate into the NoC.")
    latency_cycles: int = _latency(2, "Cycles from injection to delivery at a PE.")


@dataclass(frozen=True, kw_only=True)
class MechanismConfig(Block):
    """Base of a PE mechanism's config block (``pe_array.pe.mechanism``): its ``kind`` and, in each subclass,
    the mechanism's own parameters and an ``energy_pj`` block with one entry per action it adds.

    A subclass names its kind in its class statement (``class Config(MechanismConfig, kind="n_m_weights")``)
    and is registered by that: the loader reads a ``mechanism`` mapping with the class its ``kind`` names.
    Mechanism modules live in :mod:`sparsesim.mechanisms` (found when first needed) or in any package that
    declares a ``sparsesim.mechanisms`` entry point.
    """

    kind: str = param(
        "dense", "The PE mechanism; `sparsesim validate --explain` lists every kind and its keys."
    )

    #: The kind a registered subclass configures.
    KIND: ClassVar[str] = ""
    #: The dataflows (:data:`DATAFLOWS`) this mechanism's PEs can run, the one they are built for first.
    DATAFLOWS: ClassVar[tuple[str, ...]] = ("output_stationary",)
    #: The registered config classes, by kind.
    KINDS: ClassVar[dict[str, type[MechanismConfig]]] = {}

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            # Each kind's block defaults to its own kind (the dataclass decorator reads this field next).
            annotations = cls.__dict__.get("__annotations__", {})
            cls.__annotations__ = {"kind": "str", **annotations}
            cls.kind = param(kind, MechanismConfig.__dataclass_fields__["kind"].metadata["doc"])  # type: ignore[assignment]
            known = MechanismConfig.KINDS.get(kind)
            where = (cls.__module__, cls.__qualname__)
            if known is not None and (known.__module__, known.__qualname__) != where:
                raise TypeError(f"two mechanisms named {kind!r}: {known.__module__} and {cls.__module__}")
            cls.KIND = kind
            MechanismConfig.KINDS[kind] = cls

    @classmethod
    def select(cls, data: Mapping[Any, Any], path: str, problems: list[tuple[str, str]]) -> type | None:
        """The config class of the mechanism ``data["kind"]`` names, or None with the problem added."""
        kind = data.get("kind", "dense")
        kinds = mechanism_kinds()
        if isinstance(kind, str) and kind in kinds:
            return kinds[kind]
        if not isinstance(kind, str):
            problems.append((path + ".kind", f"expected a mechanism's name, got {describe(kind)}"))
            return None
        close = difflib.get_close_matches(kind, list(kinds), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append((path + ".kind", f"unknown mechanism {kind!r}{hint}; known: {', '.join(kinds)}"))
        return None

    @classmethod
    def select_built(cls, values: Mapping[str, Any], prefix: str) -> type:
        return mechanism_config_class(values.get(prefix + "kind", "dense"))

    def own_problems(self, prefix: str) -> list[tuple[str, str]]:
        """A registered kind's block must keep its kind (``dataclasses.replace`` could change it)."""
        if self.kind == type(self).KIND:
            return []
        return [(prefix + "kind", f"a {type(self).KIND} block cannot have kind {self.kind!r}")]

    @classmethod
    def cross_field_problems(
        cls, values: Mapping[str, Any], bad_paths: set[str], prefix: str
    ) -> list[tuple[str, str]]:
        """Problems of rules that tie this mechanism's parameters (under ``prefix``) to the rest of the
        machine (``values``: every leaf by dotted path); none by default."""
        return []


def mechanism_kinds() -> dict[str, type[MechanismConfig]]:
    """Every registered mechanism config class, by kind (the mechanism modules are imported first)."""
    _discover_mechanisms()
    return dict(sorted(MechanismConfig.KINDS.items()))


def mechanism_config_class(kind: str) -> type[MechanismConfig]:
    """The config class of mechanism ``kind``; ``KeyError`` if no mechanism has that name."""
    _discover_mechanisms()
    return MechanismConfig.KINDS[kind]


_DISCOVERED = False


def _discover_mechanisms() -> None:
    """Import the built-in mechanism modules and those of installed plug-ins, once.

    This is plug-in discovery, not a dependency: the config layer names no mechanism, and a mechanism module
    registers itself by defining its :class:`MechanismConfig` subclass.
    """
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import importlib
    from importlib.metadata import entry_points

    importlib.import_module("sparsesim.mechanisms")
    for entry in entry_points(group="sparsesim.mechanisms"):
        entry.load()


def _default_mechanism() -> MechanismConfig:
    return mechanism_config_class("dense")()


@dataclass(frozen=True, kw_only=True)
class PeConfig(Block):
    """One processing element: its MAC lanes, its three scratchpads and its sparsity mechanism."""

    activation_lanes: int = param(
        16,
        "Input activations consumed per cycle per PE, each lane from its own slice of the input channels.",
        ge=1,
        le=256,
    )
    filter_lanes: int = param(
        16,
        "Filters each activation is multiplied with per cycle "
        "(MACs per cycle per PE = activation_lanes * filter_lanes).",
        ge=1,
        le=256,
    )
    input_spad_bytes: int = param(
        512, "Input activation scratchpad (register file) of one PE.", ge=1, le=2**30
    )
    weight_spad_bytes: int = param(8192, "Weight scratchpad of one PE.", ge=1, le=2**30)
    psum_spad_bytes: int = param(128, "Partial sum scratchpad of one PE.", ge=1, le=2**30)
    activation_threshold: float = param(
        0.0,
        "Activation pruning (Cnvlutin's pruning, Minerva): input activations with |a| <= this are zeroed "
        "before they are stored or sent (lossy if > 0: the output error is reported). 0 = exact zeros only.",
        ge=0,
    )
    mechanism: MechanismConfig = dataclasses.field(
        default_factory=_default_mechanism,
        metadata={
            "doc": "The sparsity mechanism of the PEs: `kind` (a module of sparsesim.mechanisms) and its "
            "own parameters and action energies."
        },
    )


@dataclass(frozen=True, kw_only=True)
class PeArrayConfig(Block):
    """A 2-D array of identical PEs fed by the NoC."""

    rows: int = param(
        1,
        "PE rows: each row works on a different output position, in lockstep (rows x columns <= 65536).",
        ge=1,
        le=MAX_PE_ROWS,
    )
    columns: int = param(16, "PE columns: each column works on different filters.", ge=1, le=MAX_PE_COLUMNS)
    dataflow: str = param(
        "native",
        "How a PE tile spreads over the PEs, as the machine is wired: output_stationary (rows on output "
        "positions, columns on filters: DaDianNao), row_stationary (a filter row per PE, output rows across "
        "the columns: Eyeriss; PEs of one MAC), planar (SCNN); native: the one the mechanism's PEs are "
        "built for; any: the mapper searches every dataflow they can run.",
        choices=("native", *DATAFLOWS, "any"),
    )
    pe: PeConfig = block(PeConfig, "One processing element.")

    @property
    def dataflows(self) -> tuple[str, ...]:
        """The dataflows a mapper may use: the one ``dataflow`` names (``native``: the mechanism's first),
        or, for ``any``, every one the mechanism's PEs can run (row stationary only on PEs of one MAC)."""
        if self.dataflow == "native":
            return self.pe.mechanism.DATAFLOWS[:1]
        if self.dataflow != "any":
            return (self.dataflow,)
        one_mac = (self.pe.activation_lanes, self.pe.filter_lanes) == (1, 1)
        return tuple(d for d in self.pe.mechanism.DATAFLOWS if d != "row_stationary" or one_mac)


_FORMAT_DOC = (
    "U uncompressed, B bitmask, RLE run length (5-bit runs), RLE_gamma (Elias-gamma runs), CP coordinates, "
    "CSR / CSC (UOP over CP), BB bitmask per rank, ZFB Cnvlutin's zero-free bricks (activations only)"
)


@dataclass(frozen=True, kw_only=True)
class LevelFormatsConfig(Block):
    """How the tensors are stored at one level of the memory hierarchy (Sparseloop's format vocabulary)."""

    weights: str = param("U", "Format of the weights. " + _FORMAT_DOC + ".", choices=WEIGHT_FORMATS)
    inputs: str = param("U", "Format of the input activations.", choices=ACTIVATION_FORMATS)
    outputs: str = param("U", "Format of the (finished) output activations.", choices=ACTIVATION_FORMATS)


@dataclass(frozen=True, kw_only=True)
class PeFormatsConfig(Block):
    """How the operands reach and sit in a PE's scratchpads (partial sums are always uncompressed)."""

    weights: str = param("U", "Format of the weights in the PE.", choices=WEIGHT_FORMATS)
    inputs: str = param("U", "Format of the input activations in the PE.", choices=ACTIVATION_FORMATS)


@dataclass(frozen=True, kw_only=True)
class FormatsConfig(Block):
    """The format of each tensor at each storage level. Sizes moved and stored follow the real data.

    A tensor whose format changes on the way in (DRAM -> global buffer -> PE) needs the decoder at that
    boundary; on the way out (PE -> global buffer -> DRAM) the encoder is not modelled (free).
    """

    dram: LevelFormatsConfig = block(LevelFormatsConfig, "Formats in DRAM (what DRAM traffic moves).")
    global_buffer: LevelFormatsConfig = block(
        LevelFormatsConfig, "Formats in the global buffer (its occupancy, hence the tiling)."
    )
    pe: PeFormatsConfig = block(PeFormatsConfig, "Formats in the PEs' scratchpads.")


@dataclass(frozen=True, kw_only=True)
class MappingConfig(Block):
    """How layers are mapped onto the machine (the compiler's part)."""

    compaction: str = param(
        "zero_filters_and_channels",
        "zero_filters_and_channels: filters and input channels whose weights are all zero are dropped before "
        "mapping (their MACs count as skipped; a dropped filter outputs activation(bias)); none: kept.",
        choices=("none", "zero_filters_and_channels"),
    )


@dataclass(frozen=True, kw_only=True)
class DecoderConfig(Block):
    """A decoder of compressed tensors on the way from DRAM to the PEs (one per machine, or none)."""

    at: str = param(
        "none",
        "Where it sits: global_buffer_input (DRAM -> buffer), global_buffer_output (buffer -> NoC, so the "
        "NoC carries the PE format), pe_input (NoC -> PEs, so the NoC carries the buffer format), or none.",
        choices=DECODER_PLACEMENTS,
    )
    elements_per_cycle: float = _rate(16.0, "Stored elements (values) parsed per cycle.")
    metadata_bits_per_cycle: float = _rate(64.0, "Metadata bits parsed per cycle.")
    latency_cycles: int = _latency(2, "Pipeline latency, paid once per transaction.")


@dataclass(frozen=True, kw_only=True)
class TemporalConfig(Block):
    """Temporal reuse across video frames (EVA²'s activation motion compensation) and its motion unit.

    Only :func:`sparsesim.temporal.simulate_frames` reads it; a single-frame ``simulate`` ignores it. Key
    frames run every layer and store the target layer's output; predicted frames run motion estimation and
    the warp of the stored activation on the motion unit, then only the layers after the target.
    """

    key_frame_interval: int = param(
        1,
        "Every this many frames is a key frame (1 = every frame: no temporal reuse).",
        ge=1,
        le=10**6,
    )
    target_layer: str = param(
        "",
        "Last layer run on predicted frames' behalf by the key frame: its output (as the next layer reads "
        "it, max-pooled where the network pools) is stored and warped. Required when key_frame_interval > 1.",
    )
    key_frame_threshold: float = param(
        0.0,
        "Adaptive key frames (EVA²): a would-be predicted frame whose motion-estimation match error, per "
        "pixel and channel, exceeds this becomes a key frame (0 = off: fixed interval only).",
        ge=0,
    )
    search_radius_pixels: int = param(
        8,
        "Motion search: every whole-pixel vector with |dy|, |dx| <= this is tried ((2r+1)^2 vectors).",
        ge=0,
        le=64,
    )
    interpolation: str = param(
        "bilinear",
        "Warp of the stored activation: bilinear for fractional vectors (vector / stride), or nearest.",
        choices=INTERPOLATIONS,
    )
    difference_lanes: int = param(
        64,
        "Motion unit: absolute pixel differences per cycle (tile SADs, the diff-tile producer).",
        ge=1,
        le=2**20,
    )
    accumulate_lanes: int = param(
        16,
        "Motion unit: tile SADs added into receptive-field costs per cycle (the consumer).",
        ge=1,
        le=2**20,
    )
    warp_lanes: int = param(4, "Motion unit: warped activations produced per cycle.", ge=1, le=2**20)


_DRAM_DERIVED = "derived when omitted or null: 200 * dram.burst_bytes / word_bytes, i.e. 200 pJ per word"


@dataclass(frozen=True, kw_only=True)
class DramEnergyConfig(Block):
    """Energy of the DRAM's actions, pJ per burst."""

    read: float | None = _energy(None, "pJ per burst read.", derived=_DRAM_DERIVED)
    write: float | None = _energy(None, "pJ per burst written.", derived=_DRAM_DERIVED)


@dataclass(frozen=True, kw_only=True)
class GlobalBufferEnergyConfig(Block):
    """Energy of the global buffer's actions, pJ per word."""

    read: float = _energy(6.0, "pJ per word read (Eyeriss: 6x a MAC).")
    write: float = _energy(6.0, "pJ per word written (Eyeriss: 6x a MAC).")


@dataclass(frozen=True, kw_only=True)
class NocEnergyConfig(Block):
    """Energy of the NoC's actions, pJ per word."""

    transfer: float = _energy(2.0, "pJ per word injected; a multicast word counts once (Eyeriss: 2x a MAC).")


@dataclass(frozen=True, kw_only=True)
class PeArrayEnergyConfig(Block):
    """Energy of the actions every PE has, pJ per MAC or per word; the same table for every PE of the array.

    A mechanism's own actions (UCNN's activation additions, SCNN's crossbar transfers, ...) have their
    energies in its block, ``pe_array.pe.mechanism.energy_pj``; the energy table joins the two."""

    compute: float = _energy(1.0, "pJ per MAC performed (16-bit MAC at 45 nm, after Horowitz 2014).")
    gated_compute: float = _energy(
        0.1, "pJ per gated MAC (assumed: the clock and the zero detection still toggle)."
    )
    skipped_compute: float = _energy(0.0, "pJ per skipped MAC (no cycle, no MAC energy).")
    input_spad_read: float = _energy(1.0, "pJ per input activation word read (Eyeriss: 1x a MAC).")
    input_spad_metadata_read: float = _energy(
        0.25, "pJ per activation offset read (a 4-bit offset vs a 16-bit word)."
    )
    weight_spad_read: float = _energy(1.0, "pJ per weight word read (Eyeriss: 1x a MAC).")
    psum_spad_update: float = _energy(1.0, "pJ per partial sum read-modify-write (Eyeriss: 1x a MAC).")


@dataclass(frozen=True, kw_only=True)
class DecoderEnergyConfig(Block):
    """Energy of the decoder's actions."""

    decode: float = _energy(0.5, "pJ per stored element decoded (assumed: about half a scratchpad access).")
    metadata_read: float = _energy(1.0, "pJ per word of metadata read (as a scratchpad read).")


@dataclass(frozen=True, kw_only=True)
class MotionUnitEnergyConfig(Block):
    """Energy of the motion unit's actions (EVA²); assumed values, not the paper's (see eva2.yaml)."""

    absolute_difference: float = _energy(
        0.1, "pJ per |pixel difference| accumulated (assumed: an 8-bit subtract and a 16-bit add)."
    )
    tile_accumulate: float = _energy(0.1, "pJ per tile SAD added to a receptive-field cost (assumed).")
    compare: float = _energy(0.1, "pJ per candidate cost compared with the best (assumed).")
    interpolate: float = _energy(
        4.0, "pJ per bilinear output: four 16-bit multiply-adds (assumed, 1 pJ per MAC)."
    )
    copy: float = _energy(0.0, "pJ per output copied (a whole vector); its read is charged apart.")
    pixel_buffer_read: float = _energy(3.0, "pJ per 8-bit pixel read (half a 16-bit SRAM word).")
    pixel_buffer_write: float = _energy(3.0, "pJ per 8-bit pixel written (key frames).")
    activation_buffer_read: float = _energy(6.0, "pJ per stored activation word read (as the buffer).")
    activation_buffer_write: float = _energy(6.0, "pJ per activation word written (as the buffer).")


@dataclass(frozen=True, kw_only=True)
class EnergyConfig(Block):
    """Energy per action (Accelergy-style table): energy = sum of action counts x pJ per action."""

    dram: DramEnergyConfig = block(DramEnergyConfig, "DRAM actions, pJ per burst.")
    global_buffer: GlobalBufferEnergyConfig = block(GlobalBufferEnergyConfig, "Global buffer, pJ per word.")
    noc: NocEnergyConfig = block(NocEnergyConfig, "NoC, pJ per word injected.")
    pe_array: PeArrayEnergyConfig = block(PeArrayEnergyConfig, "Each PE, pJ per MAC or per word.")
    decoder: DecoderEnergyConfig = block(DecoderEnergyConfig, "Decoder, pJ per element or metadata word.")
    motion_unit: MotionUnitEnergyConfig = block(
        MotionUnitEnergyConfig, "EVA²'s motion unit (temporal reuse), pJ per operation or word."
    )


@dataclass(frozen=True, kw_only=True)
class HwConfig(Block):
    """A whole accelerator: DRAM → global buffer → NoC → PE array, plus its energy table.

    Construction validates the whole tree and raises :class:`ConfigError` listing every problem.

    A config holds what was given: derived defaults (``energy_pj.dram.read`` / ``write``) stay ``None``
    and are derived from the parameters they depend on whenever they are used (:meth:`energy_table`), so
    a ``dataclasses.replace`` or a sweep that changes ``dram.burst_bytes`` or ``word_bytes`` changes them
    too.
    """

    name: str = required_param("Short identifier of the machine, used in reports.")
    description: str = param("", "Free text: what this machine is and where its numbers come from.")
    clock_hz: float = param(1.0e9, "Clock frequency; turns cycles into seconds.", ge=1e3, le=1e12)
    word_bytes: int = param(2, "Bytes per data word (activation, weight, partial sum).", ge=1, le=16)
    dram: DramConfig = block(DramConfig, "Off-chip DRAM.")
    global_buffer: GlobalBufferConfig = block(GlobalBufferConfig, "On-chip global buffer.")
    noc: NocConfig = block(NocConfig, "Network from the global buffer to the PEs.")
    pe_array: PeArrayConfig = block(PeArrayConfig, "The array of processing elements.")
    formats: FormatsConfig = block(FormatsConfig, "Storage format of each tensor at each level.")
    decoder: DecoderConfig = block(DecoderConfig, "Decoder of compressed tensors.")
    mapping: MappingConfig = block(MappingConfig, "How layers are mapped onto the machine.")
    temporal: TemporalConfig = block(TemporalConfig, "Temporal reuse across frames (EVA²); off by default.")
    energy_pj: EnergyConfig = block(EnergyConfig, "Energy per action, in pJ.")

    def __post_init__(self) -> None:
        super().__post_init__()
        problems, bad_paths = tree_problems(self)
        problems += _cross_field_problems(flatten(self), bad_paths)
        if problems:
            raise ConfigError(f"<HwConfig {self.name!r}>", problems)

    def energy_table(self) -> dict[str, dict[str, float]]:
        """The energy table the machine uses, ``{component: {action: pJ per action}}``, derived defaults
        filled in: a DRAM energy left ``None`` is ``200 pJ * dram.burst_bytes / word_bytes`` per burst."""
        burst_pj = DRAM_PJ_PER_WORD * self.dram.burst_bytes / self.word_bytes
        table = dataclasses.asdict(self.energy_pj)
        mechanism = self.pe_array.pe.mechanism
        if any(f.name == "energy_pj" for f in dataclasses.fields(mechanism)):
            table["pe_array"].update(dataclasses.asdict(typing.cast(Any, mechanism).energy_pj))
        table["dram"] = {action: burst_pj if pj is None else pj for action, pj in table["dram"].items()}
        return {
            component: {action: float(pj) for action, pj in actions.items()}
            for component, actions in table.items()
        }


# ---------------------------------------------------------------------------------------------------------
# Checks across parameters
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MinimumRule:
    """``path`` must be >= a product of other parameters; ``why`` says what the bound guarantees."""

    path: str
    factors: tuple[int | str, ...]  # numbers and dotted paths, multiplied together
    why: str

    def expression(self) -> str:
        return " * ".join(str(factor) for factor in self.factors)

    def problem(self, values: Mapping[str, Any]) -> str | None:
        numbers_ = [values[f] if isinstance(f, str) else f for f in self.factors]
        minimum = math.prod(numbers_)
        if values[self.path] >= minimum:
            return None
        worked = "" if len(numbers_) == 1 else " = " + " * ".join(str(n) for n in numbers_)
        return f"must be >= {self.expression()}{worked} = {minimum} ({self.why}), got {values[self.path]}"


_CROSS_FIELD_RULES: tuple[_MinimumRule, ...] = (
    _MinimumRule("dram.burst_bytes", ("word_bytes",), "a burst carries at least one word"),
    _MinimumRule(
        "global_buffer.capacity_bytes",
        (2, "dram.burst_bytes"),
        "double buffering of at least one DRAM burst",
    ),
    _MinimumRule(
        "pe_array.pe.input_spad_bytes",
        ("pe_array.pe.activation_lanes", "word_bytes"),
        "one word per activation lane",
    ),
    _MinimumRule(
        "pe_array.pe.weight_spad_bytes",
        ("pe_array.pe.filter_lanes", "word_bytes"),
        "one word per filter lane",
    ),
    _MinimumRule(
        "pe_array.pe.psum_spad_bytes",
        ("pe_array.pe.filter_lanes", "word_bytes"),
        "one partial sum per filter lane",
    ),
)


_BOUNDARIES = (  # (upstream level, downstream level, the decoder placements that can convert between them)
    ("dram", "global_buffer", ("global_buffer_input",)),
    ("global_buffer", "pe", ("global_buffer_output", "pe_input")),
)


def _format_boundary_problems(values: Mapping[str, Any], bad_paths: set[str]) -> list[tuple[str, str]]:
    """A tensor whose format changes on its way to the PEs needs the decoder at that boundary."""
    problems = []
    for tensor in ("weights", "inputs"):
        for upstream, downstream, placements in _BOUNDARIES:
            up, down = f"formats.{upstream}.{tensor}", f"formats.{downstream}.{tensor}"
            if {up, down, "decoder.at"} & bad_paths or values[up] == values[down]:
                continue
            if values["decoder.at"] not in placements:
                problems.append(
                    (
                        down,
                        (
                            f"{values[down]} differs from {up} ({values[up]}): a decoder must convert it "
                            f"(decoder.at: {' or '.join(placements)}), "
                            f"but decoder.at is {values['decoder.at']}"
                        ),
                    )
                )
    return problems


MECHANISM_PATH = "pe_array.pe.mechanism"


def _mechanism_problems(values: Mapping[str, Any], bad_paths: set[str]) -> list[tuple[str, str]]:
    """The configured mechanism's own rules (see :meth:`MechanismConfig.cross_field_problems`)."""
    kind_path = MECHANISM_PATH + ".kind"
    if kind_path in bad_paths or values.get(kind_path) not in mechanism_kinds():
        return []
    cls = mechanism_config_class(values[kind_path])
    return cls.cross_field_problems(values, bad_paths, MECHANISM_PATH + ".")


def _dataflow_problems(values: Mapping[str, Any], bad_paths: set[str]) -> list[tuple[str, str]]:
    """The dataflow must be one the mechanism's PEs can run; row stationary needs PEs of one MAC."""
    path, kind_path = "pe_array.dataflow", MECHANISM_PATH + ".kind"
    if {path, kind_path} & bad_paths or values.get(kind_path) not in mechanism_kinds():
        return []
    named, kind = values[path], values[kind_path]
    runnable = mechanism_config_class(kind).DATAFLOWS
    if named not in ("any", "native") and named not in runnable:
        return [(path, f"the {kind} PEs run {' or '.join(runnable)} only (or `any` of them), not {named}")]
    lane_paths = ("pe_array.pe.activation_lanes", "pe_array.pe.filter_lanes")
    lanes = tuple(values[p] for p in lane_paths)
    if named == "row_stationary" and lanes != (1, 1) and not set(lane_paths) & bad_paths:
        return [
            (
                path,
                "row stationary runs a 1-D convolution a MAC at a time in each PE: it needs "
                f"pe_array.pe.activation_lanes and filter_lanes of 1, got {lanes[0]} and {lanes[1]}",
            )
        ]
    return []


def _pe_count_problems(values: Mapping[str, Any], bad_paths: set[str]) -> list[tuple[str, str]]:
    """At most ``MAX_PES`` PEs: the PE models hold a few values per PE and output position."""
    if {"pe_array.rows", "pe_array.columns"} & bad_paths:
        return []
    rows, columns = values["pe_array.rows"], values["pe_array.columns"]
    if rows * columns <= MAX_PES:
        return []
    return [("pe_array.rows", f"rows * columns must be <= {MAX_PES}, got {rows} * {columns}")]


def _temporal_problems(values: Mapping[str, Any], bad_paths: set[str]) -> list[tuple[str, str]]:
    """Temporal reuse needs a target layer whose activation the key frames store."""
    path = "temporal.target_layer"
    if {path, "temporal.key_frame_interval"} & bad_paths or values["temporal.key_frame_interval"] == 1:
        return []
    if not values[path]:
        interval = values["temporal.key_frame_interval"]
        return [(path, f"temporal.key_frame_interval is {interval}: name the layer whose output is reused")]
    return []


def _cross_field_problems(values: Mapping[str, Any], bad_paths: set[str]) -> list[tuple[str, str]]:
    """Problems of the cross-field rules, skipping any rule that involves an already invalid value."""
    problems = (
        _format_boundary_problems(values, bad_paths)
        + _mechanism_problems(values, bad_paths)
        + _dataflow_problems(values, bad_paths)
        + _pe_count_problems(values, bad_paths)
        + _temporal_problems(values, bad_paths)
    )
    for rule in _CROSS_FIELD_RULES:
        involved = {rule.path} | {f for f in rule.factors if isinstance(f, str)}
        if involved & bad_paths:
            continue
        message = rule.problem(values)
        if message is not None:
            problems.append((rule.path, message))
    return problems


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


def _yaml_value(f: dataclasses.Field[Any], kind: str, value: object) -> object:
    """A value as our YAML loader read it, for :func:`read_block`: a string parameter given ``0E0`` reads
    the string "0E0" (see :class:`_ExponentFloat`)."""
    return value.text if kind == "str" and isinstance(value, _ExponentFloat) else value


# The flat PE keys of configs written before mechanisms were modules (sparsesim 0.1.0), and where they went.
_LEGACY_PE_KEYS = {  # old key under pe_array.pe -> (new key under pe_array.pe.mechanism)
    "n_m_pattern": "pattern",
    "kernel_pattern_entries": "entries",
    "kernel_pattern_library_size": "library_size",
    "speculative_macs": "speculative_macs",
    "speculation_threshold": "threshold",
    "moe_experts": "experts",
    "moe_top_k": "top_k",
    "moe_seed": "seed",
    "msb_bits": "msb_bits",
    "msb_threshold": "threshold",
    "accumulator_banks": "accumulator_banks",
    "accumulator_bank_entries": "accumulator_bank_entries",
    "output_channel_group": "output_channel_group",
    "accumulator_arbitration": "arbitration",
}
_LEGACY_PE_ENERGIES = (
    "activation_add",
    "router_compute",
    "msb_compute",
    "lsb_compute",
    "wasted_compute",
    "weight_spad_metadata_read",
    "crossbar_transfer",
    "halo_transfer",
)


def _legacy_mechanism(pe: Mapping[Any, Any]) -> dict[str, Any]:
    """The ``mechanism`` block an old ``pe`` block's ``sparsity`` and ``early_termination`` mean."""
    sparsity = pe.get("sparsity", "none")
    termination = pe.get("early_termination", "none")
    skip = sparsity == "zero_skip_activations"
    if termination in ("exact", "predictive"):
        block: dict[str, Any] = {"kind": "relu_early_termination", "mode": termination}
        block["skip_zero_activations"] = skip
    elif termination in ("msb_first", "msb_first_exact"):
        decision = "exact" if termination == "msb_first_exact" else "predictive"
        block = {"kind": "msb_first", "decision": decision, "skip_zero_activations": skip}
    elif termination != "none":
        block = {"kind": f"early_termination {termination}"}  # unknown: reported as an unknown kind
    else:
        block = {"kind": "dense" if sparsity == "none" else sparsity}
    for old, new in _LEGACY_PE_KEYS.items():
        if old in pe:
            block[new] = pe[old]
    return block


def _migrated(data: Mapping[Any, Any], source: str) -> Mapping[Any, Any]:
    """``data`` with an old config's flat PE mechanism keys moved into ``pe_array.pe.mechanism``.

    Old configs keep loading; a warning shows the block to write instead. Old keys next to a ``mechanism``
    block are left alone (and reported as unknown keys).
    """
    array = data.get("pe_array")
    pe = array.get("pe") if isinstance(array, Mapping) else None
    legacy = ("sparsity", "early_termination", *_LEGACY_PE_KEYS)
    if not isinstance(pe, Mapping) or "mechanism" in pe or not any(key in pe for key in legacy):
        return data
    mechanism = _legacy_mechanism(pe)
    energies = data.get("energy_pj")
    pe_energies = energies.get("pe_array") if isinstance(energies, Mapping) else None
    moved = {}
    cls = mechanism_kinds().get(mechanism["kind"])
    own = (
        {f.name for f in dataclasses.fields(cls.Energy)}
        if cls is not None and hasattr(cls, "Energy")
        else set()
    )
    if isinstance(pe_energies, Mapping):
        # The energies of actions this mechanism does not have were never charged: they are dropped.
        moved = {key: pe_energies[key] for key in _LEGACY_PE_ENERGIES if key in pe_energies and key in own}
    if moved:
        mechanism["energy_pj"] = moved
    snippet = yaml.safe_dump({"mechanism": mechanism}, sort_keys=False, default_flow_style=True).strip()
    warnings.warn(
        f"{source}: pe_array.pe.sparsity, early_termination and the mechanism's parameters are now one "
        f"block: replace them under pe_array.pe with `{snippet}`"
        + (" (and remove those energies from energy_pj.pe_array)" if moved else ""),
        FutureWarning,
        stacklevel=3,
    )
    new_pe = {key: value for key, value in pe.items() if key not in legacy}
    new_pe["mechanism"] = mechanism
    migrated = dict(data)
    migrated["pe_array"] = {**typing.cast(Mapping[Any, Any], array), "pe": new_pe}
    if isinstance(pe_energies, Mapping) and any(key in pe_energies for key in _LEGACY_PE_ENERGIES):
        kept = {key: value for key, value in pe_energies.items() if key not in _LEGACY_PE_ENERGIES}
        migrated["energy_pj"] = {**typing.cast(Mapping[Any, Any], energies), "pe_array": kept}
    return migrated


def parse_hwconfig(data: object, source: str = "<dict>") -> HwConfig:
    """Validate an already parsed mapping (e.g. from YAML or JSON) and build its :class:`HwConfig`.

    Missing parameters take their defaults. Raises :class:`ConfigError` naming ``source`` and listing
    every problem found: unknown keys (with the closest allowed key), a missing ``name``, wrong types
    (a boolean is not an integer; an integer is accepted for a float; a string is never a number),
    values out of range or not among the choices, non-finite numbers, and the cross-field rules.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            source,
            [("", f"the top level must be a mapping of parameter names to values, got {describe(data)}")],
        )
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    bad: set[str] = set()
    data = _migrated(data, source)
    read_block(HwConfig, data, "", values, bad, problems, _yaml_value)
    defaults = flat_defaults(HwConfig)
    kind = values.get(MECHANISM_PATH + ".kind", "dense")
    if kind in mechanism_kinds():
        defaults.update(flat_defaults(mechanism_config_class(kind), MECHANISM_PATH + "."))
    problems += _cross_field_problems({**defaults, **values}, bad)
    if problems:
        raise ConfigError(source, problems)
    try:
        return typing.cast(HwConfig, build(HwConfig, values))
    except ConfigError as error:  # pragma: no cover - the checks above are the same checks
        raise ConfigError(source, error.problems) from None


#: A hardware config file larger than this is refused before it is parsed (the shipped ones are ~6 KB;
#: PyYAML parses about 100 KB a second, so the limit also bounds the time spent on a hostile file).
MAX_HWCONFIG_BYTES = 256 * 1024
#: Mappings and lists nested deeper than this are refused (a config is 3 blocks deep; PyYAML composes
#: nodes recursively, so a file of a thousand nested ``[`` would otherwise end in a RecursionError).
MAX_HWCONFIG_DEPTH = 32


class _HwConfigLoader(yaml.SafeLoader):
    """``SafeLoader`` that reads ``1e9`` / ``606e6`` as floats, rejects keys repeated in a mapping and
    refuses nodes nested deeper than ``MAX_HWCONFIG_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_HWCONFIG_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_HWCONFIG_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key; SafeLoader reports it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


class _ExponentFloat(float):
    """A float our loader read from a scalar that YAML 1.1 (and so ``yaml.safe_dump``) takes as a string.

    It keeps the scalar's text so that a string parameter given ``name: 0E0`` reads the string "0E0": a
    config written with ``yaml.safe_dump`` loads back identical.
    """

    text: str

    def __new__(cls, text: str) -> _ExponentFloat:
        number = super().__new__(cls, text.replace("_", ""))
        number.text = text
        return number

    def __deepcopy__(self, memo: dict) -> _ExponentFloat:
        return self  # immutable, as a float


_EXPONENT_FLOAT_TAG = "tag:sparsesim,2026:exponent-float"
_HwConfigLoader.add_implicit_resolver(
    _EXPONENT_FLOAT_TAG,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _construct_exponent_float(loader: _HwConfigLoader, node: yaml.ScalarNode) -> _ExponentFloat:
    return _ExponentFloat(loader.construct_scalar(node))


_HwConfigLoader.add_constructor(_EXPONENT_FLOAT_TAG, _construct_exponent_float)


def _construct_int(loader: _HwConfigLoader, node: yaml.ScalarNode) -> int:
    """YAML's integers, but one too long for Python's ``int()`` (over 4300 digits) is a YAML error, not a
    ``ValueError`` from deep inside PyYAML."""
    try:
        return typing.cast(int, loader.construct_yaml_int(node))
    except ValueError:
        digits = len(str(node.value))
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {digits} digits is too long", node.start_mark
        ) from None


_HwConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _yaml_error_message(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {problem}" + (f" ({context})" if context else "")


def parse_yaml_value(text: str, source: str) -> Any:
    """One value written in YAML (a ``--set`` on the command line), read as a config file's values are;
    :class:`ConfigError` naming ``source`` if it is not valid YAML."""
    if len(text) > MAX_HWCONFIG_BYTES:
        raise ConfigError(source, [("", f"the value is longer than {MAX_HWCONFIG_BYTES:,} characters")])
    try:
        return _yaml_data(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [("", _yaml_error_message(error))]) from None


def _yaml_data(text: str) -> Any:
    """``text`` read with :class:`_HwConfigLoader` (a SafeLoader subclass: no arbitrary objects), as a fresh
    copy that the caller may change."""
    return copy.deepcopy(_parsed_yaml(text))


def read_yaml_text(text: str, source: str, error: type[ConfigError] = ConfigError) -> Any:
    """``text`` (YAML or JSON) read as the config files are: safely, nesting bounded, numbers as YAML 1.2
    reads them; ``error`` naming ``source`` and the line if it is not valid YAML."""
    try:
        return _yaml_data(text)
    except yaml.YAMLError as problem:
        raise error(source, [("", _yaml_error_message(problem))]) from None


@functools.lru_cache(maxsize=64)
def _parsed_yaml(text: str) -> Any:
    # Parsed once per text and process: PyYAML reads about 100 KB a second, and the shipped configs'
    # comments make them 5-10 KB; a sweep or a test session loads the same files again and again.
    return yaml.load(text, Loader=_HwConfigLoader)  # a SafeLoader subclass: no arbitrary objects


#: The top-level key that makes a config file extend another file (see the module docstring).
BASE_KEY = "base"
#: A chain of ``base:`` may hold at most this many files after the one loaded (each extending the next):
#: deep enough for any family of machines, and it bounds what one load may read.
MAX_HWCONFIG_BASES = 8


def _read_config_file(path: str, source: str, where: str, referrer: str | None) -> Any:
    """The YAML data of one config file; :class:`ConfigError` naming ``source`` for an unreadable file,
    invalid YAML or an empty file. ``where`` names the file when it is a base (``" (in base file X)"``), and
    ``referrer`` is then the ``where`` of the file that names it: a base that cannot be read at all is a
    problem of that file's ``base`` key."""
    try:
        text = read_input_text(path, MAX_HWCONFIG_BYTES, "hardware config")
    except InputFileError as error:
        if referrer is None:
            raise ConfigError(source, [("", error.reason)]) from None
        raise ConfigError(source, [(BASE_KEY, f"{path}: {error.reason}{referrer}")]) from None
    try:
        data = _yaml_data(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [("", _yaml_error_message(error) + where)]) from None
    if data is None:
        need = "a base file needs a mapping" if where else "a hardware config needs at least a `name:`"
        raise ConfigError(source, [("", f"the file is empty; {need}{where}")])
    return data


def _base_problem(base: object) -> str | None:
    """What is wrong with the value of a ``base:`` key, or None."""
    if not isinstance(base, str):
        return f"must be the path of a config file (a string), got {describe(base)}"
    if not base.strip():
        return "must be the path of a config file, got an empty string"
    if "\0" in base:
        return "must be the path of a config file, got a string with a NUL character"
    try:
        os.fsencode(base)
    except UnicodeError:
        return f"must be the path of a config file, got {base!r}, which is no valid file name here"
    return None


def _config_chain(source: str) -> list[tuple[str, Any]]:
    """The file ``source`` and the chain of files it extends, each as ``(path, data)`` without its ``base``
    key, the file loaded first. Every problem raises :class:`ConfigError` naming ``source``, and the base
    file it is in when it is not ``source``."""
    chain: list[tuple[str, Any]] = []
    real_paths: list[str] = []
    path, where, referrer = source, "", None
    while True:
        data = _read_config_file(path, source, where, referrer)
        if chain and not isinstance(data, Mapping):
            message = f"the top level must be a mapping of parameter names to values, got {describe(data)}"
            raise ConfigError(source, [("", message + where)])
        if not isinstance(data, Mapping) or BASE_KEY not in data:
            chain.append((path, data))
            return chain
        base = data[BASE_KEY]
        chain.append((path, {key: value for key, value in data.items() if key != BASE_KEY}))
        real_paths.append(os.path.realpath(path))
        problem = _base_problem(base)
        if problem:
            raise ConfigError(source, [(BASE_KEY, problem + where)])
        target = os.path.join(os.path.dirname(path), base)
        files = " -> ".join([file for file, _ in chain] + [target])
        if os.path.realpath(target) in real_paths:
            raise ConfigError(source, [(BASE_KEY, f"{base!r} closes a cycle of base files: {files}{where}")])
        if len(chain) > MAX_HWCONFIG_BASES:
            message = f"more than {MAX_HWCONFIG_BASES} base files in a chain: {files}{where}"
            raise ConfigError(source, [(BASE_KEY, message)])
        path, where, referrer = target, f" (in base file {target})", where


def _merged(base: Mapping[Any, Any], over: Mapping[Any, Any]) -> dict[Any, Any]:
    """``over`` deep-merged over ``base``: mappings key by key, any other value replacing the base's. A block
    left empty in ``over`` (``None``: its keys all commented out) changes nothing of the base's block; a block
    naming another ``kind`` than the base's (another mechanism) replaces it whole, as the base's parameters
    are not the new kind's."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            other_kind = "kind" in value and value["kind"] != old.get("kind")
            merged[key] = dict(value) if other_kind else _merged(old, value)
        elif not (isinstance(old, Mapping) and value is None):
            merged[key] = value
    return merged


def _file_setting(dotted_path: str, chain: list[tuple[str, Any]]) -> str | None:
    """The file of ``chain`` whose value is the one at ``dotted_path``: the first (most derived) with it."""
    for path, data in chain:
        node = data
        for part in dotted_path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return path
    return None


def load_hwconfig(path: str | os.PathLike[str]) -> HwConfig:
    """Read a hardware config from a YAML file, validate it and build its :class:`HwConfig`.

    A file whose top level has ``base: OTHER.yaml`` extends that file (see the module docstring): the chain
    of bases is read first, this file's keys are merged over it, and the merged config is validated as one.

    Raises :class:`ConfigError` whose ``source`` is ``path`` as given, for an unreadable file, one that is
    not a regular file (a FIFO, a device) or is larger than ``MAX_HWCONFIG_BYTES``, invalid YAML (with its
    line and column; nesting deeper than ``MAX_HWCONFIG_DEPTH``), an empty file, a top level that is not a
    mapping, a bad ``base`` (not a string, missing, a directory, a cycle, more than ``MAX_HWCONFIG_BASES``
    files), and every problem :func:`parse_hwconfig` finds. A problem in a base file, or with a value a base
    file set, names that file: ``... (in base file hwconfigs/cnvlutin.yaml)``.
    """
    source = os.fsdecode(path)
    chain = _config_chain(source)
    if len(chain) == 1:
        return parse_hwconfig(chain[0][1], source)
    data = chain[-1][1]
    for _, over in reversed(chain[:-1]):
        data = _merged(data, over)
    try:
        return parse_hwconfig(data, source)
    except ConfigError as error:
        problems = []
        for dotted_path, message in error.problems:
            file = _file_setting(dotted_path, chain) if dotted_path else None
            where = f" (in base file {file})" if file is not None and file != source else ""
            problems.append((dotted_path, message + where))
        raise ConfigError(source, problems) from None


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


def hwconfig_to_dict(cfg: HwConfig, *, fill_derived: bool = False) -> dict[str, Any]:
    """Every parameter of ``cfg``, defaults filled in, as plain JSON-able data.

    Keys follow the declaration order, so the same config always gives the same dict. By default derived
    defaults stay ``None`` (as given), so ``parse_hwconfig(hwconfig_to_dict(cfg)) == cfg`` and a changed
    parameter derives them again; ``fill_derived=True`` gives the values the machine uses instead (what a
    report shows), so that ``dict["energy_pj"]`` is the complete energy table.
    """
    data = dataclasses.asdict(cfg)
    if fill_derived:
        data["energy_pj"] = cfg.energy_table()
    return data


def explain_hwconfig() -> str:
    """Describe every parameter: dotted path, type, default, allowed values and a one-line description.

    This is the text of ``sparsesim validate --explain``.
    """
    lines = [
        "Hardware config parameters (YAML keys, nested by block). Every key is optional except `name`.",
        "Integers are accepted where a float is expected; booleans and quoted numbers are not numbers.",
        f"`{BASE_KEY}: OTHER.yaml` at the top of a file extends OTHER (a path relative to the file; at most "
        f"{MAX_HWCONFIG_BASES} bases",
        "in a chain, no cycles): this file's keys are merged over OTHER's, blocks key by key, other values",
        "replacing the base's (an empty block changes nothing; a block of another `kind`, another mechanism,",
        "replaces the base's whole); the merged config is then validated as one.",
        "",
    ]
    params = list(iter_params(HwConfig))
    mechanism_at = next(i for i, (path, _, _) in enumerate(params) if path == MECHANISM_PATH)
    # The mechanism block: every registered kind with its own parameters, in place of the base's `kind`.
    params[mechanism_at + 2 : mechanism_at + 2] = [
        item
        for kind, cls in mechanism_kinds().items()
        for item in iter_params(cls, f"{MECHANISM_PATH}[kind={kind}].")
    ]
    for path, f, kind in params:
        if path.endswith("].kind"):  # the head of one kind's block: what the mechanism is
            kind_name = path.rsplit("[kind=", 1)[1].split("]", 1)[0]
            doc = (mechanism_config_class(kind_name).__doc__ or "").strip().split("\n\n", 1)[0]
            lines.append(f"{'  ' * path.count('.')}{path.rsplit('.', 1)[0]}:  {' '.join(doc.split())}")
            continue
        kinds = "one of: " + " | ".join(mechanism_kinds()) if path == MECHANISM_PATH + ".kind" else None
        lines += explain_param(path, f, kind, kinds)
    lines += ["", "Rules across parameters:"]
    lines += [f"  {rule.path} >= {rule.expression()}  ({rule.why})" for rule in _CROSS_FIELD_RULES]
    lines.append(f"  pe_array.rows * pe_array.columns <= {MAX_PES}  (the PE models keep a few values per PE)")
    lines += ["", "Default energy table (energy_pj):", _energy_source_text()]
    return "\n".join(lines) + "\n"


def _energy_source_text() -> str:
    """The 'Default energy table' section of this module's docstring, indented."""
    doc = __doc__ or ""
    section = doc.split("---------------------------------------------------\n", 1)[-1]
    lines = section.replace("``", "").replace(":meth:", "").replace("`", "").strip().splitlines()
    return "\n".join(("  " + line) if line else "" for line in lines)
