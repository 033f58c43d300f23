"""The mechanism protocol: what a PE sparsity mechanism brings, and what the simulator asks of it.

A mechanism (zero-skipping, gating, early termination, a Cartesian product, weight repetition, ...) is one
module of :mod:`sparsesim.mechanisms` holding two classes:

- its **config block**, a frozen dataclass deriving from :class:`~sparsesim.config.MechanismConfig` and
  naming its kind (``class Config(MechanismConfig, kind="n_m_weights")``): the parameters a hwconfig gives
  under ``pe_array.pe.mechanism``, each declared with :func:`~sparsesim.config.hwconfig.param` (default,
  description, bounds: validated and listed by ``sparsesim validate --explain`` like every other
  parameter), its cross-field rules (:meth:`~sparsesim.config.MechanismConfig.cross_field_problems`) and,
  if it adds actions to the PE's, a nested ``Energy`` block whose fields *are* those actions with their
  default pJ (the one list the energy table and its checks derive from);
- the **mechanism**, a subclass of :class:`Mechanism` whose ``Config`` is that block. Defining the
  subclass registers it under the block's kind.

The simulator calls it generically, for each layer (:mod:`sparsesim.accelerator`)::

    operands = LayerOperands(... mechanism.machine_input(activations) ...)   # what the PEs compute with
    plan     = mechanism.plan(operands)           # immutable; e.g. a mixture of experts reorders filters
    tiling   = search(...)                        # the mapper (sparsesim.mapper) searches the mappings of
                                                  # pe_array.dataflows, kernels sized by
                                                  # mechanism.spad_words_per_kernel(plan); for each:
    tiling, weight_ranges = mechanism.retile(plan, tiling)
    prepared = mechanism.prepare(plan, tiling)    # immutable: per-layer work from the real tensors (once
                                                  # per mechanism.prepare_key(tiling), shared)
    for each tile, when the PE array gets it: mechanism.tile_work(prepared, tile) -> TileWork
    mechanism.output(prepared) -> DatapathOutput  # the output values through the modelled datapath
    mechanism.summary(prepared, pe_array)        # the layer's section of the report (or None)

``prepare`` returns a value instead of setting flags, and ``tile_work`` is a pure function of it and the
tile: the PE array component (:class:`~sparsesim.components.PeArray`) counts the actions and the cycles.
Nothing outside a mechanism's module names it: a new paper is one module and one hwconfig (see
ARCHITECTURE.md, "How to add a mechanism").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sparsesim.config import MechanismConfig
from sparsesim.mapping import ConvGeometry, LayerTiling, Tile

#: The actions every PE has (their energies: ``energy_pj.pe_array``); a mechanism may add its own.
PE_ACTIONS: tuple[str, ...] = (
    "compute",
    "gated_compute",
    "skipped_compute",
    "input_spad_read",
    "input_spad_metadata_read",
    "weight_spad_read",
    "psum_spad_update",
)


@dataclass(frozen=True)
class TileWork:
    """What one tile costs the PE array: its cycles, its action counts and the MACs it early-terminated."""

    cycles: int
    actions: Mapping[str, int]
    early_terminated_macs: int = 0


@dataclass(frozen=True)
class LayerOperands:
    """One layer as the PEs see it, in convolution form (a linear layer is a 1x1 convolution of a 1x1 image).

    ``input_chw`` holds the activations as the machine stores them (pruned, rounded to fixed point: see
    :meth:`Mechanism.machine_input`); ``output_khw`` is the trace's stored output of the layer (float32),
    which a mechanism may use in its report summary (never to compute).
    """

    name: str
    geometry: ConvGeometry
    input_chw: np.ndarray
    weights_kcrs: np.ndarray
    bias: np.ndarray
    activation: str
    output_khw: np.ndarray

    @property
    def relu(self) -> bool:
        return self.activation == "relu"


@dataclass(frozen=True)
class Plan:
    """The layer as the machine runs it: its operands (a mixture of experts reorders the filters), the
    weights the buffer and DRAM hold for it (the experts' and the router's), and the mechanism's state."""

    operands: LayerOperands
    sized_weights: np.ndarray
    state: Any = None

    @property
    def buffer_words_per_kernel(self) -> int:
        """Words of one kernel as the buffer and DRAM hold it (``sized_weights`` is ``(K, C, ...)``)."""
        return int(np.prod(self.sized_weights.shape[2:], dtype=np.int64))


@dataclass(frozen=True)
class DatapathOutput:
    """The layer's output values as the datapath computes them, ``(K, Hout, Wout)`` float64 in the trace's
    filter order, and the outputs the machine forces to 0 (``zeroed``; None if none): those a predictive
    termination mispredicted (``zeroed_kind`` ``mispredicted``) or a mixture of experts did not route
    (``unrouted``). The functional check expects exactly 0 there."""

    values: np.ndarray
    zeroed: np.ndarray | None = None
    zeroed_kind: str = "mispredicted"


#: The registered mechanisms, by kind.
MECHANISMS: dict[str, type[Mechanism]] = {}


