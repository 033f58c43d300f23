"""Side by side: SCALE-Sim 3.0.0 and ``sparsesim systolic`` on the same topology, same .cfg files.

One command, from a checkout with sparsesim installed (``pip install -e .``)::

    python benchmarks/scalesim/bench_scalesim.py

It creates a throwaway virtual environment, installs ``scalesim==3.0.0`` and ``numpy<2.4`` into it (3.0.0
crashes with numpy 2.4 at the end of the first layer; SCALE-Sim is never a dependency of sparsesim), then
for each dataflow (WS, OS, IS) runs ResNet-18 on a 32x32 array (``resnet18.csv``,
``hwconfigs/systolic_32x32_<df>.cfg``) in both simulators, one after the other, each in its own child process:

* SCALE-Sim through its Python API with trace files off (its fastest way; its command line always writes
  the traces), CALC bandwidth mode;
* sparsesim through its command line, ``python -m sparsesim systolic CFG TOPOLOGY --json FILE``.

It checks that every layer's numbers are identical (compute cycles = SCALE-Sim's Total Cycles minus Stall
Cycles, stall cycles, SRAM reads / writes, DRAM reads / writes) and prints each simulator's wall time and
peak memory (the child's maximum resident set size, from ``os.wait4``) and their ratios. The exit status
is 1 if any number differs.

Options: ``--dataflow ws`` (repeatable), ``--layers N`` (first N layers only, for a quick check),
``--scalesim-python PATH`` (reuse an environment that already has scalesim 3.0.0), ``--keep-venv DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scalesim_reports import read_layers  # this script's folder

from sparsesim.systolic import SCALESIM_COUNTS

HERE = Path(__file__).resolve().parent
SCALESIM_DRIVER = """
import sys
from scalesim.scale_sim import scalesim
cfg, topology, layout, out = sys.argv[1:5]
sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topology, layout=layout)
sim.run_scale(top_path=out)
"""


def run_measured(command: list[str], log_path: Path) -> tuple[float, float, float]:
    """Run ``command``; return (wall seconds, CPU seconds, peak resident MiB) of that child.

    CPU time (user + system) is given too because wall time grows with other load on the machine.
    """
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command[:3])} ... failed (exit {process.returncode}); see {log_path}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux reports KiB


def make_scalesim_venv(where: Path) -> str:
    print(f"creating a throwaway venv for SCALE-Sim in {where} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = str(where / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "scalesim==3.0.0", "numpy<2.4"], check=True)
    return python


def read_scalesim(report_dir: Path) -> list[dict[str, int]]:
    return [{name: layer[name] for name in SCALESIM_COUNTS} for layer in read_layers(report_dir)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataflow", action="append", choices=["ws", "os", "is"])
    parser.add_argument("--topology", default=str(HERE / "resnet18.csv"))
    parser.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    parser.add_argument("--scalesim-python", help="python of an environment with scalesim==3.0.0")
    parser.add_argument("--keep-venv", help="create SCALE-Sim's venv here and keep it")
    parser.add_argument(
        "--save-scalesim",
        metavar="FILE",
        help="also write SCALE-Sim's per-layer numbers as JSON",
    )
    args = parser.parse_args()
    dataflows = args.dataflow or ["ws", "os", "is"]

    work = Path(tempfile.mkdtemp(prefix="bench_scalesim_"))
    try:
        python = args.scalesim_python or make_scalesim_venv(Path(args.keep_venv or work / "venv"))
        topology = Path(args.topology)
        if args.layers:
            lines = topology.read_text().splitlines()
            topology = work / topology.name
            topology.write_text("\n".join(lines[: args.layers + 1]) + "\n")
        layout = work / "layout.csv"
        layout.write_text("Layer name,\n")  # SCALE-Sim 3.0.0 opens a layout file even when unused

        summary = []
        recorded = {}
        failed = False
        for dataflow in dataflows:
            cfg = HERE.parents[1] / "hwconfigs" / f"systolic_32x32_{dataflow}.cfg"
            print(f"\n{dataflow.upper()}: SCALE-Sim 3.0.0 ...", flush=True)
            scale_wall, scale_cpu, scale_mib = run_measured(
                [python, "-c", SCALESIM_DRIVER, str(cfg), str(topology), str(layout), str(work / "scalesim")],
                work / f"scalesim_{dataflow}.log",
            )
            print(f"{dataflow.upper()}: sparsesim ...", flush=True)
            ours_json = work / f"sparsesim_{dataflow}.json"
            ours_wall, ours_cpu, ours_mib = run_measured(
                [sys.executable, "-m", "sparsesim", "systolic", str(cfg), str(topology)]
                + ["--json", str(ours_json)],
                work / f"sparsesim_{dataflow}.log",
            )
            theirs = read_scalesim(work / "scalesim" / f"systolic_32x32_{dataflow}")
            recorded[dataflow] = theirs
            ours = json.loads(ours_json.read_text())["layers"]
            mismatches = []
            if len(theirs) != len(ours):
                mismatches.append(f"{len(theirs)} layers in SCALE-Sim, {len(ours)} in sparsesim")
            for index, (a, b) in enumerate(zip(theirs, ours, strict=False)):
                for field in SCALESIM_COUNTS:
                    if a[field] != b[field]:
                        mismatches.append(
                            f"layer {index} {b['layer']}: {field} SCALE-Sim {a[field]}, sparsesim {b[field]}"
                        )
            failed |= bool(mismatches)
            for line in mismatches:
                print("  MISMATCH", line)
            cycles = sum(layer["compute_cycles"] for layer in ours)
            summary.append(
                (
                    dataflow,
                    len(ours),
                    len(ours) - len({m.split(":")[0] for m in mismatches}),
                    cycles,
                    scale_wall,
                    scale_cpu,
                    scale_mib,
                    ours_wall,
                    ours_cpu,
                    ours_mib,
                )
            )

        name = Path(args.topology).stem
        print(f"\n{name} on a 32x32 array, dense, CALC mode; per-layer {', '.join(SCALESIM_COUNTS)}")
        header = (
            "df",
            "layers identical",
            "cycles",
            "SCALE-Sim s",
            "(CPU s)",
            "SCALE-Sim MiB",
            "sparsesim s",
            "(CPU s)",
            "sparsesim MiB",
            "time ratio",
            "(CPU ratio)",
            "memory ratio",
        )
        print("  ".join(f"{h:>13}" for h in header))
        for df, n, same, cycles, s_wall, s_cpu, s_mib, o_wall, o_cpu, o_mib in summary:
            cells = (
                df.upper(),
                f"{same}/{n}",
                str(cycles),
                f"{s_wall:.1f}",
                f"{s_cpu:.1f}",
                f"{s_mib:.0f}",
                f"{o_wall:.2f}",
                f"{o_cpu:.2f}",
                f"{o_mib:.0f}",
                f"{s_wall / o_wall:.0f}x",
                f"{s_cpu / o_cpu:.0f}x",
                f"1/{s_mib / o_mib:.0f}",
            )
            print("  ".join(f"{c:>13}" for c in cells))
        print("identical cycles and counts: " + ("NO" if failed else "yes"))
        if args.save_scalesim:
            query = "import importlib.metadata as m; print(m.version('scalesim'), m.version('numpy'))"
            version = subprocess.run([python, "-c", query], capture_output=True, text=True).stdout.split()
            Path(args.save_scalesim).write_text(
                json.dumps(
                    {
                        "producer": f"SCALE-Sim {version[0]} (numpy {version[1]}), Python API, traces off",
                        "command": "python benchmarks/scalesim/bench_scalesim.py --save-scalesim FILE",
                        "topology": Path(args.topology).name,
                        "configs": {df: f"hwconfigs/systolic_32x32_{df}.cfg" for df in recorded},
                        "layers": recorded,
                    },
                    indent=1,
                )
                + "\n"
            )
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
