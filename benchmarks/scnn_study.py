"""SCNN's Cartesian product against dense work on the same machine: per-layer speed-up, multiplier use,
bank-conflict stalls, wasted and halo products, energy.

Runs hwconfigs/scnn.yaml (``cartesian_product``: only nonzero weights and activations are issued) and its
dense twins, which differ in one or two parameters only:

- ``dense``: ``pe_array.pe.mechanism.kind: cartesian_product_dense``: the same PEs, planar tiling, accumulator
  banks and RLE storage, every weight and activation issued (SCNN's PT-IS-CP-dense): isolates the PE
  mechanism;
- ``dense_uncompressed`` (with ``--uncompressed``): the dense twin storing and moving every tensor
  uncompressed as well (dense PEs, dense storage);
- ``dot_product`` (with ``--dot-product``): the same 1,024 multipliers, buffer and DRAM as a dense
  dot-product machine (closer to the paper's DCNN): mechanism ``dense`` (sparsesim's output-stationary
  broadcast PEs: 8 rows of windows x 8 columns of 4 filters x 4 activation lanes), every tensor
  uncompressed, and a 36 KiB weight scratchpad per PE (4 filters x 512 channels x 3 x 3 x 2 B) so that a
  filter's weights stay in the PE.

One table per trace on stdout; ``--json FILE`` also writes every number.

    python benchmarks/scnn_study.py TRACE [--layer NAME ...] [--uncompressed] [--dot-product] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from sparsesim import load_hwconfig, load_trace, simulate
from sparsesim.config import FormatsConfig, LevelFormatsConfig, PeFormatsConfig, mechanism_config_class
from sparsesim.report.report import render_table

ROOT = Path(__file__).resolve().parent.parent


#: The dot-product twin's weight scratchpad: 4 filters x 512 channels x 3 x 3 weights of 2 bytes.
DOT_PRODUCT_WEIGHT_SPAD_BYTES = 4 * 512 * 9 * 2


def twin(hw, kind: str, uncompressed: bool = False, **pe_fields):
    """``hw`` with another PE mechanism at its defaults (and every tensor uncompressed, if asked)."""
    mechanism = hw.pe_array.pe.mechanism
    if kind != mechanism.kind:  # the Cartesian kinds share their parameters; others take their defaults
        shared = {
            f.name: getattr(mechanism, f.name) for f in dataclasses.fields(mechanism) if f.name != "kind"
        }
        cls = mechanism_config_class(kind)
        own = {f.name for f in dataclasses.fields(cls)}
        mechanism = cls(**{name: value for name, value in shared.items() if name in own})
    pe = dataclasses.replace(hw.pe_array.pe, mechanism=mechanism, **pe_fields)
    hw = dataclasses.replace(hw, pe_array=dataclasses.replace(hw.pe_array, pe=pe))
    if uncompressed:
        formats = FormatsConfig(
            dram=LevelFormatsConfig(), global_buffer=LevelFormatsConfig(), pe=PeFormatsConfig()
        )
        hw = dataclasses.replace(hw, name=f"{hw.name}_{kind}_uncompressed", formats=formats)
    return hw


def layer_row(layer: dict, base: dict) -> dict:
    c = layer["mechanism"]["summary"]
    return {
        "layer": layer["name"],
        "activation_density": layer["densities"]["input_activations"],
        "weight_density": layer["densities"]["weights"],
        "cycles": layer["cycles"],
        "dense_cycles": base["cycles"],
        "speedup": base["cycles"] / layer["cycles"],
        "energy_pj": layer["energy_pj"],
        "dense_energy_pj": base["energy_pj"],
        "energy_ratio": base["energy_pj"] / layer["energy_pj"],
        "output_channel_group": c["output_channel_group"],
        "pe_tile": c["pe_tile"],
        "bands": c["bands"],
        "multiplier_utilization": c["multiplier_utilization"],
        "kept_multiplier_utilization": c["kept_multiplier_utilization"],
        "dense_multiplier_utilization": base["mechanism"]["summary"]["multiplier_utilization"],
        "conflict_stall_fraction": c["conflict_stall_fraction"],
        "dense_conflict_stall_fraction": base["mechanism"]["summary"]["conflict_stall_fraction"],
        "barrier_idle_fraction": c["barrier_idle_fraction"],
        "wasted_fraction": c["wasted_fraction"],
        "halo_fraction": c["halo_fraction"],
        "products": c["products"],
        "dense_products": base["mechanism"]["summary"]["products"],
        "pe_array_busy_fraction": layer["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"]
        / layer["cycles"],
        "functional_check_passed": layer["functional_check"]["passed"] and base["functional_check"]["passed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace")
    parser.add_argument("--layer", action="append", dest="layers")
    parser.add_argument("--uncompressed", action="store_true", help="also run the uncompressed dense twin")
    parser.add_argument("--dot-product", action="store_true", help="also run the dense dot-product twin")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    hw = load_hwconfig(ROOT / "hwconfigs" / "scnn.yaml")
    trace = load_trace(args.trace)
    scnn = simulate(hw, trace, args.layers)
    dense = simulate(twin(hw, "cartesian_product_dense"), trace, args.layers)
    rows = [layer_row(layer, base) for layer, base in zip(scnn.layers, dense.layers, strict=True)]
    totals = {
        "cycles": scnn.totals["cycles"],
        "dense_cycles": dense.totals["cycles"],
        "speedup": dense.totals["cycles"] / scnn.totals["cycles"],
        "energy_pj": scnn.totals["energy_pj"],
        "dense_energy_pj": dense.totals["energy_pj"],
        "energy_ratio": dense.totals["energy_pj"] / scnn.totals["energy_pj"],
        "energy_by_component_pj": {
            name: {"scnn": comp["energy_pj"], "dense": dense.totals["components"][name]["energy_pj"]}
            for name, comp in scnn.totals["components"].items()
        },
    }
    extra = []
    if args.uncompressed:
        extra.append(("dense_uncompressed", twin(hw, "cartesian_product_dense", uncompressed=True)))
    if args.dot_product:
        dot = twin(hw, "dense", uncompressed=True, weight_spad_bytes=DOT_PRODUCT_WEIGHT_SPAD_BYTES)
        extra.append(("dot_product", dot))
    for label, machine in extra:
        other = simulate(machine, trace, args.layers)
        totals[f"{label}_check"] = other.totals["functional_check_passed"]
        totals[f"{label}_cycles"] = other.totals["cycles"]
        totals[f"{label}_energy_pj"] = other.totals["energy_pj"]
        totals[f"speedup_vs_{label}"] = other.totals["cycles"] / scnn.totals["cycles"]
        totals[f"energy_ratio_vs_{label}"] = other.totals["energy_pj"] / scnn.totals["energy_pj"]
        for row, layer in zip(rows, other.layers, strict=True):
            row[f"{label}_cycles"] = layer["cycles"]
            row[f"{label}_energy_pj"] = layer["energy_pj"]
            row[f"speedup_vs_{label}"] = layer["cycles"] / row["cycles"]
            row[f"{label}_mac_utilization"] = layer["throughput"]["mac_utilization"]

    def pct(x):
        return f"{x * 100:.1f}%"

    header = [
        "layer",
        "act",
        "wgt",
        "Kc",
        "tile",
        "speed-up",
        "util",
        "dense util",
        "conflicts",
        "dense confl",
    ]
    header += ["barrier", "wasted", "halo", "energy x"]
    table = [
        [
            r["layer"],
            f"{r['activation_density']:.2f}",
            f"{r['weight_density']:.2f}",
            str(r["output_channel_group"]),
            "x".join(map(str, r["pe_tile"])) + (f"/{r['bands']}b" if r["bands"] > 1 else ""),
            f"{r['speedup']:.2f}x",
            pct(r["multiplier_utilization"]),
            pct(r["dense_multiplier_utilization"]),
            pct(r["conflict_stall_fraction"]),
            pct(r["dense_conflict_stall_fraction"]),
            pct(r["barrier_idle_fraction"]),
            pct(r["wasted_fraction"]),
            pct(r["halo_fraction"]),
            f"{r['energy_ratio']:.2f}x",
        ]
        for r in rows
    ]
    table.append(["total", "", "", "", "", f"{totals['speedup']:.2f}x", "", "", "", "", "", "", ""])
    table[-1].append(f"{totals['energy_ratio']:.2f}x")
    print(f"SCNN (cartesian_product) vs the same machine issuing every operand, on {trace.name}")
    print(render_table(header, table, separator_before_last=True))
    if args.uncompressed:
        print(
            "vs the dense twin with uncompressed storage: "
            f"{totals['speedup_vs_dense_uncompressed']:.2f}x faster, "
            f"{totals['energy_ratio_vs_dense_uncompressed']:.2f}x less energy"
        )
    if args.dot_product:
        per_layer = ", ".join(f"{r['layer']} {r['speedup_vs_dot_product']:.2f}x" for r in rows)
        print(
            f"vs the dense dot-product twin: {totals['speedup_vs_dot_product']:.2f}x faster, "
            f"{totals['energy_ratio_vs_dot_product']:.2f}x less energy ({per_layer})"
        )
    checks = all(r["functional_check_passed"] for r in rows)
    checks = checks and all(totals[f"{label}_check"] for label, _ in extra)
    print(f"functional check: {'pass' if checks else 'FAILED'}")
    if args.json:
        args.json.write_text(
            json.dumps({"trace": trace.name, "layers": rows, "totals": totals}, indent=2) + "\n"
        )
    return 0 if checks else 1


if __name__ == "__main__":
    sys.exit(main())
