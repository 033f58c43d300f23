"""The simulation report and its renderings.

A :class:`Report` wraps one plain, JSON-able dict whose shape is fixed by ``REPORT_SCHEMA_VERSION``:

- ``hwconfig`` (name and every parameter), ``trace`` (name, format version, provenance); ``residency``
  (whether the weights stay in the PEs across layers, and ``activations``: which layers' outputs stay in the
  global buffer as the next layer's input, ``kept_in_buffer``, and which spill, ``spilled_to_dram``, with
  their bytes: :mod:`sparsesim.mapping.residency`);
- ``layers``: per layer, ``cycles`` and ``time_s``; ``computes`` (algorithmic, actual, effectual, ineffectual,
  skipped, gated, charged); the lecture's ``throughput`` (eq. 3.4) and ``energy_efficiency`` (eq. 3.9)
  decompositions; ``components``: per component its ``actions``, ``action_energy_pj``, ``energy_pj``,
  ``energy_share`` and ``cycle_states`` (busy / stall / idle cycles of each of its ports, or of the PE array);
  ``bound`` (what bounds the layer, roofline-style: see :func:`bound_of`);
  ``dram_traffic`` (bytes per tensor in the configured formats, uncompressed bytes, their ratio);
  ``tiling`` (the chosen mapping's dataflow and the tile sizes); ``mapping`` (the layer's mapping, as
  ``--mapping`` takes it) and ``mapper`` (its objective, the mappings in its space and how many it
  simulated; null when a mapping file mapped the layer); ``functional_check`` (``passed``, the names of
  the ``failed`` parts, and each part:
  ``stored_output``, the trace's output against numpy's of its operands, and ``datapath``, the machine's
  output against numpy's of the operands it used; ``lossy_error`` for lossy machines);
  ``mechanism``: the PE mechanism's ``kind`` and its ``summary`` of the layer (null if it has none; each
  mechanism module documents its own, e.g. SCNN's products, stalls and halos, SnaPEA's terminations);
- ``totals``: the same quantities summed over the layers (layers run one after the other).

The same inputs give a byte-identical JSON: no timestamps, no absolute paths, dict order fixed by the code.
"""

from __future__ import annotations

import csv
import io
import json

from sparsesim.quantities import percent, ratio

# 2: functional_check in two parts (stored_output, datapath), failed; no reference.
# 3: the mechanism's summary under "mechanism" (kind, summary), replacing early_termination,
#    mixture_of_experts, structured_sparsity, kernel_patterns and cartesian_product; tiling.dataflow.
# 4: bound, per layer and in the totals.
# 5: mapping per layer (Timeloop-style directives), tiling.mapped_by and tiling.buffer_tiles,
#    dram_traffic.*.partial_sums, lower_bound per layer and in the totals.
# 6: mapper per layer (objective, space, simulated; null when a mapping file mapped the layer),
#    tiling.weights_resident, residency (the weights kept in the PEs across layers).
# 7: tiling.inputs_resident and tiling.outputs_stay, residency.activations (outputs kept in the buffer as
#    the next layer's input, or spilled).
REPORT_SCHEMA_VERSION = 7

_COMPUTES = (
    "algorithmic",
    "actual",
    "effectual",
    "ineffectual",
    "skipped",
    "gated",
    "early_terminated",
    "charged",
)


#: What a failed part of a layer's ``functional_check`` means (see ``sparsesim.simulator._functional_check``).
FAILED_PART_MEANINGS = {
    "stored_output": "the trace's stored output is not numpy's of the trace's operands and activation",
    "datapath": "the datapath's output is not numpy's of the operands the machine used",
}


def _mapped_by(entry: dict) -> str:
    """``file``, or ``mapper (cycles, 5 of 7)``: its objective and how many of its space it simulated."""
    search = entry.get("mapper")
    if entry["tiling"]["mapped_by"] != "mapper" or not search:
        return entry["tiling"]["mapped_by"]
    return f"mapper ({search['objective']}, {search['simulated']} of {search['space']})"


