"""Sweeping one hardware parameter: each value's cycles, energy and output error, in one table.

Built for the lecture's trade-offs, e.g. activation pruning: how much speed and energy a threshold buys,
and how much output error it costs (``sparsesim sweep HWCONFIG TRACE --set
pe_array.pe.activation_threshold=0,1,2,4``).

Rendering only: the swept configs are built and simulated by :func:`sparsesim.sweep.sweep`.
"""

from __future__ import annotations

import io

from sparsesim.quantities import percent
from sparsesim.report.report import Report, render_table


def _worst_lossy_error(report: Report) -> float:
    errors = [
        entry["functional_check"]["lossy_error"]["relative_rms_error"]
        for entry in report.layers
        if "lossy_error" in entry["functional_check"]
    ]
    # None: a layer whose stored output is all zero, where a relative error is undefined.
    return max((error for error in errors if error is not None), default=0.0)


def sweep_data(dotted_path: str, values: list, reports: list[Report]) -> dict:
    """The JSON-able sweep table: per value (``reports[i]`` ran with ``values[i]``), its totals and
    per-layer rows; speed-up and saving are against the first value."""
    base = reports[0].totals
    rows = []
    for value, report in zip(values, reports, strict=True):
        t = report.totals
        rows.append(
            {
                "value": value,
                "cycles": t["cycles"],
                "energy_pj": t["energy_pj"],
                "speedup": base["cycles"] / t["cycles"],
                "energy_saving": 1.0 - t["energy_pj"] / base["energy_pj"],
                "effectual_computes": t["computes"]["effectual"],
                "worst_layer_relative_rms_error": _worst_lossy_error(report),
                "datapath_exact": t["functional_check_passed"],
                "bound": {"by": t["bound"]["by"], "share": t["bound"]["share"]},
                "layers": [
                    {
                        "name": entry["name"],
                        "cycles": entry["cycles"],
                        "energy_pj": entry["energy_pj"],
                        "lossy_error": entry["functional_check"].get("lossy_error"),
                        "bound": {"by": entry["bound"]["by"], "share": entry["bound"]["share"]},
                    }
                    for entry in report.layers
                ],
            }
        )
    return {"parameter": dotted_path, "rows": rows}


def render_sweep(data: dict) -> str:
    out = io.StringIO()
    out.write(f"sweep of {data['parameter']} (speed-up and saving against the first value)\n")
    header = [
        "value",
        "cycles",
        "energy uJ",
        "speed-up",
        "saving",
        "effectual MACs",
        "worst rel. error",
        "datapath",
        "bound by",
    ]
    rows = [
        [
            str(r["value"]),
            f"{r['cycles']:,}",
            f"{r['energy_pj'] / 1e6:.1f}",
            f"{r['speedup']:.3f}x",
            f"{100 * r['energy_saving']:.1f}%",
            f"{r['effectual_computes']:,}",
            f"{r['worst_layer_relative_rms_error']:.3g}",
            "exact" if r["datapath_exact"] else "FAIL",
            f"{r['bound']['by']} {percent(r['bound']['share'])}",
        ]
        for r in data["rows"]
    ]
    out.write(render_table(header, rows))
    out.write(
        "worst rel. error: the largest relative RMS output error of a layer against the trace's reference\n"
        "bound by: the port busy longest over all layers, and its share of the cycles (see `sparsesim run`)\n"
    )
    return out.getvalue()
