"""PredictiveNet (MSB-first ReLU prediction) on the shipped trace: savings, mispredictions and error.

Runs hwconfigs/predictivenet.yaml's machine with each early termination mode (none, SnaPEA exact and
predictive, msb_first, msb_first_exact), then msb_first over a few thresholds, then both MSB-first modes
over a few MSB widths with the multiply energy scaled to the operand widths (assumed: 0.9 pJ x width
product / (16 x 16) + 0.1 pJ accumulation per pass). One JSON line per run: cycles, energy (total, PE array,
arithmetic), MACs, outputs whose LSB pass was skipped, mispredictions, and the relative RMS output error.

    python benchmarks/predictivenet_study.py modes|threshold|bits [LAYER ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sparsesim import load_hwconfig, load_trace, simulate
from sparsesim.config import hwconfig_to_dict, parse_hwconfig

ROOT = Path(__file__).resolve().parent.parent


#: The modes compared: (mechanism kind, its parameters).
MODES = {
    "none": ("dense", {}),
    "exact": ("relu_early_termination", {"mode": "exact"}),
    "predictive": ("relu_early_termination", {"mode": "predictive"}),
    "msb_first": ("msb_first", {"decision": "predictive"}),
    "msb_first_exact": ("msb_first", {"decision": "exact"}),
}


def variant(hw, mode, energy=None, **parameters):
    """``hw`` running ``mode`` (a key of MODES) with the given mechanism parameters and energies."""
    kind, defaults = MODES[mode]
    block = {"kind": kind, **defaults, **parameters}
    if energy:
        block["energy_pj"] = energy
    data = hwconfig_to_dict(hw)
    data["pe_array"]["pe"]["mechanism"] = block
    return parse_hwconfig(data, source=f"{hw.name} with {block}")


def summary(report) -> dict:
    totals = report.totals
    pe = totals["components"]["pe_array"]
    terminating = [layer["mechanism"]["summary"] for layer in report.layers if layer["mechanism"]["summary"]]
    # None: no lossy error, or a relative error undefined (an all-zero stored output).
    errors = [
        (layer["functional_check"].get("lossy_error") or {}).get("relative_rms_error") or 0.0
        for layer in report.layers
    ]
    arithmetic = sum(pe["action_energy_pj"].get(a, 0.0) for a in ("compute", "msb_compute", "lsb_compute"))
    return {
        "cycles": totals["cycles"],
        "energy_uj": totals["energy_pj"] / 1e6,
        "pe_array_uj": pe["energy_pj"] / 1e6,
        "arithmetic_uj": arithmetic / 1e6,
        "actual_macs": totals["computes"]["actual"],
        "early_terminated_macs": totals["computes"]["early_terminated"],
        "outputs": sum(t["outputs"] for t in terminating),
        "terminated_outputs": sum(t["terminated_outputs"] for t in terminating),
        "mispredicted_outputs": sum(t["mispredicted_outputs"] for t in terminating),
        "worst_layer_relative_rms_error": max(errors, default=0.0),
        "mean_layer_relative_rms_error": sum(errors) / len(errors),
        "functional_check_passed": all(layer["functional_check"]["passed"] for layer in report.layers),
    }


def main(argv: list[str]) -> int:
    study, layers = argv[0], argv[1:] or None
    hw = load_hwconfig(ROOT / "hwconfigs" / "predictivenet.yaml")
    trace = load_trace(ROOT / "traces" / "vgg16_china")
    runs = {}
    if study == "modes":
        for mode in ("none", "exact", "predictive", "msb_first", "msb_first_exact"):
            runs[mode] = variant(hw, mode)
    elif study == "threshold":
        for threshold in (-1.0, -0.25, 0.0, 0.25, 1.0):
            runs[f"msb_first threshold={threshold}"] = variant(hw, "msb_first", threshold=threshold)
    elif study == "bits":
        for bits in (4, 8, 12):
            energy = {"msb_compute": 0.9 * bits / 16 + 0.1, "lsb_compute": 0.9 * (16 - bits) / 16 + 0.1}
            for mode in ("msb_first", "msb_first_exact"):
                runs[f"{mode} msb_bits={bits}"] = variant(hw, mode, energy, msb_bits=bits)
    else:
        raise SystemExit(f"unknown study {study!r}; known: modes, threshold, bits")
    for name, machine in runs.items():
        print(name, json.dumps(summary(simulate(machine, trace, layers))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
