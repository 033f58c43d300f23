"""sparsesim's Eyeriss v2 PE against the cycles published with Sparseloop's validation of it.

Sparseloop (Wu et al., MICRO 2022, fig. 12) validated its model against an Eyeriss v2 PE on eight pruned
MobileNet layers; its artifact publishes the layers as Timeloop problem files whose zero patterns are the
real masks (``distribution: real-data``), and the PE's measured cycles (``ground_truth_cycles.yaml``). The
artifact has no licence, so sparsesim does not ship its files: fetch it and point this script at it::

    git clone https://github.com/Accelergy-Project/micro22-sparseloop-artifact
    python benchmarks/eyeriss_v2_pe_validation.py micro22-sparseloop-artifact [--json FILE]

For each layer the script makes a trace of the problem files (``sparsesim make-trace timeloop``: the
masks' zeros, seeded nonzero values), simulates it on ``hwconfigs/validation/eyeriss_v2_pe.yaml`` (one PE
of one MAC, both zero operands skipped: ``csc_columns``) and on the same PE skipping zero activations only
(``zero_skip_activations``, what ``eyeriss_v2.yaml`` did before), and prints the PE array's busy cycles
against the published ones, next to Sparseloop's own estimates where the artifact keeps them (its
statistical ``uniform`` model and its ``actual_data`` one). It exits with 1 if any layer's busy cycles
differ from the published ones by more than ``--tolerance`` (relative; default 0: exactly).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP = Path("workspace/2022.micro.artifact/evaluation_setups/fig12_eyerissv2_pe_setup")
HWCONFIG = ROOT / "hwconfigs" / "validation" / "eyeriss_v2_pe.yaml"


def setup_dir(path: Path) -> Path:
    """The artifact's fig. 12 set-up, given the artifact's clone or the set-up folder itself."""
    for candidate in (path / SETUP, path):
        if (candidate / "scripts" / "ground_truth_cycles.yaml").is_file():
            return candidate
    raise SystemExit(f"{path}: neither it nor {path / SETUP} holds scripts/ground_truth_cycles.yaml")


def sparseloop_cycles(setup: Path, layer: str, model: str) -> int | None:
    """Sparseloop's estimate of a layer's cycles, where the artifact keeps its output (else None)."""
    runs = {"uniform": ("uniform_only", "uniform"), "actual_data": ("uniform_actual", "actual_data")}
    folder, run = runs[model]
    stats = setup / "ref_outputs" / folder / layer / run / "output" / "timeloop-model.stats.txt"
    if not stats.is_file():
        return None
    found = re.search(r"^\s*Cycles\s*:\s*(\d+)", stats.read_text(), re.MULTILINE)
    return int(found.group(1)) if found else None


def pe_busy_cycles(result) -> dict[str, int]:
    return {
        layer["name"]: layer["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"]
        for layer in result.layers
    }


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("artifact", type=Path, help="a clone of micro22-sparseloop-artifact")
    parser.add_argument("--tolerance", type=float, default=0.0, help="relative; default 0 (exact)")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)

    from sparsesim import load_hwconfig, simulate
    from sparsesim.config.hwconfig import read_yaml_text
    from sparsesim.config.overrides import with_parameter
    from sparsesim.workload.timeloop_problem import make_timeloop_trace

    setup = setup_dir(args.artifact)
    published_path = setup / "scripts" / "ground_truth_cycles.yaml"
    published = read_yaml_text(published_path.read_text(), str(published_path))
    problems = sorted((setup / "workload" / "mobilenet0.5-sparse" / "actual_data").glob("L*.yaml"))
    hw = load_hwconfig(HWCONFIG)
    activations_only = with_parameter(hw, "pe_array.pe.mechanism.kind", "zero_skip_activations")
    with tempfile.TemporaryDirectory() as out:
        trace = make_timeloop_trace(problems, out)
        both = pe_busy_cycles(simulate(hw, trace))
        act = pe_busy_cycles(simulate(activations_only, trace))

    rows, worst = [], 0.0
    header = f"{'layer':5}  {'published':>10}  {'sparsesim':>10}  ratio  {'act. only':>10}  ratio"
    header += "  Sparseloop uniform  actual data"
    print(header)
    for name in both:
        truth = int(published[name])
        ratio = both[name] / truth
        worst = max(worst, abs(ratio - 1))
        uniform, actual = (sparseloop_cycles(setup, name, m) for m in ("uniform", "actual_data"))
        rows.append(
            {
                "layer": name,
                "published": truth,
                "sparsesim_pe_busy": both[name],
                "activations_only_pe_busy": act[name],
                "sparseloop_uniform": uniform,
                "sparseloop_actual_data": actual,
            }
        )
        shown = [f"{c / truth:.3f}" if c else "-" for c in (uniform, actual)]
        print(
            f"{name:5}  {truth:>10,}  {both[name]:>10,}  {ratio:.3f}  {act[name]:>10,}"
            f"  {act[name] / truth:.3f}  {shown[0]:>18}  {shown[1]:>11}"
        )
    if args.json:
        args.json.write_text(json.dumps({"layers": rows}, indent=2, sort_keys=True) + "\n")
    if worst > args.tolerance:
        print(f"a layer is {worst:.2%} off the published cycles (tolerance {args.tolerance:.2%})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
