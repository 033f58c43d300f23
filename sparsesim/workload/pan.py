"""Frame sequences for temporal reuse: a synthetic camera pan across a shipped trace's own input image.

EVA² (ISCA 2018) needs video: consecutive frames of one scene. No real video ships with sparsesim, so
:func:`make_pan_frames` makes frames *honestly from the real photo and named so*: frame ``f`` is the
``height x width`` window of the source trace's first-layer input (for ``traces/vgg16_china``: china.jpg,
preprocessed for HED, 112x160) whose top-left corner is ``(top0 + f * dy, left0 + f * dx)`` — a camera
translating by ``(dy, dx)`` whole pixels a frame, with no resampling of the photo. The real network (the
source trace's own weights, conv + bias + ReLU, 2x2 max-pools where the source's shapes halve) is then run
on every frame, so each frame is a complete, ordinary trace whose activations are those the network really
produces on that frame (what the predicted frames' error is measured against).

A pure translation is EVA²'s best case: the motion is rigid and uniform, there is no occlusion, lighting
change or non-rigid motion; only the strip of new content entering at the border cannot be predicted.
Whole-pixel steps that are not multiples of the target layer's stride still give fractional vectors in the
activation (EVA²'s bilinear case).

On disk, a frame sequence is a directory holding ``sequence.json`` and one trace directory per frame
(``frame_000`` …). Trace format v1 keeps each layer's weights inside its ``.npz``, so the weights are
repeated in every frame (about 3.3 MB a frame up to conv3_3); a format that shares them is left to do.
``sequence.json`` (keys sorted): ``format`` = ``"sparsesim-frames"``, ``format_version`` = 1, ``name``,
``provenance`` (what the frames are, the source trace and its manifest's sha256, the command), ``step_pixels``
``[dy, dx]`` and ``frames``: a list of ``{"trace": directory name, "top": row, "left": column}``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sparsesim.errors import SparsesimError, TraceError
from sparsesim.files import write_atomic
from sparsesim.workload.chain import check_chain, source_manifest_sha256, to_float16
from sparsesim.workload.ops import layer_reference, maxpool2x2
from sparsesim.workload.trace import Trace, brief_repr, load_trace, read_json_file, save_trace

__all__ = ["FRAMES_FORMAT", "FrameSequence", "PanError", "load_frames", "make_pan_frames", "pan_windows"]

logger = logging.getLogger(__name__)

FRAMES_FORMAT = "sparsesim-frames"
FRAMES_FORMAT_VERSION = 1
SEQUENCE_NAME = "sequence.json"
MAX_FRAMES = 1024
"""Most frames a sequence may list (each is a whole trace, loaded and compared with the first)."""
_FRAME_DIR = re.compile(r"frame_[0-9]{3,9}")  # fullmatch: `$` would accept a final newline


class PanError(SparsesimError, ValueError):
    """Bad pan parameters (a window that leaves the image, a size the network's pools cannot divide)."""


@dataclass(frozen=True, eq=False)
class FrameSequence:
    """Consecutive frames, each a loaded :class:`Trace` of the same network (same layers, same weights)."""

    name: str
    path: str
    provenance: dict
    step_pixels: tuple[int, int]
    windows: tuple[tuple[int, int], ...]
    """``(top, left)`` of each frame's window in the source image."""
    frames: tuple[Trace, ...]

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.frames[0].layers]

    def true_vector_pixels(self, key: int, frame: int) -> tuple[int, int]:
        """The pan's own motion between frames ``key`` and ``frame``, in :mod:`sparsesim.sparse.motion`'s
        convention (``new[y, x] = key[y + dy, x + dx]``)."""
        (ky, kx), (fy, fx) = self.windows[key], self.windows[frame]
        return fy - ky, fx - kx


def pan_windows(
    image_hw: tuple[int, int], size_hw: tuple[int, int], frames: int, step: tuple[int, int]
) -> list[tuple[int, int]]:
    """``(top, left)`` of each frame, the pan's span centred in the image; :class:`PanError` if it leaves."""
    if frames < 1:
        raise PanError(f"frames must be >= 1, got {frames}")
    windows_axes = []
    for axis, (full, size, delta) in enumerate(zip(image_hw, size_hw, step, strict=True)):
        span = (frames - 1) * abs(delta)
        if size < 1 or size + span > full:
            raise PanError(
                f"a window of {size} pixels moved {frames - 1} x {delta} = {span} pixels along "
                f"{'HW'[axis]} does not fit the image's {full} pixels"
            )
        start = (full - size - span) // 2 + (span if delta < 0 else 0)
        windows_axes.append([start + f * delta for f in range(frames)])
    return list(zip(*windows_axes, strict=True))


