"""Golden results: the per-layer numbers of a report that must not change by accident.

The tests and CI both call :func:`compare_to_golden` on a fresh report and the checked-in golden file:
cycles and compute counts must be identical, energy equal to ``ENERGY_RELATIVE_TOLERANCE``. The library
only compares: which runs are golden and the command that regenerates their files after an intended change
(``python -m tests.goldens``) live with the tests, in ``tests/goldens.py``.
"""

from __future__ import annotations

from pathlib import Path

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
    """Where the golden summary of a (hwconfig, trace) pair is kept in ``directory``."""
    return Path(directory) / f"{hwconfig_name}__{trace_name}.json"
