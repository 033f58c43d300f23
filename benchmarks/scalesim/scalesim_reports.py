"""SCALE-Sim 3.0.0's report CSVs, read the same way by bench_scalesim.py and record_golden.py.

record_golden.py runs inside SCALE-Sim's own environment, so this module imports nothing from sparsesim.
"""

from __future__ import annotations

import csv
import os

#: Our name for each per-layer access count, and SCALE-Sim's DETAILED_ACCESS_REPORT.csv column for it.
ACCESS_COLUMNS = {
    "ifmap_sram_reads": "SRAM IFMAP Reads",
    "filter_sram_reads": "SRAM Filter Reads",
    "ofmap_sram_writes": "SRAM OFMAP Writes",
    "ifmap_dram_reads": "DRAM IFMAP Reads",
    "filter_dram_reads": "DRAM Filter Reads",
    "ofmap_dram_writes": "DRAM OFMAP Writes",
}


def read_report(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """One dict per layer row, keyed by the stripped header (SCALE-Sim ends its rows with a comma)."""
    with open(path) as handle:
        rows = list(csv.reader(handle))
    header = [cell.strip() for cell in rows[0] if cell.strip()]
    return [dict(zip(header, [cell.strip() for cell in row], strict=False)) for row in rows[1:] if row]


def read_layers(report_dir: str | os.PathLike[str]) -> list[dict[str, int]]:
    """Per layer: total, stall and stall-free (compute) cycles, and the access counts of ACCESS_COLUMNS."""
    compute = read_report(os.path.join(report_dir, "COMPUTE_REPORT.csv"))
    access = read_report(os.path.join(report_dir, "DETAILED_ACCESS_REPORT.csv"))
    layers = []
    for cycles, counts in zip(compute, access, strict=True):
        total, stall = int(cycles["Total Cycles"]), int(cycles["Stall Cycles"])
        layer = {"total_cycles": total, "stall_cycles": stall, "compute_cycles": total - stall}
        # SCALE-Sim writes its counts as floats ("1234.0").
        layer.update({name: int(float(counts[column])) for name, column in ACCESS_COLUMNS.items()})
        layers.append(layer)
    return layers