def make_pan_frames(
    source: Trace | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frames: int = 8,
    step: tuple[int, int] = (0, 4),
    size: tuple[int, int] = (96, 128),
    last_layer: str = "conv3_3",
    name: str | None = None,
) -> FrameSequence:
    """Write a synthetic pan across ``source``'s first-layer input as a frame sequence; return it loaded.

    Args:
        source: a whole trace (or its path) whose layers form one chain from its first layer (as
            :func:`~sparsesim.workload.pruning.prune_trace` requires); its first layer's input is the image.
        out_dir: directory to write (``sequence.json`` and ``frame_000`` …).
        frames: number of frames; step: ``(dy, dx)`` whole pixels the window moves a frame; size:
            ``(height, width)`` of a frame, multiples of ``2 ** pools`` of the network up to ``last_layer``.
        last_layer: the network runs, and each frame stores, the layers from the first up to this one.
        name: the sequence's name; default ``f"{source name}_pan{frames}_{dy}_{dx}_{h}x{w}"``.

    Each frame's first input is the window of the source's input as stored (float16, no resampling); each
    following input is float16 of the previous output, max-pooled where the source pools; each output is
    :func:`~sparsesim.workload.ops.layer_reference`, stored as float32. Same arguments, same files.
    """
    src = source if isinstance(source, Trace) else load_trace(source)
    names = list(src.layer_names)
    if last_layer not in names:
        raise TraceError(f"{src.path}: unknown layer {last_layer!r}; known layers: {', '.join(names)}")
    chain = src.layers[: names.index(last_layer) + 1]
    if chain[0].op != "conv2d":
        raise TraceError(f"{src.path}: a pan needs an image input (a conv2d first layer), got {chain[0].op}")
    pools = check_chain(src, chain)
    manifest_sha256 = source_manifest_sha256(src)
    granule = 2 ** sum(pools)
    height, width = (int(v) for v in size)
    if height % granule or width % granule:
        raise PanError(
            f"frame size {height}x{width} must be a multiple of {granule} (the network pools {sum(pools)} "
            f"time(s) up to {last_layer})"
        )
    dy, dx = (int(v) for v in step)
    image = chain[0].input
    windows = pan_windows(image.shape[1:], (height, width), frames, (dy, dx))

    out = os.fspath(out_dir)
    stem = name or f"{src.name}_pan{frames}_{dy}_{dx}_{height}x{width}"
    command = (
        f"sparsesim make-trace pan {src.path} {out} --frames {frames} --step {dy},{dx} "
        f"--size {height}x{width} --last-layer {last_layer}"
    )
    import sparsesim

    pan = {
        "what": (
            "frames are crops of a synthetic pan across the source trace's input image (for the shipped "
            "trace: china.jpg); a camera translating by step_pixels a frame, whole pixels, no resampling"
        ),
        "frames": frames,
        "step_pixels": [dy, dx],
        "size": [height, width],
        "windows_top_left": [list(w) for w in windows],
        "source_input": f"{src.name}: layer {chain[0].name!r} input, {list(image.shape)} (C, H, W)",
        "activations": (
            "the source network run on each frame: each input is float16 of the previous output (max-pooled "
            "2x2 where the source pools), each output the layer's op + bias + activation in float64, stored "
            "as float32"
        ),
        "limits": (
            "pure translation is temporal reuse's best case: no occlusion, no lighting change, no non-rigid "
            "motion; only the border strip of new content is unpredictable"
        ),
        "source": {"name": src.name, "path": src.path, "manifest_sha256": manifest_sha256},
        "command": command,
        "function": "sparsesim.workload.pan.make_pan_frames",
        "sparsesim_version": sparsesim.__version__,
    }
    entries = []
    for index, (top, left) in enumerate(windows):
        activations = np.ascontiguousarray(image[:, top : top + height, left : left + width])
        stored = []
        for position, layer in enumerate(chain):
            ran = replace(layer, input=activations)
            ran = replace(ran, output=layer_reference(ran).astype(np.float32))
            stored.append(ran)
            if position < len(pools):
                carried = maxpool2x2(ran.output) if pools[position] else ran.output
                activations = to_float16(carried, f"frame {index} layer {layer.name!r} output")
        provenance = copy.deepcopy(src.provenance)
        provenance["pan"] = {**pan, "frame": index, "window_top_left": [top, left]}
        directory = f"frame_{index:03d}"
        save_trace(os.path.join(out, directory), f"{stem}_frame{index:03d}", provenance, stored)
        entries.append({"trace": directory, "top": top, "left": left})
        logger.info("pan frame %d: window (%d, %d)", index, top, left)
    sequence = {
        "format": FRAMES_FORMAT,
        "format_version": FRAMES_FORMAT_VERSION,
        "name": stem,
        "provenance": pan,
        "step_pixels": [dy, dx],
        "frames": entries,
    }
    text = json.dumps(sequence, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    write_atomic(os.path.join(out, SEQUENCE_NAME), text)
    return load_frames(out)


def load_frames(path: str | os.PathLike, layers: Sequence[str] | None = None) -> FrameSequence:
    """Load and validate a frame sequence: its ``sequence.json``, and every frame as a trace (all layers, or
    those named). :class:`TraceError` if the file is malformed, a frame is missing or invalid, or the frames
    do not hold the same layers with the same weights.

    ``sequence.json`` is read as a trace's manifest is (:func:`~sparsesim.workload.trace.read_json_file`: a
    regular file of at most 16 MiB, strict JSON, bounded nesting); it may list at most :data:`MAX_FRAMES`
    frames, each frame directory once.
    """
    where = os.fspath(path)
    index_path = os.path.join(where, SEQUENCE_NAME)
    if not os.path.lexists(index_path):
        raise TraceError(f"{index_path}: missing (a frame sequence directory holds {SEQUENCE_NAME})")
    sequence = read_json_file(index_path, "frame sequence index")
    expected = {"format", "format_version", "name", "provenance", "step_pixels", "frames"}
    if not isinstance(sequence, dict) or set(sequence) != expected:
        got = sorted(sequence) if isinstance(sequence, dict) else type(sequence).__name__
        raise TraceError(f"{index_path}: expected exactly the keys {sorted(expected)}, got {brief_repr(got)}")
    version = sequence["format_version"]
    if sequence["format"] != FRAMES_FORMAT or version != FRAMES_FORMAT_VERSION or isinstance(version, bool):
        raise TraceError(
            f"{index_path}: expected format {FRAMES_FORMAT!r} version {FRAMES_FORMAT_VERSION}, got "
            f"{brief_repr(sequence['format'])} version {brief_repr(version)}"
        )
    problems = []
    if not isinstance(sequence["name"], str) or not sequence["name"].isprintable():
        problems.append(f"name: expected one printable line, got {brief_repr(sequence['name'])}")
    if not isinstance(sequence["provenance"], dict):
        problems.append(f"provenance: expected an object, got {type(sequence['provenance']).__name__}")
    step = sequence["step_pixels"]
    if not (isinstance(step, list) and len(step) == 2 and all(type(v) is int for v in step)):
        problems.append(f"step_pixels: expected [dy, dx] integers, got {brief_repr(step)}")
    entries = sequence["frames"]
    if not isinstance(entries, list) or not entries:
        problems.append("frames: expected a non-empty list")
        entries = []
    elif len(entries) > MAX_FRAMES:
        problems.append(f"frames: {len(entries):,} frames; at most {MAX_FRAMES} are accepted")
        entries = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        ok = (
            isinstance(entry, dict)
            and set(entry) == {"trace", "top", "left"}
            and isinstance(entry["trace"], str)
            and _FRAME_DIR.fullmatch(entry["trace"])
            and all(type(entry[k]) is int for k in ("top", "left"))
        )
        if not ok:
            problems.append(f"frames[{i}]: expected {{'trace': 'frame_NNN', 'top': int, 'left': int}}")
        elif entry["trace"] in seen:
            problems.append(f"frames[{i}]: trace {entry['trace']!r} is listed twice")
        else:
            seen.add(entry["trace"])
    if problems:
        raise TraceError(f"{index_path}: invalid frame sequence:\n" + "\n".join("  " + p for p in problems))
    traces = tuple(load_trace(os.path.join(where, e["trace"]), layers=layers) for e in entries)
    first = traces[0]
    for number, trace in enumerate(traces[1:], start=1):
        if [layer.name for layer in trace.layers] != [layer.name for layer in first.layers]:
            raise TraceError(f"{where}: frame {number} holds other layers than frame 0")
        for a, b in zip(first.layers, trace.layers, strict=True):
            if not (np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)):
                raise TraceError(f"{where}: frame {number} layer {b.name!r} has other weights than frame 0")
    return FrameSequence(
        name=sequence["name"],
        path=where,
        provenance=sequence["provenance"],
        step_pixels=(step[0], step[1]),
        windows=tuple((e["top"], e["left"]) for e in entries),
        frames=traces,
    )