class Mechanism:
    """A PE mechanism (see the module's docstring). Subclasses set ``Config`` and implement
    :meth:`prepare` and :meth:`tile_work`; the other steps have defaults."""

    #: The config block class (a registered :class:`~sparsesim.config.MechanismConfig` subclass).
    Config: ClassVar[type[MechanismConfig]]
    #: Whether each filter must be whole in a PE (one channel block: the mechanism walks whole outputs); the
    #: PE array refuses a tiling that splits them, naming the mechanism.
    needs_whole_filters: ClassVar[bool] = False
    #: Whether a filter group's tiles must run one after the other (the mapper then keeps the filters the
    #: outermost loop that splits the layer).
    filter_groups_in_turn: ClassVar[bool] = False
    #: The actions that are MACs performed and charged (the report's ``charged`` computes).
    charged_actions: ClassVar[tuple[str, ...]] = ("compute",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        config = cls.__dict__.get("Config")
        if config is not None:
            MECHANISMS[config.KIND] = cls

    def __init__(self, config: MechanismConfig, array: Any, word_bytes: int = 2):
        """``config``: the mechanism's block; ``array``: the ``pe_array`` config (rows, columns, ``pe``)."""
        self.config = config
        self.rows = array.rows
        self.columns = array.columns
        self.activation_lanes = array.pe.activation_lanes
        self.filter_lanes = array.pe.filter_lanes
        self.word_bytes = word_bytes

    @classmethod
    def kind(cls) -> str:
        return cls.Config.KIND

    @classmethod
    def actions(cls) -> tuple[str, ...]:
        """Every action this mechanism's PEs count: the PE's own, then the mechanism's (its ``Energy``)."""
        energy = getattr(cls.Config, "Energy", None)
        own = tuple(f.name for f in dataclasses.fields(energy)) if energy is not None else ()
        return PE_ACTIONS + own

    @property
    def mac_lanes(self) -> int:
        """MAC lanes of the whole array (the denominator of the report's MAC utilisation)."""
        return self.rows * self.columns * self.activation_lanes * self.filter_lanes

    def machine_input(self, activations: np.ndarray) -> np.ndarray:
        """The activations as the machine stores and computes with them; by default as given."""
        return activations

    def channel_granule(self) -> int:
        """Channel blocks of the mapping come in multiples of this (N:M groups, SIMD vectors)."""
        return 1

    def spad_words_per_kernel(self, plan: Plan) -> int:
        """Words one kernel (one filter's weights of one channel) occupies in a PE's weight scratchpad: the
        mapper sizes channel blocks by it. By default the ``R x S`` weights; a transform-domain mechanism
        holds its transformed kernel (Winograd: 4 x 4)."""
        return plan.operands.geometry.kernel_positions

    def held_kernel_words(self, kernel: tuple[int, int]) -> int:
        """Words a PE holds for one kernel of ``(R, S)`` weights, known from the shape alone (the weights'
        residency across layers is decided before any layer is read): by default ``R x S``."""
        return kernel[0] * kernel[1]

    def plan(self, operands: LayerOperands) -> Plan:
        """The layer as the machine runs it; by default the operands as they are."""
        return Plan(operands, operands.weights_kcrs)

    def retile(self, plan: Plan, tiling: LayerTiling) -> tuple[LayerTiling, list | None]:
        """The mapper's tiling adjusted to the mechanism, and per tile the ``(first, stop)`` filter ranges
        whose weights it fetches (None: each tile's own filters); by default unchanged."""
        return tiling, None

    def prepare(self, plan: Plan, tiling: LayerTiling) -> Any:
        """The layer's work from the real operands, as an immutable value :meth:`tile_work` reads."""
        raise NotImplementedError

    def prepare_key(self, tiling: LayerTiling) -> Hashable | None:
        """What of ``tiling`` :meth:`prepare` depends on: two tilings with the same key, not None, prepare
        the same work, which the mapper then computes once for all the mappings it rates. None (the
        default): prepared again for every tiling."""
        return None

    def tile_work(self, prepared: Any, tile: Tile) -> TileWork:
        """One tile's cycles and actions (a pure function of ``prepared`` and ``tile``)."""
        raise NotImplementedError

    def output(self, prepared: Any) -> DatapathOutput:
        """The layer's output through the datapath. By default the dot products of the machine's operands:
        right for every PE that skips or gates some products whose operand is zero (each such product is
        an exact 0), see :func:`sparsesim.mechanisms.datapath.dot_product_output`."""
        from sparsesim.mechanisms.datapath import dot_product_output

        operands = prepared.plan.operands
        return DatapathOutput(dot_product_output(operands))

    def summary(self, prepared: Any, array: Any) -> dict | None:
        """The mechanism's section of the layer's report (JSON-able), or None."""
        return None

    @classmethod
    def summary_table(cls, layers: list[dict]) -> tuple[str, list[str], list[list[str]]] | None:
        """How the report shows the layers' summaries: ``(title, header, rows)``, or None (not shown)."""
        return None


def create_mechanism(array: Any, word_bytes: int = 2) -> Mechanism:
    """The mechanism the ``pe_array`` config ``array`` names, ready for its layers."""
    config = array.pe.mechanism
    return MECHANISMS[config.KIND](config, array, word_bytes)


def mechanism_class(kind: str) -> type[Mechanism]:
    """The mechanism registered as ``kind``; :class:`KeyError` listing the known ones if none is."""
    from sparsesim.config import mechanism_kinds

    mechanism_kinds()  # discovers the modules
    try:
        return MECHANISMS[kind]
    except KeyError:
        raise KeyError(f"unknown mechanism {kind!r}; known: {', '.join(sorted(MECHANISMS))}") from None
