"""Speed of the simulator on the shipped VGG16 layers, as ratios measured in one run.

For each shipped hwconfig and each layer: the wall time of a full simulation of the layer (tile pipeline,
cycle and action counts, datapath output and functional check) next to the wall time numpy takes to compute
the same layer (float64 im2col + matmul + ReLU, :func:`sparsesim.workload.ops.layer_reference`) in the same
process, and the simulated MACs per wall-clock second. Ratios, not absolute times, are what to compare
across machines.

    python benchmarks/bench_vgg16.py [--trace traces/vgg16_china] [--hwconfig hwconfigs/x.yaml ...]
                                     [--repeat 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    from sparsesim import load_hwconfig, load_trace
    from sparsesim.simulator import simulate_layer
    from sparsesim.workload.ops import layer_reference

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trace", default=str(ROOT / "traces" / "vgg16_china"))
    parser.add_argument("--hwconfig", action="append", default=None)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings (default 3)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    trace = load_trace(args.trace)
    hwconfigs = args.hwconfig or sorted(str(p) for p in (ROOT / "hwconfigs").glob("*.yaml"))
    numpy_s = {
        layer.name: best_time(lambda layer=layer: layer_reference(layer), args.repeat)
        for layer in trace.layers
    }
    results = {}
    for hw_path in hwconfigs:
        hw = load_hwconfig(hw_path)
        print(f"\n{hw.name} on {trace.name} (best of {args.repeat})")
        print(f"{'layer':<8} {'MACs':>14} {'sim s':>8} {'numpy s':>8} {'sim/numpy':>10} {'sim MAC/s':>11}")
        rows = []
        for layer in trace.layers:
            sim_s = best_time(lambda layer=layer, hw=hw: simulate_layer(hw, layer), args.repeat)
            macs = layer.algorithmic_macs
            rows.append({"layer": layer.name, "macs": macs, "sim_s": sim_s, "numpy_s": numpy_s[layer.name]})
            print(
                f"{layer.name:<8} {macs:>14,} {sim_s:>8.3f} {numpy_s[layer.name]:>8.3f} "
                f"{sim_s / numpy_s[layer.name]:>9.2f}x {macs / sim_s:>11.3g}"
            )
        total_macs = sum(r["macs"] for r in rows)
        total_sim = sum(r["sim_s"] for r in rows)
        total_numpy = sum(r["numpy_s"] for r in rows)
        print(
            f"{'total':<8} {total_macs:>14,} {total_sim:>8.3f} {total_numpy:>8.3f} "
            f"{total_sim / total_numpy:>9.2f}x {total_macs / total_sim:>11.3g}"
        )
        results[hw.name] = {
            "layers": rows,
            "sim_over_numpy": total_sim / total_numpy,
            "simulated_macs_per_s": total_macs / total_sim,
        }
    if args.json:
        from sparsesim.files import write_atomic

        write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
