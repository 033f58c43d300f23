"""Peak memory of a whole ``sparsesim run``, as a multiple of the trace's size on disk.

Runs ``python -m sparsesim run HWCONFIG TRACE`` in a child process per config, reads the child's peak
resident set size (``getrusage(RUSAGE_CHILDREN).ru_maxrss``; one child per measurement, so each peak is its
own), and divides it by the bytes of the trace's files. It also measures a child that only imports what a
run imports, so the table says how much of the peak is the interpreter and its libraries and how much the
simulation holds.

    python benchmarks/bench_memory.py [--trace traces/vgg16_china] [--hwconfig hwconfigs/x.yaml ...]
                                      [--max-ratio 3.0]

``--max-ratio R`` exits with 1 if any config's peak exceeds R times the trace's size (issue 5's target is
3). Memory, unlike time, does not depend on what else the machine runs, so this is a fixed bound, not a
ratio against a record. Linux (``ru_maxrss`` in KiB) and macOS (in bytes) are both read right.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HWCONFIGS = ("cnvlutin", "dadiannao", "eyeriss_v2", "snapea_exact", "scnn")
# What `sparsesim run` imports before it reads a trace: the floor under any run's peak.
IMPORTS_ONLY = "import sparsesim.cli, sparsesim.simulator, sparsesim.workload.trace"


def child_peak_bytes(command: list[str]) -> int:
    """Peak resident set size of one child process running ``command`` (which must exit with 0)."""
    # A fresh Python per measurement: RUSAGE_CHILDREN keeps the largest peak of all waited-for children,
    # so each measurement runs in a grandchild whose parent reports only that one.
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True, cwd=ROOT
    )
    peak = int(result.stdout.strip())
    return peak if sys.platform == "darwin" else peak * 1024


def trace_bytes(trace: Path) -> int:
    return sum(path.stat().st_size for path in trace.iterdir() if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=ROOT / "traces" / "vgg16_china")
    parser.add_argument(
        "--hwconfig", action="append", type=Path, help="default: " + ", ".join(DEFAULT_HWCONFIGS)
    )
    parser.add_argument("--max-ratio", type=float, help="fail if a peak exceeds this many times the trace")
    args = parser.parse_args(argv)
    hwconfigs = args.hwconfig or [ROOT / "hwconfigs" / f"{name}.yaml" for name in DEFAULT_HWCONFIGS]
    size = trace_bytes(args.trace)
    floor = child_peak_bytes([sys.executable, "-c", IMPORTS_ONLY])
    print(f"trace {args.trace}: {size / 2**20:.1f} MiB on disk")
    print(f"interpreter + imports: {floor / 2**20:.1f} MiB")
    print(f"{'hwconfig':<22}{'peak MiB':>10}{'x trace':>9}{'above imports MiB':>19}")
    worst = 0.0
    for hwconfig in hwconfigs:
        command = [sys.executable, "-m", "sparsesim", "run", os.fspath(hwconfig), os.fspath(args.trace)]
        peak = child_peak_bytes(command)
        ratio = peak / size
        worst = max(worst, ratio)
        print(f"{hwconfig.stem:<22}{peak / 2**20:>10.1f}{ratio:>8.2f}x{(peak - floor) / 2**20:>19.1f}")
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"FAIL: peak memory {worst:.2f}x the trace's size, above --max-ratio {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
