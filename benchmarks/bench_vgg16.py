"""Speed of the simulator on the shipped VGG16 layers, as ratios measured in one run.

For each shipped hwconfig and each layer: the wall time of a full simulation of the layer (tile pipeline,
cycle and action counts, datapath output and functional check) next to the wall time numpy takes to compute
the same layer just before it, in the same process (float64 im2col + matmul + ReLU,
:func:`sparsesim.workload.ops.layer_reference`), and the simulated MACs per wall-clock second. Ratios, not
absolute times, are what to compare across machines. numpy's BLAS runs on ``--threads`` threads (default 1)
in both: the simulator's own work is single-threaded Python and numpy, so one thread each makes the MACs
per second "per core" and keeps a multi-threaded numpy from looking faster on an idle machine than on a
busy one.

    python benchmarks/bench_vgg16.py [--trace traces/vgg16_china] [--hwconfig hwconfigs/x.yaml ...]
                                     [--repeat 3] [--threads 1] [--json results.json]
                                     [--record benchmarks/speed_record.jsonl]
                                     [--compare benchmarks/speed_record.jsonl --max-slowdown 2.0]

The mapper's estimate is timed too: for each layer, the time to rate every mapping of its space (the
fast estimate of :mod:`sparsesim.mapping.space`, with the PE array's busy cycles of each PE-tile shape
measured beforehand: they are simulation, not estimate), as candidates rated per second (issue 11's
target: 10^4 per core) and, for the record, as ``estimate_over_numpy``: the time to rate every layer's
space over numpy's time for the same layers.

The speed record. ``--record FILE`` appends one JSON line to FILE: when, which commit, which Python and
numpy, and per config the whole-trace ``sim_over_numpy`` and ``estimate_over_numpy`` ratios.
``--compare FILE`` compares this run's ratios with FILE's last record and exits with 1 if any config's
ratio grew by more than ``--max-slowdown`` times (a config or a ratio the record does not have is
reported, not judged). CI runs ``--compare`` against the record checked in; record a new line, and commit
it, when a change makes the simulator faster or is accepted as slower.

Why our own record rather than pytest-benchmark or asv: both keep and compare absolute times (seconds
per call, per commit), which move with whatever else a shared machine is running; our figure of merit is a
ratio measured in one run (simulation time over numpy's time for the same layers, both on the same busy
machine), which neither tool computes, and a JSON-lines file in the repository is all the history it needs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_time(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


# The BLAS libraries numpy may be built with, and the variable each reads its thread count from.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def estimate_time(hw, layer, repeat: int) -> tuple[int, float]:
    """The layer's space on ``hw`` and the best time to rate all of it (see the module docstring)."""
    from sparsesim.accelerator import LayerSetup
    from sparsesim.mapper import OBJECTIVES, Rater, space_of

    setup = LayerSetup(hw, layer)
    space = space_of(setup)
    measured = Rater(setup)
    for mapping in space:
        measured.rate(mapping)  # the PE array's busy cycles of each PE-tile shape

    def rate_all() -> None:
        rater = Rater(setup)
        rater.pe_busy = dict(measured.pe_busy)
        for mapping in space:
            rater.key(mapping, OBJECTIVES["cycles"])

    return len(space), best_time(rate_all, repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads for numpy and the simulator alike (default 1: figures per core, and a ratio that "
        "does not move with how many cores a shared machine has free)",
    )
    parser.add_argument("--trace", default=str(ROOT / "traces" / "vgg16_china"))
    parser.add_argument("--hwconfig", action="append", default=None)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings (default 3)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--record", default=None, help="append this run's ratios to this JSON-lines file")
    parser.add_argument("--compare", default=None, help="judge this run against this file's last record")
    parser.add_argument(
        "--max-slowdown",
        type=float,
        default=2.0,
        help="with --compare: fail if a ratio grew by more than this factor (default 2.0)",
    )
    args = parser.parse_args(argv)
    if "numpy" in sys.modules:
        parser.error("numpy was imported before the BLAS thread count could be set; run this file directly")
    for variable in BLAS_THREAD_VARIABLES:
        os.environ[variable] = str(args.threads)
    from sparsesim import load_hwconfig, load_trace
    from sparsesim.simulator import simulate_layer
    from sparsesim.workload.ops import layer_reference

    trace = load_trace(args.trace, keep_in_memory=True)  # timing, not memory: read each layer once
    hwconfigs = args.hwconfig or sorted(str(p) for p in (ROOT / "hwconfigs").glob("*.yaml"))
    results = {}
    for hw_path in hwconfigs:
        hw = load_hwconfig(hw_path)
        print(f"\n{hw.name} on {trace.name} (best of {args.repeat})")
        print(
            f"{'layer':<8} {'MACs':>14} {'sim s':>8} {'numpy s':>8} {'sim/numpy':>10} {'sim MAC/s':>11}"
            f" {'mappings':>9} {'rated/s':>9}"
        )
        rows = []
        # numpy is timed next to each simulation, so that both see the same load on a shared machine.
        numpy_s = {}
        for layer in trace.layers:
            numpy_s[layer.name] = best_time(lambda layer=layer: layer_reference(layer), args.repeat)
            sim_s = best_time(lambda layer=layer, hw=hw: simulate_layer(hw, layer), args.repeat)
            mappings, estimate_s = estimate_time(hw, layer, args.repeat)
            macs = layer.algorithmic_macs
            rows.append(
                {
                    "layer": layer.name,
                    "macs": macs,
                    "sim_s": sim_s,
                    "numpy_s": numpy_s[layer.name],
                    "mappings": mappings,
                    "estimate_s": estimate_s,
                }
            )
            print(
                f"{layer.name:<8} {macs:>14,} {sim_s:>8.3f} {numpy_s[layer.name]:>8.3f} "
                f"{sim_s / numpy_s[layer.name]:>9.2f}x {macs / sim_s:>11.3g} {mappings:>9,} "
                f"{mappings / estimate_s:>9,.0f}"
            )
        total_macs = sum(r["macs"] for r in rows)
        total_sim = sum(r["sim_s"] for r in rows)
        total_numpy = sum(r["numpy_s"] for r in rows)
        total_mappings = sum(r["mappings"] for r in rows)
        total_estimate = sum(r["estimate_s"] for r in rows)
        print(
            f"{'total':<8} {total_macs:>14,} {total_sim:>8.3f} {total_numpy:>8.3f} "
            f"{total_sim / total_numpy:>9.2f}x {total_macs / total_sim:>11.3g} {total_mappings:>9,} "
            f"{total_mappings / total_estimate:>9,.0f}"
        )
        results[hw.name] = {
            "layers": rows,
            "sim_over_numpy": total_sim / total_numpy,
            "simulated_macs_per_s": total_macs / total_sim,
            "estimate_over_numpy": total_estimate / total_numpy,
            "mappings_rated_per_s": total_mappings / total_estimate,
        }
    if args.json:
        from sparsesim.files import write_atomic

        write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    ratios = {
        measure: {name: result[measure] for name, result in results.items()}
        for measure in ("sim_over_numpy", "estimate_over_numpy")
    }
    status = compare_with_record(ratios, args.compare, args.max_slowdown) if args.compare else 0
    if args.record:
        append_record(args.record, trace.name, ratios)
    return status


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def append_record(path: str, trace_name: str, ratios: dict[str, dict[str, float]]) -> None:
    """Append one line: this run's per-config ratios (per measure) and where they were measured."""
    import numpy

    line = {
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "blas_threads": int(os.environ[BLAS_THREAD_VARIABLES[0]]),
        "trace": trace_name,
        **{
            measure: {name: round(ratio, 4) for name, ratio in sorted(per_config.items())}
            for measure, per_config in ratios.items()
        },
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
    print(f"\nrecorded in {path}")


def compare_with_record(ratios: dict[str, dict[str, float]], path: str, max_slowdown: float) -> int:
    """Print each config's ratios against the last record of ``path``; 1 if one grew by > ``max_slowdown``."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        print(f"\n{path} holds no record yet: nothing to compare with")
        return 0
    last = json.loads(lines[-1])
    print(f"\nagainst the record of {last['utc']} (commit {last.get('commit')}), limit {max_slowdown}x")
    print(f"{'config':<20} {'measure':<20} {'then':>8} {'now':>8} {'now/then':>9}")
    failed = []
    for measure, per_config in ratios.items():
        previous = last.get(measure, {})
        for name, ratio in sorted(per_config.items()):
            if name not in previous:
                print(f"{name:<20} {measure:<20} {'-':>8} {ratio:>7.2f}x {'new':>9}")
                continue
            growth = ratio / previous[name]
            print(f"{name:<20} {measure:<20} {previous[name]:>7.2f}x {ratio:>7.2f}x {growth:>8.2f}x")
            if growth > max_slowdown:
                failed.append(f"{name} ({measure})")
    if failed:
        print(f"slower than the record by more than {max_slowdown}x: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