class Report:
    """A simulation's results; ``data`` is the JSON-able dict described in the module docstring."""

    def __init__(self, data: dict):
        self.data = data

    @property
    def layers(self) -> list[dict]:
        return self.data["layers"]

    @property
    def totals(self) -> dict:
        return self.data["totals"]

    def layer(self, name: str) -> dict:
        for entry in self.layers:
            if entry["name"] == name:
                return entry
        raise KeyError(name)

    @staticmethod
    def totals_of(layers: list[dict], clock_hz: float) -> dict:
        """Sum the layers (run back to back) into the ``totals`` section."""
        cycles = sum(entry["cycles"] for entry in layers)
        computes = {key: sum(entry["computes"][key] for entry in layers) for key in _COMPUTES}
        energy = sum(entry["energy_pj"] for entry in layers)
        components: dict[str, dict] = {}
        for entry in layers:
            for path, comp in entry["components"].items():
                total = components.setdefault(
                    path, {"actions": {}, "action_energy_pj": {}, "energy_pj": 0.0, "cycle_states": {}}
                )
                for action, n in comp["actions"].items():
                    total["actions"][action] = total["actions"].get(action, 0) + n
                for action, pj in comp["action_energy_pj"].items():
                    total["action_energy_pj"][action] = total["action_energy_pj"].get(action, 0.0) + pj
                total["energy_pj"] += comp["energy_pj"]
                for port, states in comp["cycle_states"].items():
                    acc = total["cycle_states"].setdefault(port, dict.fromkeys(states, 0))
                    for key, value in states.items():
                        acc[key] += value
        for comp in components.values():
            comp["energy_share"] = ratio(comp["energy_pj"], energy)
        dram_traffic: dict[str, dict] = {"bytes": {}, "uncompressed_bytes": {}}
        for entry in layers:
            for kind in dram_traffic:
                for tensor, n in entry["dram_traffic"][kind].items():
                    dram_traffic[kind][tensor] = dram_traffic[kind].get(tensor, 0) + n
        dram_traffic["compression_ratio"] = {
            tensor: ratio(dram_traffic["uncompressed_bytes"][tensor], n)
            for tensor, n in dram_traffic["bytes"].items()
        }
        return {
            "layers": len(layers),
            "cycles": cycles,
            "time_s": cycles / clock_hz,
            "computes": computes,
            "throughput": {
                "algorithmic_per_cycle": ratio(computes["algorithmic"], cycles),
                "actual_per_cycle": ratio(computes["actual"], cycles),
                "effectual_per_actual": ratio(computes["effectual"], computes["actual"]),
                "effectual_per_algorithmic": ratio(computes["effectual"], computes["algorithmic"]),
            },
            "energy_efficiency": {
                "algorithmic_per_pj": ratio(computes["algorithmic"], energy),
                "charged_per_pj": ratio(computes["charged"], energy),
                "effectual_per_charged": ratio(computes["effectual"], computes["charged"]),
                "effectual_per_algorithmic": ratio(computes["effectual"], computes["algorithmic"]),
            },
            "energy_pj": energy,
            "components": components,
            "bound": bound_of(cycles, components),
            # Layers run back to back: their lower bounds add up.
            "lower_bound": {
                "cycles": (lower := sum(entry["lower_bound"]["cycles"] for entry in layers)),
                "gap": ratio(cycles, lower),
            },
            "dram_traffic": dram_traffic,
            "functional_check_passed": all(entry["functional_check"]["passed"] for entry in layers),
        }

    # ----- renderings -------------------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per layer and a ``TOTAL`` row: cycles, time, computes, energy and cycle states."""
        rows = [self._csv_row(entry["name"], entry) for entry in self.layers]
        rows.append(self._csv_row("TOTAL", self.totals))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def _csv_row(self, name: str, entry: dict) -> dict:
        row = {"layer": name, "cycles": entry["cycles"], "time_s": repr(entry["time_s"])}
        row.update({f"{key}_computes": entry["computes"][key] for key in _COMPUTES})
        row["energy_pj"] = repr(entry["energy_pj"])
        for path, comp in entry["components"].items():
            row[f"{path}.energy_pj"] = repr(comp["energy_pj"])
            for port, states in comp["cycle_states"].items():
                for key, value in states.items():
                    row[f"{port}.{key}"] = value
        passed = (
            entry["functional_check"]["passed"]
            if "functional_check" in entry
            else entry["functional_check_passed"]
        )
        row["functional_check"] = "pass" if passed else "FAIL"
        return row

    def _bound_table(self) -> str:
        """Per layer and in total: the port bounding it, every port's busy share (see :func:`bound_of`)."""
        ports = list(self.totals["bound"]["busy_shares"])
        rows = []
        for entry in self.layers + [dict(self.totals, name="total")]:
            bound = entry["bound"]
            shares = [percent(bound["busy_shares"].get(port)) for port in ports]
            lower = entry["lower_bound"]
            gap = f"{lower['gap']:.2f}x" if lower["gap"] is not None else "n/a"
            rows.append(
                [entry["name"], f"{entry['cycles']:,}", f"{lower['cycles']:,}", gap, bound["by"], *shares]
            )
        header = ["layer", "cycles", "lower bound", "gap", "bound by", *ports]
        return (
            "\nwhat bounds each layer: each port's busy cycles over the layer's cycles (a port serves one\n"
            "transaction at a time, so the busiest bounds the layer; below 100 %, it idles the rest of the\n"
            "time, while the stages that feed it or drain it work or wait, and latencies run); lower bound:\n"
            "no mapping of this PE tile beats it (every value over every link once, the PEs' compute)\n"
            + render_table(header, rows, separator_before_last=True)
        )

    def _mapping_table(self) -> str:
        """How each layer was mapped: its loops, its PE tile and what the buffer keeps (the JSON report's
        ``mapping`` is the whole mapping, in the form ``--mapping`` takes)."""
        from sparsesim.mapping.directives import summary_row

        mapped = [entry for entry in self.layers if entry.get("mapping")]
        if not mapped:
            return ""
        rows = [
            [
                entry["name"],
                _mapped_by(entry),
                *summary_row(entry["mapping"]),
                str(entry["tiling"]["tiles"]),
            ]
            for entry in mapped
        ]
        header = ["layer", "mapped by", "DRAM loops", "buffer loops", "PE tile", "buffer keeps", "tiles"]
        return (
            "\nhow each layer is mapped (loops outer to inner; a PE tile's filters M, channels C, output "
            "rows P;\nthe tensors the buffer keeps: Weights, Inputs, Outputs; the mapper's objective, and "
            "how many mappings\nof its space it simulated)\n" + render_table(header, rows)
        )

    def _residency_line(self) -> str:
        """Where the weights and the activations live between layers (see
        :mod:`sparsesim.mapping.residency`)."""
        residency = self.data.get("residency")
        if not residency:
            return ""
        need, held = residency["words_per_pe"], residency["weight_spad_words"]
        if residency["weights_in_pes"]:
            text = (
                f"weights: resident in the PEs' weight scratchpads ({need:,} of {held:,} words per PE); "
                f"loaded once, {residency['bytes_loaded_once']:,} bytes, before the layers (not in their "
                "cycles or energy)\n"
            )
        else:
            text = (
                f"weights: fetched layer by layer (the layers' {need:,} words per PE exceed the weight "
                f"scratchpad's {held:,})\n"
            )
        activations = residency.get("activations")
        if activations and (activations["kept_in_buffer"] or activations["spilled_to_dram"]):
            kept, spilled = activations["kept_in_buffer"], activations["spilled_to_dram"]

            def links(entries) -> str:
                return ", ".join(f"{e['from']}->{e['to']}" for e in entries) or "none"

            text += (
                f"activations: a layer's output kept in the global buffer as the next one's input: "
                f"{links(kept)}; spilled to DRAM and read back: {links(spilled)} "
                f"({activations['bytes_spilled']:,} bytes)\n"
            )
        return text

    def _mechanism_table(self):
        """The PE mechanism's own table of its layers' summaries, or None (the mechanism shows none)."""
        from sparsesim.mechanisms import mechanism_class

        summarised = [entry for entry in self.layers if (entry.get("mechanism") or {}).get("summary")]
        if not summarised:
            return None
        return mechanism_class(summarised[0]["mechanism"]["kind"]).summary_table(summarised)

    def render(self, baseline: Report | None = None) -> str:
        """The terminal table: per layer, then per component over all layers, then the decompositions."""
        out = io.StringIO()
        hw = self.data["hwconfig"]["name"]
        trace = self.data["trace"]["name"]
        out.write(f"sparsesim {self.data['sparsesim_version']}: {hw} on {trace}")
        if baseline is not None:
            out.write(f"  (baseline: {baseline.data['hwconfig']['name']})")
        out.write("\n\n")
        comparison = compare_reports(self, baseline) if baseline is not None else None

        header = [
            "layer",
            "act dens",
            "cycles",
            "time ms",
            "algorithmic",
            "actual",
            "effectual",
            "skipped",
            "gated",
            "energy uJ",
            "check",
        ]
        if comparison:
            header += ["speed-up", "energy ratio"]
        rows = []
        for entry in self.layers + [dict(self.totals, name="total")]:
            check = entry.get("functional_check", {}).get("passed", entry.get("functional_check_passed"))
            c = entry["computes"]
            dens = entry.get("densities", {}).get("input_activations")
            row = [
                entry["name"],
                "" if dens is None else f"{dens:.3f}",
                f"{entry['cycles']:,}",
                f"{entry['time_s'] * 1e3:.3f}",
                f"{c['algorithmic']:,}",
                f"{c['actual']:,}",
                f"{c['effectual']:,}",
                f"{c['skipped']:,}",
                f"{c['gated']:,}",
                f"{entry['energy_pj'] / 1e6:.2f}",
                "pass" if check else "FAIL",
            ]
            if comparison:
                cmp = comparison["layers"].get(entry["name"], comparison["totals"])
                row += [f"{cmp['speedup']:.3f}x", f"{cmp['energy_ratio']:.3f}"]
            rows.append(row)
        out.write(render_table(header, rows, separator_before_last=True))
        if comparison:
            out.write("speed-up = baseline cycles / cycles; energy ratio = energy / baseline energy\n")
        out.write(self._bound_table())
        out.write(self._mapping_table())
        out.write(self._residency_line())

        totals = self.totals
        out.write("\nper component, all layers\n")
        header = ["component", "busy cycles", "stall cycles", "idle cycles", "busy %", "energy uJ", "share"]
        rows = []
        for comp in totals["components"].values():
            ports = list(comp["cycle_states"].items())
            for i, (port, states) in enumerate(ports):
                busy_share = ratio(states["busy_cycles"], totals["cycles"]) or 0.0
                energy = f"{comp['energy_pj'] / 1e6:.2f}" if i == 0 else ""
                share = f"{(comp['energy_share'] or 0.0) * 100:.1f}%" if i == 0 else ""
                rows.append(
                    [
                        port,
                        f"{states['busy_cycles']:,}",
                        f"{states['stall_cycles']:,}",
                        f"{states['idle_cycles']:,}",
                        f"{busy_share * 100:.1f}%",
                        energy,
                        share,
                    ]
                )
        out.write(render_table(header, rows))

        out.write("\nactions, all layers\n")
        rows = []
        for path, comp in totals["components"].items():
            for action, n in comp["actions"].items():
                rows.append([f"{path}.{action}", f"{n:,}", f"{comp['action_energy_pj'][action] / 1e6:.3f}"])
        out.write(render_table(["action", "count", "energy uJ"], rows))

        table = self._mechanism_table()
        if table is not None:
            title, header, rows = table
            out.write(f"\n{title}\n")
            out.write(render_table(header, rows))

        traffic = totals["dram_traffic"]
        out.write("\nDRAM traffic, all layers (in the configured formats vs. uncompressed)\n")
        rows = [
            [
                tensor,
                f"{n:,}",
                f"{traffic['uncompressed_bytes'][tensor]:,}",
                _fmt(traffic["compression_ratio"][tensor]),
            ]
            for tensor, n in traffic["bytes"].items()
            if n or tensor != "partial_sums"  # spilled partial sums: shown when a mapping spills some
        ]
        out.write(render_table(["tensor", "bytes", "uncompressed bytes", "ratio"], rows))

        t, e = totals["throughput"], totals["energy_efficiency"]
        out.write(
            "\nthroughput (lecture eq. 3.4): algorithmic MACs/cycle = actual MACs/cycle x effectual/actual"
            " x 1/(effectual/algorithmic)\n"
            f"  {_fmt(t['algorithmic_per_cycle'])} = {_fmt(t['actual_per_cycle'])} x "
            f"{_fmt(t['effectual_per_actual'])} x 1/{_fmt(t['effectual_per_algorithmic'])}\n"
            "energy efficiency (eq. 3.9): algorithmic MACs/pJ = charged MACs/pJ x effectual/charged"
            " x 1/(effectual/algorithmic)\n"
            f"  {_fmt(e['algorithmic_per_pj'])} = {_fmt(e['charged_per_pj'])} x "
            f"{_fmt(e['effectual_per_charged'])} x 1/{_fmt(e['effectual_per_algorithmic'])}\n"
        )
        out.write(
            "\nfunctional check (stored output vs numpy of the trace's operands; datapath output vs numpy "
            "of the machine's operands): "
        )
        out.write("pass on every layer\n" if totals["functional_check_passed"] else "FAILED\n")
        out.writelines(f"  {line}\n" for line in self.functional_check_failures())
        return out.getvalue()

    def functional_check_failures(self) -> list[str]:
        """One line per failed part of a layer's functional check: the layer, the part, what it means and its
        error against the tolerance (empty if every layer passed)."""
        lines = []
        for entry in self.layers:
            check = entry.get("functional_check") or {}
            for part in check.get("failed", []):
                lines.append(
                    f"{entry['name']}: {part}: {FAILED_PART_MEANINGS[part]} (max abs error "
                    f"{check[part]['max_abs_error']:.6g} > tolerance {check['tolerance']:.6g})"
                )
        return lines


