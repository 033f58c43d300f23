"""Winograd F(2x2, 3x3) against direct convolution, layer by layer, on a real trace: multiplications and
densities, of the trace's own weights and of the same weights magnitude-pruned in memory.

For every stride-1 3x3 layer (the others are listed with the reason they are not Winograd-able):

- densities: of the spatial weights ``g``, of the transformed weights ``U = G g G^T``, of the layer's input
  and of the transformed input tiles ``V = B^T d B``;
- multiplications of direct convolution: dense (``9 C K Hout Wout``), skipping zero weights, skipping
  zero weights or zero activations (the effectual MACs);
- multiplications of Winograd F(2x2, 3x3) (:mod:`sparsesim.sparse.winograd`): dense (``16 C K tiles``),
  skipping zero transformed weights, skipping zero transformed weights or inputs;
- the largest difference between the Winograd output (+ ReLU) and the trace's stored output, relative to the
  largest stored output.

``--prune S`` (repeatable) also reports each layer with its weights magnitude-pruned to the fraction ``S``
(:func:`sparsesim.workload.pruning.prune_weights`, one-shot, per layer), IN MEMORY and next to the stored
input: the activations are the dense network's, not those a pruned network would produce (for those, derive
a pruned trace with ``sparsesim prune`` and run this study on it).

    python benchmarks/winograd_study.py TRACE [--layer NAME ...] [--prune 0.5 ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sparsesim import load_trace
from sparsesim.sparse.winograd import (
    input_tile_bands,
    transform_weights,
    unsupported_reason,
    winograd_geometry,
    winograd_output,
    winograd_work,
)
from sparsesim.workload.ops import conv2d_reference
from sparsesim.workload.pruning import prune_weights

COLUMNS = (
    ("g", "g_density", "{:.3f}"),
    ("U", "u_density", "{:.3f}"),
    ("d", "input_density", "{:.3f}"),
    ("V", "v_density", "{:.3f}"),
    ("direct", "direct_dense", "{:.3e}"),
    ("direct w", "direct_skip_weights", "{:.3e}"),
    ("direct w+a", "direct_effectual", "{:.3e}"),
    ("wino", "winograd_dense", "{:.3e}"),
    ("wino U", "winograd_skip_weights", "{:.3e}"),
    ("wino U+V", "winograd_skip_operands", "{:.3e}"),
    ("dense x", "dense_ratio", "{:.2f}"),
    ("w-skip x", "skip_weights_ratio", "{:.2f}"),
    ("both x", "skip_operands_ratio", "{:.2f}"),
)


def layer_numbers(layer, weights: np.ndarray) -> dict:
    """Densities and multiplication counts of one Winograd-able layer with the given weights."""
    x = np.asarray(layer.input, dtype=np.float64)
    geometry = winograd_geometry(x.shape, weights.shape, layer.padding)
    u = transform_weights(weights)
    v_nonzeros = sum(int(np.count_nonzero(v)) for _, v in input_tile_bands(x, layer.padding))
    weight_mask = (weights != 0).astype(np.float64)
    effectual = conv2d_reference((x != 0).astype(np.float64), weight_mask, None, 1, layer.padding)
    numbers = {
        "g_density": float(np.count_nonzero(weights) / weights.size),
        "u_density": float(np.count_nonzero(u) / u.size),
        "input_density": float(np.count_nonzero(x) / x.size),
        "v_density": v_nonzeros / (16 * geometry.channels * geometry.tiles),
        "direct_dense": geometry.direct_multiplies,
        "direct_skip_weights": int(np.count_nonzero(weights)) * geometry.outputs,
        "direct_effectual": int(round(float(effectual.sum()))),
        "winograd_dense": geometry.dense_multiplies,
        "winograd_skip_weights": winograd_work(
            x, weights, layer.padding, skip="transformed_weights"
        ).total_multiplies,
        "winograd_skip_operands": winograd_work(
            x, weights, layer.padding, skip="transformed_operands"
        ).total_multiplies,
        "input_transform_adds": geometry.input_transform_adds,
        "output_transform_adds": geometry.output_transform_adds,
    }
    numbers["dense_ratio"] = numbers["direct_dense"] / numbers["winograd_dense"]
    numbers["skip_weights_ratio"] = numbers["direct_skip_weights"] / numbers["winograd_skip_weights"]
    numbers["skip_operands_ratio"] = numbers["direct_effectual"] / numbers["winograd_skip_operands"]
    return numbers


def study(trace, layer_names, prunings) -> list[dict]:
    rows = []
    for layer in trace.layers:
        if layer_names and layer.name not in layer_names:
            continue
        reason = unsupported_reason(layer.op, layer.weights.shape, layer.stride)
        if reason is not None:
            rows.append({"layer": layer.name, "pruning": None, "winograd": reason})
            continue
        out = np.maximum(winograd_output(layer.input, layer.weights, layer.bias, layer.padding), 0.0)
        error = float(np.abs(out - layer.output).max() / max(np.abs(layer.output).max(), 1e-300))
        dense = {"layer": layer.name, "pruning": 0.0, "winograd": "yes", "max_relative_error": error}
        rows.append(dense | layer_numbers(layer, np.asarray(layer.weights, dtype=np.float64)))
        for sparsity in prunings:
            pruned = prune_weights(layer.weights, sparsity).astype(np.float64)
            rows.append(
                {"layer": layer.name, "pruning": sparsity, "winograd": "yes"} | layer_numbers(layer, pruned)
            )
    return rows


def _totals(rows: list[dict], sparsity: float) -> dict:
    """Sums of the multiplication counts of the Winograd-able layers pruned to ``sparsity``."""
    chosen = [row for row in rows if row["winograd"] == "yes" and row["pruning"] == sparsity]
    keys = [key for _, key, _ in COLUMNS[4:10]]
    total = {key: sum(row[key] for row in chosen) for key in keys}
    total["dense_ratio"] = total["direct_dense"] / total["winograd_dense"]
    total["skip_weights_ratio"] = total["direct_skip_weights"] / total["winograd_skip_weights"]
    total["skip_operands_ratio"] = total["direct_effectual"] / total["winograd_skip_operands"]
    return total


def render(rows: list[dict]) -> str:
    """One line per layer and pruning, then the totals per pruning; right-aligned columns."""
    header = ["layer", "pruned", *(title for title, _, _ in COLUMNS), "max rel err"]
    table, notes = [], []
    for row in rows:
        if row["winograd"] != "yes":
            notes.append(f"{row['layer']}: not Winograd-able: {row['winograd']}")
            continue
        error = f"{row['max_relative_error']:.1e}" if "max_relative_error" in row else ""
        cells = [fmt.format(row[key]) for _, key, fmt in COLUMNS]
        table.append([row["layer"], f"{row['pruning']:.0%}", *cells, error])
    for sparsity in sorted({row["pruning"] for row in rows if row["winograd"] == "yes"}):
        total = _totals(rows, sparsity)
        cells = [fmt.format(total[key]) if key in total else "" for _, key, fmt in COLUMNS]
        table.append(["total", f"{sparsity:.0%}", *cells, ""])
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *table]
    ]
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace")
    parser.add_argument("--layer", action="append", dest="layers")
    parser.add_argument("--prune", action="append", type=float, default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = study(load_trace(args.trace), args.layers, args.prune)
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
