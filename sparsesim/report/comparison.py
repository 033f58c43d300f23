"""Several hardware configs on one trace: the lecture's comparisons in one table.

Per layer and in total: each config's cycles and energy, its speed-up (baseline cycles / cycles) and energy
saving (1 - energy / baseline energy) against the baseline, and per config the eq. 3.4 / 3.9 decompositions
(actual MACs per cycle x effectual/actual x algorithmic/effectual, and the energy twin).
"""

from __future__ import annotations

import csv
import io

from sparsesim.quantities import ratio
from sparsesim.report.report import Report, render_table


def comparison_data(reports: list[Report], baseline: Report) -> dict:
    """The JSON-able comparison: per config, per layer and total cycles, energy, speed-up, energy saving."""
    base_layers = {entry["name"]: entry for entry in baseline.layers}
    configs = []
    for report in reports:
        layers = []
        for entry in report.layers:
            base = base_layers[entry["name"]]
            layers.append(
                {
                    "name": entry["name"],
                    "cycles": entry["cycles"],
                    "energy_pj": entry["energy_pj"],
                    "speedup": ratio(base["cycles"], entry["cycles"]),
                    "energy_saving": 1.0 - entry["energy_pj"] / base["energy_pj"],
                    "functional_check": entry["functional_check"],
                }
            )
        totals = report.totals
        configs.append(
            {
                "hwconfig": report.data["hwconfig"]["name"],
                "layers": layers,
                "totals": {
                    "cycles": totals["cycles"],
                    "time_s": totals["time_s"],
                    "energy_pj": totals["energy_pj"],
                    "speedup": ratio(baseline.totals["cycles"], totals["cycles"]),
                    "energy_saving": 1.0 - totals["energy_pj"] / baseline.totals["energy_pj"],
                    "throughput": totals["throughput"],
                    "energy_efficiency": totals["energy_efficiency"],
                    "functional_check_passed": totals["functional_check_passed"],
                },
            }
        )
    return {
        "trace": baseline.data["trace"]["name"],
        "baseline": baseline.data["hwconfig"]["name"],
        "configs": configs,
    }


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_comparison(data: dict) -> str:
    """Terminal tables: speed-up per layer and config, then one line per config with the decompositions."""
    out = io.StringIO()
    configs = data["configs"]
    names = [config["hwconfig"] for config in configs]
    out.write(f"{data['trace']}: {len(configs)} configs against the baseline {data['baseline']}\n\n")

    out.write("speed-up per layer (baseline cycles / cycles)\n")
    layer_names = [layer["name"] for layer in configs[0]["layers"]]
    rows = []
    for i, name in enumerate(layer_names):
        rows.append([name] + [_fmt(config["layers"][i]["speedup"], ".3f") + "x" for config in configs])
    rows.append(["total"] + [_fmt(config["totals"]["speedup"], ".3f") + "x" for config in configs])
    out.write(render_table(["layer", *names], rows, separator_before_last=True))

    out.write("\nenergy saving per layer (1 - energy / baseline energy)\n")
    rows = []
    for i, name in enumerate(layer_names):
        rows.append(
            [name] + [_fmt(100 * config["layers"][i]["energy_saving"], ".1f") + "%" for config in configs]
        )
    rows.append(
        ["total"] + [_fmt(100 * config["totals"]["energy_saving"], ".1f") + "%" for config in configs]
    )
    out.write(render_table(["layer", *names], rows, separator_before_last=True))

    out.write(
        "\nper config, all layers: eq. 3.4  alg MACs/cycle = actual MACs/cycle x effectual/actual"
        " x alg/effectual;  eq. 3.9  alg MACs/pJ = charged MACs/pJ x effectual/charged x alg/effectual\n"
    )
    header = [
        "config",
        "cycles",
        "time ms",
        "energy uJ",
        "speed-up",
        "saving",
        "act/cyc",
        "eff/act",
        "alg/cyc",
        "chg/pJ",
        "eff/chg",
        "alg/pJ",
        "check",
    ]
    rows = []
    for config in configs:
        t = config["totals"]
        thr, eff = t["throughput"], t["energy_efficiency"]
        rows.append(
            [
                config["hwconfig"],
                f"{t['cycles']:,}",
                f"{t['time_s'] * 1e3:.3f}",
                f"{t['energy_pj'] / 1e6:.1f}",
                _fmt(t["speedup"], ".3f") + "x",
                _fmt(100 * t["energy_saving"], ".1f") + "%",
                _fmt(thr["actual_per_cycle"], ".4g"),
                _fmt(thr["effectual_per_actual"], ".3f"),
                _fmt(thr["algorithmic_per_cycle"], ".4g"),
                _fmt(eff["charged_per_pj"], ".4g"),
                _fmt(eff["effectual_per_charged"], ".3f"),
                _fmt(eff["algorithmic_per_pj"], ".4g"),
                "pass" if t["functional_check_passed"] else "FAIL",
            ]
        )
    out.write(render_table(header, rows))
    return out.getvalue()


def comparison_csv(data: dict) -> str:
    """One row per (config, layer) and per config total."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["hwconfig", "layer", "cycles", "energy_pj", "speedup", "energy_saving"])
    for config in data["configs"]:
        for layer in config["layers"]:
            writer.writerow(
                [
                    config["hwconfig"],
                    layer["name"],
                    layer["cycles"],
                    repr(layer["energy_pj"]),
                    repr(layer["speedup"]),
                    repr(layer["energy_saving"]),
                ]
            )
        t = config["totals"]
        writer.writerow(
            [
                config["hwconfig"],
                "TOTAL",
                t["cycles"],
                repr(t["energy_pj"]),
                repr(t["speedup"]),
                repr(t["energy_saving"]),
            ]
        )
    return buffer.getvalue()
