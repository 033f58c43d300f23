"""Links between the layers of a stored network, shared by every command that derives a trace and re-runs
the network (pruning, MoEfication, pan frames, temporal reuse).

A trace stores each layer's input as float16 of the previous layer's output (max-pooled 2x2 where the shapes
halve); :func:`check_chain` proves a trace's layers are such a chain before a derived network is re-run
through it, :func:`to_float16` rounds a re-run output the same way, and :func:`source_manifest_sha256`
names the exact source for the derived trace's provenance.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from sparsesim.errors import TraceError
from sparsesim.files import InputFileError, read_input_bytes
from sparsesim.workload.ops import maxpool2x2
from sparsesim.workload.trace import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Layer,
    Trace,
    brief_repr,
    load_trace,
    parse_json,
)

_FLOAT16_MAX = float(np.finfo(np.float16).max)


def to_float16(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` rounded to float16, returned as float32; :class:`TraceError` if a value overflows."""
    peak = float(np.max(np.abs(array))) if array.size else 0.0
    if peak > _FLOAT16_MAX:
        raise TraceError(f"{what}: max |value| {peak} overflows float16 (max {_FLOAT16_MAX})")
    rounded = np.asarray(array).astype(np.float16)
    if not np.all(np.isfinite(rounded)):
        raise TraceError(f"{what}: values overflow float16 (max {_FLOAT16_MAX})")
    return rounded.astype(np.float32)


def chain_step(trace: Trace, previous: Layer, layer: Layer) -> bool:
    """Whether the network max-pools between ``previous`` and ``layer`` (False: the output goes straight
    on). :class:`TraceError` if the shapes are neither the same nor halved."""
    out_shape, in_shape = tuple(previous.output.shape), tuple(layer.input.shape)
    if in_shape == out_shape:
        return False
    if (
        len(out_shape) == 3
        and len(in_shape) == 3
        and in_shape[0] == out_shape[0]
        and out_shape[1] >= 2
        and out_shape[2] >= 2
        and in_shape[1:] == (out_shape[1] // 2, out_shape[2] // 2)
    ):
        return True
    raise TraceError(
        f"{trace.path}: cannot re-chain trace {trace.name!r}: layer {layer.name!r} has input shape "
        f"{list(in_shape)} but the previous layer {previous.name!r} outputs {list(out_shape)}; only the same "
        "shape or a 2x2 max-pool (same C, half H and W) can link consecutive layers"
    )


def check_chain(trace: Trace, layers: Sequence[Layer]) -> list[bool]:
    """Check that ``layers`` are consecutive layers of one network, exactly: each input is float16 of the
    previous stored output, max-pooled where the shapes halve. Returns, per link, whether it pools."""
    pools = []
    for previous, layer in zip(layers[:-1], layers[1:], strict=True):
        pool = chain_step(trace, previous, layer)
        carried = maxpool2x2(previous.output) if pool else previous.output
        expected = to_float16(carried, f"{trace.path}: layer {previous.name!r} output")
        if not np.array_equal(expected, layer.input):
            differ = int(np.count_nonzero(expected != layer.input))
            raise TraceError(
                f"{trace.path}: cannot re-chain trace {trace.name!r}: layer {layer.name!r}'s input is not "
                f"float16 of layer {previous.name!r}'s output{' max-pooled 2x2' if pool else ''} "
                f"({differ} of {layer.input.size} values differ), so the layers are not consecutive layers "
                "of one network; pruning needs the whole chain from the trace's first layer (a trace made "
                "or loaded with a selection of layers that skips some cannot be re-chained)"
            )
        pools.append(pool)
    return pools


def source_manifest_sha256(trace: Trace) -> str:
    """sha256 of the source trace's manifest on disk, after checking that ``trace`` is (a prefix of) it.

    The manifest is read as :func:`~sparsesim.workload.trace.load_trace` reads it (a regular file within
    the same bounds, strict JSON): it may have changed since the trace was loaded.
    """
    manifest_path = os.path.join(trace.path, MANIFEST_NAME)
    what = "manifest of the source trace (needed for the provenance)"
    try:
        data = read_input_bytes(manifest_path, MAX_MANIFEST_BYTES, what)
    except InputFileError as error:
        raise TraceError(f"{manifest_path}: {error.reason}") from None
    manifest = parse_json(data, manifest_path, what)
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    names = (
        [entry.get("name") for entry in layers if isinstance(entry, dict)]
        if isinstance(layers, list)
        else None
    )
    if names is None or len(names) != len(layers):
        raise TraceError(f"{manifest_path}: not a readable trace manifest (no list of layer objects)")
    have = list(trace.layer_names)
    if manifest.get("name") != trace.name or names[: len(have)] != have:
        raise TraceError(
            f"{trace.path}: trace {trace.name!r} with layers {have} is not the first layers of the trace on "
            f"disk ({brief_repr(manifest.get('name'))}: {brief_repr(names)}); pruning re-runs the network "
            "from the trace's first layer, so load the whole trace (load_trace(path) without layers=)"
        )
    return hashlib.sha256(data).hexdigest()


def layers_to_rerun(
    trace: Trace | str | os.PathLike, layers: str | Sequence[str] | None
) -> tuple[Trace, list[str], list[Layer]]:
    """The source trace (loaded if a path), the layer names asked for (all if ``None``; duplicates dropped)
    and the chain a derived network re-runs: from the source's first layer to the last one asked for.
    :class:`TraceError` naming the trace on an unknown name or an empty selection."""
    source = trace if isinstance(trace, Trace) else load_trace(trace)
    names = list(source.layer_names)
    wanted = names if layers is None else list(dict.fromkeys([layers] if isinstance(layers, str) else layers))
    unknown = [n for n in wanted if n not in names]
    if unknown or not wanted:
        raise TraceError(
            f"{source.path}: unknown layer(s) {', '.join(repr(n) for n in unknown) or '(none given)'}; "
            f"known layers: {', '.join(names)}"
        )
    return source, wanted, source.layers[: max(names.index(n) for n in wanted) + 1]
