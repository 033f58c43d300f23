"""Golden results: the per-layer numbers of a report that must not change by accident.

The tests and CI both call :func:`compare_to_golden` on a fresh report and the checked-in golden file:
cycles and compute counts must be identical, energy equal to ``ENERGY_RELATIVE_TOLERANCE``. When a change is
intended, regenerate the files with ``python -m sparsesim.report.golden tests/golden`` and commit them with
the change that explains why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sparsesim.files import write_atomic
from sparsesim.report.report import Report

ENERGY_RELATIVE_TOLERANCE = 1e-9


def golden_summary(report: Report) -> dict:
    """The compared subset of a report: per layer and in total, cycles, computes and energy."""

    def pick(entry: dict) -> dict:
        return {
            "cycles": entry["cycles"],
            "computes": dict(entry["computes"]),
            "energy_pj": entry["energy_pj"],
            "component_energy_pj": {path: comp["energy_pj"] for path, comp in entry["components"].items()},
        }

    return {
        "hwconfig": report.data["hwconfig"]["name"],
        "trace": report.data["trace"]["name"],
        "layers": {entry["name"]: pick(entry) for entry in report.layers},
        "totals": pick(report.totals),
    }


def compare_to_golden(summary: dict, golden: dict) -> list[str]:
    """Every difference between a fresh summary and the golden one, as readable lines (empty: equal)."""
    problems = []
    if set(summary["layers"]) != set(golden["layers"]):
        problems.append(f"layers differ: got {sorted(summary['layers'])}, golden {sorted(golden['layers'])}")
    scopes = [
        (name, summary["layers"][name], golden["layers"][name])
        for name in summary["layers"]
        if name in golden["layers"]
    ]
    scopes.append(("totals", summary["totals"], golden["totals"]))
    for scope, got, want in scopes:
        if got["cycles"] != want["cycles"]:
            problems.append(f"{scope}: cycles {got['cycles']} != golden {want['cycles']}")
        for key, value in want["computes"].items():
            if got["computes"].get(key) != value:
                problems.append(f"{scope}: {key} computes {got['computes'].get(key)} != golden {value}")
        energies = [("energy_pj", got["energy_pj"], want["energy_pj"])]
        energies += [
            (f"{path}.energy_pj", got["component_energy_pj"].get(path, float("nan")), pj)
            for path, pj in want["component_energy_pj"].items()
        ]
        for what, value, expected in energies:
            if not abs(value - expected) <= ENERGY_RELATIVE_TOLERANCE * abs(expected):
                problems.append(
                    f"{scope}: {what} {value!r} != golden {expected!r} (relative tolerance "
                    f"{ENERGY_RELATIVE_TOLERANCE})"
                )
    return problems


def golden_path(directory: Path, hwconfig_name: str, trace_name: str) -> Path:
    return Path(directory) / f"{hwconfig_name}__{trace_name}.json"


def main(argv: list[str]) -> int:
    """``python -m sparsesim.report.golden OUT_DIR [HWCONFIG_NAME...]``: regenerate the goldens of every
    shipped pair, or only of the named shipped configs."""
    from sparsesim import load_hwconfig, load_trace, simulate

    root = Path(__file__).resolve().parents[2]
    out_dir = Path(argv[0]) if argv else root / "tests" / "golden"
    only = set(argv[1:])
    traces = sorted(p for p in (root / "traces").iterdir() if (p / "manifest.json").is_file())
    for hw_path in sorted((root / "hwconfigs").glob("*.yaml")):
        if only and hw_path.stem not in only:
            continue
        hw = load_hwconfig(hw_path)
        for trace_dir in traces:
            trace = load_trace(trace_dir)
            summary = golden_summary(simulate(hw, trace))
            target = golden_path(out_dir, hw.name, trace.name)
            write_atomic(target, json.dumps(summary, indent=2, allow_nan=False) + "\n")
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
