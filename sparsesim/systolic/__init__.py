"""Systolic mode: dense systolic arrays from SCALE-Sim's own .cfg and topology files, in closed form.

SCALE-Sim users bring their files unchanged::

    from sparsesim.systolic import load_scalesim_config, simulate_systolic
    from sparsesim.workload.topology import load_topology

    config = load_scalesim_config("hwconfigs/systolic_32x32_ws.cfg")
    report = simulate_systolic(config, load_topology("benchmarks/scalesim/resnet18.csv"))
    print(report.render())

The per-layer numbers (compute and stall cycles, SRAM and DRAM traffic) are SCALE-Sim 3.0.0's in its CALC
bandwidth mode, exactly; :mod:`sparsesim.systolic.array` says which of its conventions are followed.
Workloads here are shapes only, which is enough for a dense array: its timing does not depend on values.

Inputs and runs are bounded, so that no file can crash, hang or exhaust a machine: the ``.cfg``'s numbers
(:mod:`sparsesim.systolic.config`: arrays up to 4096 x 4096, SRAMs up to 32 MiB), the topology's
(:mod:`sparsesim.workload.topology`: every size up to 2**20, up to 131,072 layers), and a run's work
beyond closed forms (:mod:`sparsesim.systolic.array`: about a minute or two, checked before any layer
runs). Memory is bounded by the SRAM sizes, never by a layer's size; each is refused with a one-line
reason naming the file and the key or line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, fields

from sparsesim.systolic.array import (
    LayerWork,
    SystolicLayerResult,
    _simulate_layer,
    check_work,
    fold_plan,
    layer_work,
    simulate_systolic_layer,
)
from sparsesim.systolic.config import SystolicArrayConfig, load_scalesim_config, parse_scalesim_config
from sparsesim.workload.topology import ConvShape

__all__ = [
    "SystolicArrayConfig",
    "SCALESIM_COUNTS",
    "SystolicLayerResult",
    "SystolicReport",
    "fold_plan",
    "load_scalesim_config",
    "parse_scalesim_config",
    "simulate_systolic",
    "simulate_systolic_layer",
]

SCHEMA_VERSION = 1
#: The per-layer numbers that equal SCALE-Sim 3.0.0's, in the order of its report columns.
SCALESIM_COUNTS = (
    "compute_cycles",
    "stall_cycles",
    "ifmap_sram_reads",
    "filter_sram_reads",
    "ofmap_sram_writes",
    "ifmap_dram_reads",
    "filter_dram_reads",
    "ofmap_dram_writes",
)
# Summed over the layers in the report's totals: SCALE-Sim's counts, with the true cycle count and the MACs
# after the cycles.
_TOTALLED = SCALESIM_COUNTS[:2] + ("total_cycles", "macs") + SCALESIM_COUNTS[2:]


@dataclass(frozen=True)
class SystolicReport:
    """Per-layer results of one topology on one systolic array, with totals and renderings."""

    config: SystolicArrayConfig
    layers: tuple[SystolicLayerResult, ...]

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(layer, name) for layer in self.layers) for name in _TOTALLED}

    def to_dict(self) -> dict:
        config = {f.name: getattr(self.config, f.name) for f in fields(self.config) if f.name != "source"}
        return {
            "schema_version": SCHEMA_VERSION,
            "model": "systolic (SCALE-Sim 3.0.0 CALC mode, dense)",
            "config": config,
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": self.totals,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON: indented, one line per layer (a topology may have 131,072 layers, and
        this way they are encoded by json's C encoder, in seconds)."""
        data = self.to_dict()
        layers = data.pop("layers")
        text = json.dumps(data, indent=2, allow_nan=False)
        rows = ",\n".join("    " + json.dumps(layer, allow_nan=False) for layer in layers)
        head, _, tail = text.partition('\n  "totals"')
        return f'{head}\n  "layers": [\n{rows}\n  ],\n  "totals"{tail}\n'

    def to_csv(self) -> str:
        out = io.StringIO()
        names = [f.name for f in fields(SystolicLayerResult)]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for layer in self.layers:
            writer.writerow([getattr(layer, name) for name in names])
        return out.getvalue()

    def render(self) -> str:
        """A terminal table: one row per layer, then the totals."""
        header = (
            "layer",
            "compute",
            "stall",
            "ifmap_sram_rd",
            "filter_sram_rd",
            "ofmap_sram_wr",
            "ifmap_dram_rd",
            "filter_dram_rd",
            "ofmap_dram_wr",
        )
        keys = header[1:]
        attr = dict(
            zip(
                keys,
                SCALESIM_COUNTS,
                strict=True,
            )
        )
        rows = [[layer.layer] + [str(getattr(layer, attr[key])) for key in keys] for layer in self.layers]
        totals = self.totals
        rows.append(["TOTAL"] + [str(totals[attr[key]]) for key in keys])
        widths = [max(len(row[i]) for row in [list(header), *rows]) for i in range(len(header))]
        c = self.config
        lines = [
            f"systolic {c.array_rows}x{c.array_cols} {c.dataflow.upper()}, SRAM ifmap/filter/ofmap "
            f"{c.ifmap_sram_bytes // 1024}/{c.filter_sram_bytes // 1024}/{c.ofmap_sram_bytes // 1024} KiB "
            f"(SCALE-Sim 3.0.0 CALC model; cycles = SCALE-Sim's Total Cycles minus Stall Cycles)",
        ]
        for row in [list(header), *rows]:
            lines.append(
                "  ".join(
                    cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
                )
            )
        return "\n".join(lines) + "\n"


_SHAPE_FIELDS = tuple(f.name for f in fields(ConvShape) if f.name not in ("name", "origin"))
_RESULT_FIELDS = tuple(f.name for f in fields(SystolicLayerResult))


def _shape_key(layer: ConvShape) -> tuple:
    """What a layer's results depend on: everything but its name and origin."""
    return tuple(getattr(layer, name) for name in _SHAPE_FIELDS)


def simulate_systolic(config: SystolicArrayConfig, layers: list[ConvShape]) -> SystolicReport:
    """Simulate every layer of a topology on a dense systolic array (layers are independent).

    Before any layer runs, the run's work is checked against the budgets of
    :mod:`sparsesim.systolic.array` (:class:`~sparsesim.errors.SimulationError` naming the first layer that
    would exceed them). Layers of the same shape (a depthwise row's channels, repeated blocks) are
    simulated once: their results differ only in the name.
    """
    plans: dict[tuple, LayerWork] = {}
    total = LayerWork({}, 0, 0, {})
    for layer in layers:
        key = _shape_key(layer)
        if key in plans:
            continue
        work = layer_work(config, layer)
        check_work(config, layer, work, total if plans else None)
        plans[key] = work
        total = LayerWork(
            {}, total.ordered_work + work.ordered_work, total.write_steps + work.write_steps, {}
        )
    results: dict[tuple, tuple] = {}  # shape -> the result's fields after its name
    out = []
    for layer in layers:
        key = _shape_key(layer)
        if key not in results:
            result = _simulate_layer(config, layer, plans[key])
            results[key] = tuple(getattr(result, name) for name in _RESULT_FIELDS[1:])
            out.append(result)
        else:
            out.append(SystolicLayerResult(layer.name, *results[key]))
    return SystolicReport(config, tuple(out))
