"""Temporal reuse across video frames (EVA²'s activation motion compensation), above the per-layer simulation.

:func:`simulate_frames` runs a :class:`~sparsesim.workload.pan.FrameSequence` on a hardware config whose
``temporal`` block enables reuse (EVA², Buckler et al., ISCA 2018):

- a *key frame* (the first, then every ``key_frame_interval`` frames, or any frame whose motion-estimation
  error per pixel exceeds ``key_frame_threshold``) runs every layer; the motion unit keeps its pixels and the
  *target activation* — ``target_layer``'s output as the next layer reads it (max-pooled where the network
  pools);
- a *predicted frame* runs RFBME between the key frame's pixels and its own
  (:func:`sparsesim.sparse.motion.block_motion`), warps the stored target activation by the vectors
  (:func:`~sparsesim.sparse.motion.warp_activation`), rounds it to the machine's 16-bit word (float16, as
  every stored activation), and runs only the layers after the target on it, each through
  :func:`sparsesim.simulator.simulate_layer` (so every layer has its exact functional check against numpy on
  the operands it was given).

Each layer is mapped once, on the first frame, and keeps that mapping for the others (baseline runs and
predicted suffixes alike), as a compiler maps a network once: the speed-up then compares the same loop
nests. It is a thin layer: the per-layer pipeline is not rewired, the motion unit
(:mod:`sparsesim.components.motion_unit`) books its cycles and actions around it, and a frame's time is the
sum of its parts, run one after the other. Every frame is also simulated in full (the *baseline*: the same
machine without temporal reuse), which gives the speed-up and the energy saving.

The reuse is lossy. For each predicted frame the error is measured, never hidden, against the network
actually run on that frame (the frame's own trace): at the target activation and at the last layer's output,
as a relative RMS error and a max absolute error; next to it, the same errors without motion compensation
(the key frame's activation reused unmoved), and how many of the motion vectors equal the pan's true motion.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from sparsesim import __version__
from sparsesim.components.motion_unit import MotionUnit
from sparsesim.config import hwconfig_to_dict
from sparsesim.core.energy import action_energy_pj
from sparsesim.errors import MappingError, SimulationError
from sparsesim.mapping.directives import MappingFile
from sparsesim.quantities import ratio
from sparsesim.simulator import simulate_layer
from sparsesim.sparse.motion import (
    block_motion,
    receptive_field,
    receptive_field_radius_tiles,
    rf_tile_counts,
    warp_activation,
)
from sparsesim.workload.chain import check_chain, to_float16
from sparsesim.workload.ops import layer_reference, maxpool2x2

__all__ = [
    "FRAMES_REPORT_SCHEMA_VERSION",
    "FramesReport",
    "compare_frames_to_golden",
    "frames_golden_summary",
    "simulate_frames",
]

log = logging.getLogger(__name__)

FRAMES_REPORT_SCHEMA_VERSION = 1
ERROR_RELATIVE_TOLERANCE = 1e-6
"""Golden comparison of measured errors: float64 numpy sums may differ in the last bits across BLAS builds."""
ENERGY_RELATIVE_TOLERANCE = 1e-9


def _error(predicted: np.ndarray, real: np.ndarray) -> dict:
    """Relative RMS and max absolute error of ``predicted`` against the network's real values."""
    predicted = np.asarray(predicted, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    difference = predicted - real
    scale = float(np.sqrt(np.mean(real**2)))
    return {
        "relative_rms_error": float(np.sqrt(np.mean(difference**2))) / scale if scale else None,
        "max_abs_error": float(np.max(np.abs(difference))),
    }


def _target_geometry(sequence, target: str) -> dict:
    """Where the target activation sits in the chain: index, the pool after it, its stride and field."""
    frame = sequence.frames[0]
    layers = list(frame.layers)
    names = [layer.name for layer in layers]
    if target not in names[:-1]:
        raise SimulationError(
            f"temporal.target_layer {target!r} must be one of the sequence's layers before the last "
            f"({', '.join(names[:-1])}), so that some layers remain to run on predicted frames"
        )
    if any(layer.op != "conv2d" for layer in layers):
        raise SimulationError("temporal reuse needs a chain of conv2d layers (an image input)")
    pools = check_chain(frame, layers)
    index = names.index(target)
    ops = []
    for position, layer in enumerate(layers[: index + 1]):
        if layer.weights.shape[2] != layer.weights.shape[3]:
            raise SimulationError(f"{layer.name}: temporal reuse needs square kernels")
        ops.append((int(layer.weights.shape[2]), int(layer.stride)))
        if pools[position]:
            ops.append((2, 2))
    size, stride = receptive_field(ops)
    stored_shape = tuple(layers[index + 1].input.shape)
    _, height, width = layers[0].input.shape
    if height % stride or width % stride or stored_shape[1:] != (height // stride, width // stride):
        raise SimulationError(
            f"frames of {height}x{width} pixels do not tile into the target activation {list(stored_shape)} "
            f"at stride {stride}"
        )
    return {
        "index": index,
        "pools": pools,
        "receptive_field_pixels": size,
        "stride_pixels": stride,
        "radius_tiles": receptive_field_radius_tiles(size, stride),
        "stored_shape": stored_shape,
    }


def _layer_summary(entry: dict) -> dict:
    return {
        "name": entry["name"],
        "cycles": entry["cycles"],
        "energy_pj": entry["energy_pj"],
        "computes": dict(entry["computes"]),
        "functional_check_passed": entry["functional_check"]["passed"],
    }


class _MappedOnce:
    """Each layer's mapping, searched on the first frame and kept for the others, as a compiler maps a
    network once for every frame it will run; a frame whose real data no longer fits a kept mapping (the
    buffer holds compressed slices) has that layer searched again."""

    def __init__(self, hw, energy_table, source: str):
        self.hw, self.energy_table, self.source = hw, energy_table, source
        self.kept: MappingFile | None = None

    def simulate(self, layer) -> dict:
        if self.kept is not None and layer.name in self.kept.per_layer:
            try:
                return simulate_layer(self.hw, layer, self.energy_table, self.kept)
            except MappingError:
                log.info("%s: the first frame's mapping does not fit this frame's data; searched", layer.name)
        entry = simulate_layer(self.hw, layer, self.energy_table)
        kept = dict(self.kept.per_layer) if self.kept is not None else {}
        kept.setdefault(layer.name, (f"layers.{layer.name}.mapping", entry["mapping"]))
        self.kept = MappingFile(self.source, None, kept, {})
        return entry


def _run_suffix(mapped: _MappedOnce, frame, geometry, predicted_input) -> tuple[list[dict], np.ndarray]:
    """Run the layers after the target on the predicted input, each simulated; return entries and output."""
    layers = list(frame.layers)
    pools = geometry["pools"]
    activations = predicted_input
    entries = []
    output = None
    for position in range(geometry["index"] + 1, len(layers)):
        ran = dataclasses.replace(layers[position], input=activations)
        ran = dataclasses.replace(ran, output=layer_reference(ran).astype(np.float32))
        entries.append(mapped.simulate(ran))
        output = ran.output
        if position < len(pools):
            carried = maxpool2x2(ran.output) if pools[position] else ran.output
            activations = to_float16(carried, f"predicted layer {ran.name!r} output")
    return entries, output


def _suffix_reference(frame, geometry, stored: np.ndarray) -> np.ndarray:
    """The last layer's output when the suffix runs on ``stored`` (numpy only, not simulated)."""
    layers = list(frame.layers)
    pools = geometry["pools"]
    activations = stored
    output = None
    for position in range(geometry["index"] + 1, len(layers)):
        ran = dataclasses.replace(layers[position], input=activations)
        output = layer_reference(ran).astype(np.float32)
        if position < len(pools):
            activations = to_float16(maxpool2x2(output) if pools[position] else output, "suffix output")
    return output


def simulate_frames(hw, sequence) -> FramesReport:
    """Simulate ``sequence`` (a :class:`~sparsesim.workload.pan.FrameSequence`) on ``hw`` with its temporal
    reuse; every frame is also simulated without reuse. Returns a :class:`FramesReport`.

    Raises :class:`SimulationError` if ``temporal.target_layer`` is not a layer of the sequence before its
    last, or the layers are not one chain of convs whose target activation tiles the frame.
    """
    temporal = hw.temporal
    energy_table = hw.energy_table()
    reuse = temporal.key_frame_interval > 1
    geometry = _target_geometry(sequence, temporal.target_layer) if reuse else None
    frames_out = []
    last_key = None
    mapped = _MappedOnce(hw, energy_table, f"the mappings of {sequence.name}'s first frame")
    for number, frame in enumerate(sequence.frames):
        log.info("frame %d of %s", number, sequence.name)
        baseline = [mapped.simulate(layer) for layer in frame.layers]
        baseline_cycles = sum(entry["cycles"] for entry in baseline)
        baseline_energy = sum(entry["energy_pj"] for entry in baseline)
        unit = MotionUnit(temporal)
        entry: dict = {"frame": number, "window_top_left": list(sequence.windows[number])}
        kind = "key"
        field = None
        if reuse and last_key is not None and number - last_key < temporal.key_frame_interval:
            key_frame = sequence.frames[last_key]
            pixels = frame.layers[0].input
            field = block_motion(
                key_frame.layers[0].input,
                pixels,
                geometry["stride_pixels"],
                geometry["radius_tiles"],
                temporal.search_radius_pixels,
            )
            unit.estimate_motion(field, pixels.shape, geometry["stride_pixels"])
            tiles = rf_tile_counts(*field.costs.shape, field.radius_tiles)
            values = int(tiles.sum()) * geometry["stride_pixels"] ** 2 * pixels.shape[0]
            error_per_value = field.total_cost / values
            threshold = temporal.key_frame_threshold
            kind = "key_adaptive" if threshold > 0 and error_per_value > threshold else "predicted"
            true_vector = sequence.true_vector_pixels(last_key, number)
            matches = np.all(field.vectors_pixels == np.asarray(true_vector), axis=-1)
            entry["motion"] = {
                "key_frame": last_key,
                "true_vector_pixels": list(true_vector),
                "vectors_equal_to_true": float(np.mean(matches)),
                "mean_vector_pixels": [float(v) for v in field.vectors_pixels.reshape(-1, 2).mean(axis=0)],
                "match_error_per_value": error_per_value,
                "candidates": field.candidates,
            }
        if kind == "predicted":
            stored = key_frame.layers[geometry["index"] + 1].input
            real_target = frame.layers[geometry["index"] + 1].input
            warp = warp_activation(
                stored, field.vectors_pixels, geometry["stride_pixels"], temporal.interpolation
            )
            unit.warp(warp)
            predicted = to_float16(warp.output, f"frame {number}: warped target activation")
            layers, output = _run_suffix(mapped, frame, geometry, predicted)
            unmoved_output = _suffix_reference(frame, geometry, stored)
            # Away from the borders (the receptive field plus the largest vector), a whole-stride pan is
            # predicted exactly: padding effects and new content sit in that margin.
            reach = int(np.max(np.abs(field.vectors_pixels))) if field.vectors_pixels.size else 0
            margin = geometry["radius_tiles"] + -(-reach // geometry["stride_pixels"])
            inner = (slice(None), slice(margin, -margin or None), slice(margin, -margin or None))
            entry["error"] = {
                "target": _error(predicted, real_target),
                "target_interior": _error(predicted[inner], real_target[inner])
                if predicted[inner].size
                else None,
                "last_layer": _error(output, frame.layers[-1].output),
                "target_without_motion_compensation": _error(stored, real_target),
                "last_layer_without_motion_compensation": _error(unmoved_output, frame.layers[-1].output),
            }
            entry["interior_margin_activations"] = margin
            entry["warp"] = {
                "interpolated": warp.interpolated,
                "copied": warp.copied,
                "skipped": warp.skipped,
            }
        else:
            layers = baseline
            if reuse:
                target_words = int(np.prod(geometry["stored_shape"]))
                unit.store_key_frame(int(frame.layers[0].input.size), target_words)
            last_key = number
        unit_energy = action_energy_pj(unit.path, unit.actions, energy_table)
        layer_cycles = sum(layer["cycles"] for layer in layers)
        layer_energy = sum(layer["energy_pj"] for layer in layers)
        cycles = layer_cycles + unit.cycles
        energy = layer_energy + sum(unit_energy.values())
        entry.update(
            {
                "kind": kind,
                "cycles": cycles,
                "time_s": cycles / hw.clock_hz,
                "energy_pj": energy,
                "baseline_cycles": baseline_cycles,
                "baseline_energy_pj": baseline_energy,
                "speedup": ratio(baseline_cycles, cycles),
                "energy_saving": 1.0 - energy / baseline_energy if baseline_energy else None,
                "motion_unit": {
                    "motion_estimation_cycles": unit.motion_estimation_cycles,
                    "warp_cycles": unit.warp_cycles,
                    "actions": dict(unit.actions),
                    "action_energy_pj": unit_energy,
                    "energy_pj": sum(unit_energy.values()),
                },
                "layers": [_layer_summary(layer) for layer in layers],
                "functional_check_passed": all(layer["functional_check"]["passed"] for layer in layers)
                and all(layer["functional_check"]["passed"] for layer in baseline),
            }
        )
        frames_out.append(entry)
    return FramesReport(_report_data(hw, sequence, geometry, frames_out))


def _report_data(hw, sequence, geometry, frames_out) -> dict:
    cycles = sum(f["cycles"] for f in frames_out)
    energy = sum(f["energy_pj"] for f in frames_out)
    baseline_cycles = sum(f["baseline_cycles"] for f in frames_out)
    baseline_energy = sum(f["baseline_energy_pj"] for f in frames_out)
    predicted = [f for f in frames_out if f["kind"] == "predicted"]

    def mean_error(where: str) -> float | None:
        values = [f["error"][where]["relative_rms_error"] for f in predicted if f["error"][where]]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    target = None
    if geometry is not None:
        target = {
            "layer": hw.temporal.target_layer,
            "stored_shape": list(geometry["stored_shape"]),
            "receptive_field_pixels": geometry["receptive_field_pixels"],
            "stride_pixels": geometry["stride_pixels"],
            "radius_tiles": geometry["radius_tiles"],
        }
    return {
        "schema_version": FRAMES_REPORT_SCHEMA_VERSION,
        "sparsesim_version": __version__,
        "hwconfig": {"name": hw.name, "config": hwconfig_to_dict(hw, fill_derived=True)},
        "sequence": {
            "name": sequence.name,
            "frames": len(sequence.frames),
            "step_pixels": list(sequence.step_pixels),
            "layers": sequence.layer_names,
            "provenance": sequence.provenance,
        },
        "target": target,
        "frames": frames_out,
        "totals": {
            "cycles": cycles,
            "energy_pj": energy,
            "baseline_cycles": baseline_cycles,
            "baseline_energy_pj": baseline_energy,
            "speedup": ratio(baseline_cycles, cycles),
            "energy_saving": 1.0 - energy / baseline_energy if baseline_energy else None,
            "key_frames": sum(f["kind"] != "predicted" for f in frames_out),
            "predicted_frames": len(predicted),
            "mean_relative_rms_error": {
                "target": mean_error("target"),
                "target_interior": mean_error("target_interior"),
                "last_layer": mean_error("last_layer"),
                "target_without_motion_compensation": mean_error("target_without_motion_compensation"),
                "last_layer_without_motion_compensation": mean_error(
                    "last_layer_without_motion_compensation"
                ),
            },
            "functional_check_passed": all(f["functional_check_passed"] for f in frames_out),
        },
    }


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class FramesReport:
    """The result of :func:`simulate_frames`: a plain JSON-able dict (``data``) and its renderings."""

    def __init__(self, data: dict):
        self.data = data

    @property
    def frames(self) -> list[dict]:
        return self.data["frames"]

    @property
    def totals(self) -> dict:
        return self.data["totals"]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, allow_nan=False) + "\n"

    def render(self) -> str:
        from sparsesim.report.report import render_table

        data = self.data
        target = data["target"]
        lines = [
            f"{data['hwconfig']['name']} on {data['sequence']['name']} ({data['sequence']['frames']} frames, "
            f"layers {data['sequence']['layers'][0]}..{data['sequence']['layers'][-1]})",
        ]
        if target:
            lines.append(
                f"target {target['layer']}: stored activation {'x'.join(map(str, target['stored_shape']))}, "
                f"receptive field {target['receptive_field_pixels']} px, stride {target['stride_pixels']} px"
            )
        lines.append(
            "errors: relative RMS against the network run on the frame; '(no MC)' = key activation "
            "reused without motion compensation"
        )
        header = [
            "frame", "kind", "cycles", "base cycles", "speed-up", "energy uJ", "base uJ", "saving",
            "motion cyc", "vec=true", "err target", "(inner)", "err last", "(no MC) last", "check",
        ]  # fmt: skip
        rows = []
        for f in data["frames"]:
            motion = f.get("motion") or {}
            error = f.get("error") or {}
            rows.append(
                [
                    str(f["frame"]),
                    f["kind"] + (f" <{motion['key_frame']}" if f["kind"] == "predicted" else ""),
                    f"{f['cycles']:,}",
                    f"{f['baseline_cycles']:,}",
                    _fmt(f["speedup"], ".2f"),
                    f"{f['energy_pj'] / 1e6:.1f}",
                    f"{f['baseline_energy_pj'] / 1e6:.1f}",
                    _fmt(f["energy_saving"], ".1%"),
                    f"{f['motion_unit']['motion_estimation_cycles'] + f['motion_unit']['warp_cycles']:,}",
                    _fmt(motion.get("vectors_equal_to_true"), ".0%"),
                    _fmt(error.get("target", {}).get("relative_rms_error"), ".4f"),
                    _fmt((error.get("target_interior") or {}).get("relative_rms_error"), ".4f"),
                    _fmt(error.get("last_layer", {}).get("relative_rms_error"), ".4f"),
                    _fmt(
                        error.get("last_layer_without_motion_compensation", {}).get("relative_rms_error"),
                        ".4f",
                    ),
                    "ok" if f["functional_check_passed"] else "FAIL",
                ]
            )
        t = data["totals"]
        errors = t["mean_relative_rms_error"]
        rows.append(
            [
                "TOTAL",
                f"{t['key_frames']}K+{t['predicted_frames']}P",
                f"{t['cycles']:,}",
                f"{t['baseline_cycles']:,}",
                _fmt(t["speedup"], ".2f"),
                f"{t['energy_pj'] / 1e6:.1f}",
                f"{t['baseline_energy_pj'] / 1e6:.1f}",
                _fmt(t["energy_saving"], ".1%"),
                "",
                "",
                _fmt(errors["target"], ".4f"),
                _fmt(errors["target_interior"], ".4f"),
                _fmt(errors["last_layer"], ".4f"),
                _fmt(errors["last_layer_without_motion_compensation"], ".4f"),
                "ok" if t["functional_check_passed"] else "FAIL",
            ]
        )
        return "\n".join(lines) + "\n\n" + render_table(header, rows)


# --------------------------------------------------------------------------------------------- golden


def frames_golden_summary(report: FramesReport) -> dict:
    """The compared subset: per frame its kind, cycles, energy, motion-unit cycles and errors."""
    frames = {}
    for f in report.frames:
        frames[str(f["frame"])] = {
            "kind": f["kind"],
            "cycles": f["cycles"],
            "baseline_cycles": f["baseline_cycles"],
            "motion_unit_cycles": f["motion_unit"]["motion_estimation_cycles"]
            + f["motion_unit"]["warp_cycles"],
            "energy_pj": f["energy_pj"],
            "baseline_energy_pj": f["baseline_energy_pj"],
            "errors": {
                where: values["relative_rms_error"] if values else None
                for where, values in (f.get("error") or {}).items()
            },
        }
    return {
        "hwconfig": report.data["hwconfig"]["name"],
        "sequence": report.data["sequence"]["name"],
        "frames": frames,
        "totals": {
            k: report.totals[k] for k in ("cycles", "baseline_cycles", "energy_pj", "baseline_energy_pj")
        },
    }


def compare_frames_to_golden(summary: dict, golden: dict) -> list[str]:
    """Every difference between a fresh summary and the golden one (empty: equal within tolerances)."""
    problems = []
    if set(summary["frames"]) != set(golden["frames"]):
        return [f"frames differ: got {sorted(summary['frames'])}, golden {sorted(golden['frames'])}"]
    scopes = [(f"frame {k}", summary["frames"][k], golden["frames"][k]) for k in golden["frames"]]
    scopes.append(("totals", summary["totals"], golden["totals"]))
    for scope, got, want in scopes:
        for key, expected in want.items():
            value = got.get(key)
            if key == "errors":
                for where, err in expected.items():
                    have = value.get(where)
                    if (err is None) != (have is None) or (
                        err is not None and not abs(have - err) <= ERROR_RELATIVE_TOLERANCE * abs(err)
                    ):
                        problems.append(f"{scope}: error at {where} {have!r} != golden {err!r}")
            elif key.endswith("energy_pj"):
                if not abs(value - expected) <= ENERGY_RELATIVE_TOLERANCE * abs(expected):
                    problems.append(f"{scope}: {key} {value!r} != golden {expected!r}")
            elif value != expected:
                problems.append(f"{scope}: {key} {value!r} != golden {expected!r}")
    return problems
