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
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, fields

from sparsesim.systolic.array import SystolicLayerResult, fold_plan, simulate_systolic_layer
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
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

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


def simulate_systolic(config: SystolicArrayConfig, layers: list[ConvShape]) -> SystolicReport:
    """Simulate every layer of a topology on a dense systolic array (layers are independent)."""
    return SystolicReport(config, tuple(simulate_systolic_layer(config, layer) for layer in layers))