def compare_reports(report: Report, baseline: Report) -> dict:
    """Speed-up (baseline cycles / cycles) and energy ratio (energy / baseline energy), per layer and total.

    Layers missing from the baseline are left out of ``layers``.
    """
    base_layers = {entry["name"]: entry for entry in baseline.layers}
    layers = {}
    for entry in report.layers:
        base = base_layers.get(entry["name"])
        if base is None:
            continue
        layers[entry["name"]] = {
            "speedup": ratio(base["cycles"], entry["cycles"]),
            "energy_ratio": ratio(entry["energy_pj"], base["energy_pj"]),
        }
    return {
        "baseline": baseline.data["hwconfig"]["name"],
        "layers": layers,
        "totals": {
            "speedup": ratio(baseline.totals["cycles"], report.totals["cycles"]),
            "energy_ratio": ratio(report.totals["energy_pj"], baseline.totals["energy_pj"]),
        },
    }


def bound_of(cycles: int, components: dict) -> dict:
    """What bounds a layer (or layers run back to back), as a roofline reads it.

    A port serves one transaction at a time, so each port's busy cycles are a lower bound on the cycles:
    the PE array's gives the compute bound, a link's its bytes over its bandwidth. The busiest port is the
    bound: ``by`` (its path), ``bound_cycles`` and ``share`` (its busy cycles over ``cycles``; 1.0: the layer
    runs at its bound; lower: the busiest port is idle the rest of the time, while the stages that feed or
    drain it work or wait, and latencies run). ``busy_shares``: every port's busy cycles over ``cycles``.
    Ties go to the port met first, from DRAM to the PE array.
    """
    busy = {
        port: states["busy_cycles"]
        for comp in components.values()
        for port, states in comp["cycle_states"].items()
    }
    by = max(busy, key=lambda port: busy[port])
    return {
        "by": by,
        "bound_cycles": busy[by],
        "share": ratio(busy[by], cycles),
        "busy_shares": {port: ratio(n, cycles) for port, n in busy.items()},
    }


def lower_bound_of(cycles: int, port_bounds: dict[str, int]) -> dict:
    """How far a layer is from what no mapping can beat: ``ports``, each port's busy cycles if every value
    crossed it once (and the PE array computed this PE tile); ``cycles``, the largest; ``by``, its port;
    ``gap``, the layer's cycles over it (1.0: no mapping could do better)."""
    by = max(port_bounds, key=lambda port: port_bounds[port])
    return {"by": by, "cycles": port_bounds[by], "gap": ratio(cycles, port_bounds[by]), "ports": port_bounds}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def render_table(header: list[str], rows: list[list[str]], separator_before_last: bool = False) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells):
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip() + "\n"

    rule = "  ".join("-" * width for width in widths) + "\n"
    text = line(header) + rule
    for i, row in enumerate(rows):
        if separator_before_last and i == len(rows) - 1:
            text += rule
        text += line(row)
    return text
