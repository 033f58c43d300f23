"""The PE array: ``rows x columns`` PEs of ``activation_lanes x filter_lanes`` MAC lanes, running one
sparsity mechanism (``pe_array.pe.mechanism``, a module of :mod:`sparsesim.mechanisms`).

The component is the same whatever the mechanism: it owns the compute stage of the tile pipeline (a simpy
process that takes tiles from its inbox, spends each tile's cycles and hands it on), counts its busy and
stall cycles on its compute port and adds up the actions. The mechanism says what a tile costs, from the
real operands (:meth:`~sparsesim.mechanisms.Mechanism.tile_work`), and what the datapath outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy

from sparsesim.core import Component
from sparsesim.errors import SimulationError
from sparsesim.mapping import ConvGeometry, LayerTiling, Tile
from sparsesim.mechanisms import DatapathOutput, LayerOperands, Plan, TileWork, create_mechanism


class ComputePort:
    """The PE array's compute stage as the report sees a port: cycles busy computing tiles, cycles stalled
    (waiting for a tile, or for the writer to take a finished one)."""

    def __init__(self, path: str):
        self.path = path
        self.busy_cycles = 0
        self.stall_cycles = 0
        self.transactions = 0


class PeArray(Component):
    """The PE array of one machine; see the module docstring."""

    def __init__(self, config, path: str = "pe_array", word_bytes: int = 2):
        self.mechanism = create_mechanism(config, word_bytes)
        self.ACTIONS = self.mechanism.actions()
        super().__init__(path)
        self.port = ComputePort(path)
        self.ports.append(self.port)  # type: ignore[arg-type]
        self.early_terminated_macs = 0
        self.prepared: Any = None
        self.tiling: LayerTiling | None = None

    @property
    def mac_lanes(self) -> int:
        return self.mechanism.mac_lanes

    @property
    def busy_cycles(self) -> int:
        return self.port.busy_cycles

    @property
    def stall_cycles(self) -> int:
        return self.port.stall_cycles

    def load(self, plan: Plan, tiling: LayerTiling, prepared: Any = None) -> None:
        """Prepare the mechanism's work for a layer (see :meth:`~sparsesim.mechanisms.Mechanism.prepare`),
        or take ``prepared``, the work already prepared for a tiling of the same
        :meth:`~sparsesim.mechanisms.Mechanism.prepare_key`."""
        mechanism, operands = self.mechanism, plan.operands
        if mechanism.needs_whole_filters and tiling.n_channel_blocks != 1:
            raise SimulationError(
                f"{operands.name}: {mechanism.kind()} needs each filter whole in a PE, but the weight "
                f"scratchpad holds {tiling.channels_per_block} of {operands.geometry.channels} channels: "
                "raise pe_array.pe.weight_spad_bytes"
            )
        self.tiling = tiling
        self.prepared = mechanism.prepare(plan, tiling) if prepared is None else prepared

    def prepare(
        self,
        input_chw: np.ndarray,
        geometry: ConvGeometry,
        tiling: LayerTiling,
        weights_kcrs: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        activation: str = "relu",
        name: str = "layer",
    ) -> Plan:
        """Prepare a layer given by its operands (``input_chw`` as the machine stores them) without a trace
        layer: for tests and studies of one PE array. Returns the mechanism's plan; :attr:`tiling` is the
        tiling as the mechanism adjusted it (:meth:`~sparsesim.mechanisms.Mechanism.retile`)."""
        if weights_kcrs is None:
            weights_kcrs = np.zeros(
                (geometry.filters, geometry.channels, geometry.kernel_r, geometry.kernel_s)
            )
        if bias is None:
            bias = np.zeros(geometry.filters, dtype=np.float32)
        shape = (geometry.filters, geometry.out_height, geometry.out_width)
        operands = LayerOperands(
            name, geometry, input_chw, weights_kcrs, bias, activation, np.zeros(shape, dtype=np.float32)
        )
        plan = self.mechanism.plan(operands)
        tiling, _ = self.mechanism.retile(plan, tiling)
        self.load(plan, tiling)
        return plan

    def work(self, tile: Tile) -> TileWork:
        """Cycles and actions of one tile (every action of the array listed); they are added to the counts."""
        if self.prepared is None:
            raise SimulationError(f"{self.path}: no layer loaded")
        work = self.mechanism.tile_work(self.prepared, tile)
        actions = {action: int(work.actions.get(action, 0)) for action in self.ACTIONS}
        for action, n in actions.items():
            self.count(action, n)
        self.early_terminated_macs += work.early_terminated_macs
        return TileWork(int(work.cycles), actions, work.early_terminated_macs)

    def compute(self, env: simpy.Environment, inbox: simpy.Store, outbox: simpy.Store, tiles: int, log=None):
        """The compute stage (a simpy process): ``tiles`` tiles from ``inbox``, each computed for its cycles,
        then put in ``outbox``. Waiting for a tile, or for room in ``outbox``, is stall."""
        for _ in range(tiles):
            waited_from = env.now
            tile = yield inbox.get()
            self.port.stall_cycles += int(env.now - waited_from)
            work = self.work(tile)
            if log is not None:
                log("pe_array", tile, f"compute {work.cycles} cycles")
            yield env.timeout(work.cycles)
            self.port.busy_cycles += work.cycles
            self.port.transactions += 1
            waited_from = env.now
            yield outbox.put(tile)
            self.port.stall_cycles += int(env.now - waited_from)

    def output(self) -> DatapathOutput:
        """The loaded layer's output through the mechanism's datapath."""
        return self.mechanism.output(self.prepared)

    def summary(self) -> dict | None:
        """The mechanism's section of the layer's report."""
        return self.mechanism.summary(self.prepared, self)
