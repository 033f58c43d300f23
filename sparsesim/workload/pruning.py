"""Derived traces: one-shot magnitude pruning of a shipped trace's weights, with the network re-run.

:func:`prune_trace` takes a real trace whose layers form one chain (each layer's input is float16 of the
previous layer's output, 2x2 max-pooled where the network pools; the VGG16/HED traces are such chains),
zeros in every layer the fraction ``sparsity`` of the weights with the smallest magnitude, and runs the
pruned network again, so that the stored activations are those the *pruned* network produces, not the
dense network's activations next to pruned weights:

- the first layer keeps the source trace's own input (the real photo, preprocessed);
- each following layer's input is float16 of the previous *pruned* layer's output, max-pooled 2x2 when
  the shapes say the network pools there (the next input's H and W are half of the previous output's);
- each output is :func:`~sparsesim.workload.ops.layer_reference` of the pruned layer (float64 from the
  stored float16 operands, stored as float32), exactly as the generators compute it.

Pruning is one-shot: no retraining or fine-tuning follows, so the pruned network is a less accurate network
than a retrained one would be; that is recorded in the provenance, with the source trace's name and the
sha256 of its manifest, and the command that derives the new trace. The result is a trace like any other,
written with :func:`~sparsesim.workload.trace.save_trace` (atomic, byte-identical for the same inputs).

A trace whose layers are not consecutive (for example one made with ``--layer conv1_1 --layer conv3_1``, or
one loaded with ``load_trace(path, layers=[...])`` that skips layers) cannot be re-chained: the pruned
output of one layer is not the input of the next stored one. :func:`prune_trace` checks the source's chain
exactly before pruning and raises :class:`~sparsesim.errors.TraceError` otherwise. The source's first layer
is taken as the start of the network: layers that ran before it when the source was made (if it was cut
from a longer network) stay dense, and the provenance says so.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.sparse.patterns import PATTERN_ENTRIES, pattern_prune
from sparsesim.sparse.structured import coarse_prune_mask, n_m_prune_mask, parse_n_m
from sparsesim.sparse.weight_repetition import quantize_weights
from sparsesim.workload.chain import check_chain, layers_to_rerun, source_manifest_sha256, to_float16
from sparsesim.workload.ops import layer_reference, maxpool2x2
from sparsesim.workload.trace import Layer, Trace, load_trace, save_trace

__all__ = ["PRUNING_METHODS", "PruningError", "prune_trace", "prune_weights", "pruning_mask"]

logger = logging.getLogger(__name__)

PRUNING_METHODS = (
    "magnitude",
    "magnitude_per_filter",
    "N:M",
    "filter",
    "channel",
    "block:G",
    "pattern:P[:RATE]",
    "quantize:BITS",
)
"""``"magnitude"``: the smallest-|w| fraction of each layer's weights; ``"magnitude_per_filter"``: the same
fraction within each filter (output channel ``k``) of each layer; an ``"N:M"`` pattern such as ``"2:4"``:
in every group of M consecutive input channels (per filter and kernel position) the N largest |w| stay,
so the sparsity is ``1 - N/M`` (layers whose channel count is not a multiple of M stay dense); coarse
``"filter"``, ``"channel"`` and ``"block:G"`` (Scalpel-like groups of G input channels): the fraction
``sparsity`` of those groups with the smallest L1 norm (see
:func:`sparsesim.sparse.structured.coarse_prune_mask`; a layer whose channels are not a multiple of G
stays dense); ``"pattern:P"`` / ``"pattern:P:RATE"`` (PCONV / PatDNN): every kernel keeps 4 positions
(the centre among them), one of a library of P patterns, then the fraction RATE of the kernels with the
smallest L2 norm go whole (connectivity pruning); the sparsity of 3x3 layers is ``1 - 4/9 (1 - RATE)``
(see :func:`sparsesim.sparse.patterns.pattern_prune`); ``"quantize:BITS"`` is no pruning but the other
one-shot weight transform of the lecture: uniform symmetric quantisation to BITS bits per layer, which
exposes weight repetition (UCNN; see :func:`sparsesim.sparse.weight_repetition.quantize_weights`;
``sparsity`` must be 0)."""


class PruningError(SparsesimError, ValueError):
    """Bad pruning parameters (sparsity outside ``[0, 1)``, unknown method). A :class:`ValueError` for
    Python callers, and a :class:`~sparsesim.errors.SparsesimError` so that the CLI reports it cleanly."""


def _check_parameters(sparsity: float, method: str) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)):
        raise PruningError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    value = float(sparsity)
    if not (0.0 <= value < 1.0):  # also refuses NaN
        raise PruningError(
            f"sparsity must be in [0, 1) (the fraction of each layer's weights set to zero), got {sparsity!r}"
        )
    if _n_m(method) is not None:
        n, m = _n_m(method)
        if abs(value - (1 - n / m)) > 1e-12:
            raise PruningError(
                f"an {method} pattern prunes {1 - n / m:g} of the weights; got sparsity {sparsity!r}"
            )
    elif _coarse(method) is not None:
        pass
    elif _pattern(method) is not None:
        implied = pattern_sparsity(method)
        if abs(value - implied) > PATTERN_SPARSITY_TOLERANCE:
            raise PruningError(
                f"{method} prunes {implied:.4f} of the weights of a 3x3 layer; give --sparsity {implied:.4f} "
                f"or leave it out, got {sparsity!r}"
            )
    elif _quantize_bits(method) is not None:
        if value != 0.0:
            raise PruningError(f"{method} quantises, it prunes nothing: give sparsity 0, got {sparsity!r}")
    elif method not in PRUNING_METHODS:
        raise PruningError(
            f"unknown pruning method {method!r}; known: magnitude, magnitude_per_filter, or an N:M pattern "
            "such as 2:4, filter, channel, block:G, pattern:P[:RATE], quantize:BITS"
        )
    return value


# The sparsity a pattern method implies (1 - 4/9 (1 - RATE)) has no short decimal: 4 decimals suffice.
PATTERN_SPARSITY_TOLERANCE = 5e-5


def _pattern(method: str) -> tuple[int, float] | None:
    """``(library size P, connectivity RATE)`` for ``pattern:P`` / ``pattern:P:RATE``; else None.

    :class:`PruningError` for a malformed pattern method (P < 1, RATE outside [0, 1))."""
    if not str(method).startswith("pattern:"):
        return None
    match = re.fullmatch(r"pattern:(\d+)(?::(\d*\.?\d+))?", str(method))
    if not match or int(match[1]) < 1 or not 0.0 <= float(match[2] or 0.0) < 1.0:
        raise PruningError(
            f"a pattern method is pattern:P or pattern:P:RATE with a library of P >= 1 patterns and a "
            f"connectivity pruning rate 0 <= RATE < 1, like pattern:8 or pattern:8:0.5; got {method!r}"
        )
    return int(match[1]), float(match[2] or 0.0)


def pattern_sparsity(method: str) -> float:
    """The fraction of a 3x3 layer's weights a ``pattern:P[:RATE]`` method prunes: ``1 - 4/9 (1 - RATE)``."""
    pattern = _pattern(method)
    if pattern is None:
        raise PruningError(f"{method!r} is not a pattern method (pattern:P or pattern:P:RATE)")
    return 1.0 - PATTERN_ENTRIES / 9 * (1.0 - pattern[1])


def _quantize_bits(method: str) -> int | None:
    """BITS for ``quantize:BITS``; else None."""
    match = re.fullmatch(r"quantize:(\d+)", str(method))
    return int(match[1]) if match else None


def _criterion(method: str) -> str:
    if method == "magnitude":
        return "smallest |w| of each layer's weights; count = round(sparsity * weights per layer)"
    if method == "magnitude_per_filter":
        return "smallest |w| within each filter; count = round(sparsity * weights per filter)"
    if _n_m(method) is not None:
        return f"{method}: the largest |w| kept in every group of consecutive input channels"
    if _coarse(method) is not None:
        return f"{method}: whole groups of smallest L1 norm; count = round(sparsity * groups per layer)"
    if _pattern(method) is not None:
        size, rate = _pattern(method)
        return (
            f"{method}: per layer, a library of the {size} most frequent natural {PATTERN_ENTRIES}-entry "
            "kernel patterns (centre + the 3 largest |w| elsewhere; ties: smaller code); each kernel keeps "
            f"the library pattern of largest kept L2 norm; then round({rate} * kernels) kernels of smallest "
            "kept L2 norm removed (connectivity pruning)"
        )
    return f"{method}: uniform symmetric quantisation, one scale per layer (max |w|); lossy"


def _coarse(method: str) -> tuple[str, int] | None:
    """``(granularity, block)`` for the coarse methods ``filter``, ``channel``, ``block:G``; else None."""
    if method in ("filter", "channel"):
        return method, 1
    match = re.fullmatch(r"block:(\d+)", str(method))
    if match and int(match[1]) >= 1:
        return "block", int(match[1])
    return None


def _n_m(method: str) -> tuple[int, int] | None:
    """``(N, M)`` if ``method`` is an N:M pattern, else None."""
    if ":" not in str(method) or str(method).startswith(("block:", "quantize:", "pattern:")):
        return None
    try:
        return parse_n_m(method)
    except ValueError as error:
        raise PruningError(str(error)) from None


def pruning_mask(weights: np.ndarray, sparsity: float, method: str = "magnitude") -> np.ndarray:
    """Boolean mask of the weights that one-shot magnitude pruning zeros (``True`` = pruned).

    ``"magnitude"``: the ``round(sparsity * weights.size)`` weights with the smallest ``|w|`` of the whole
    array. ``"magnitude_per_filter"``: in each filter ``weights[k]``, the ``round(sparsity * filter size)``
    smallest. Ties are broken by position (a stable sort of ``|w|`` over the C-order flattened array or
    filter), so the mask depends on nothing but the values. Weights that are already zero count among the
    smallest. ``round`` is Python's (halves to even).
    """
    sparsity = _check_parameters(sparsity, method)
    if _quantize_bits(method) is not None:
        return np.zeros(np.shape(weights), dtype=bool)  # quantisation prunes nothing by itself
    coarse = _coarse(method)
    if coarse is not None:
        weights = np.asarray(weights)
        if weights.ndim != 4 or weights.shape[1] % coarse[1]:
            return np.zeros(weights.shape, dtype=bool)  # no whole blocks: the layer stays dense
        return coarse_prune_mask(weights, sparsity, coarse[0], coarse[1])
    kernel_patterns = _pattern(method)
    if kernel_patterns is not None:
        weights = np.asarray(weights)
        if weights.ndim != 4:
            return np.zeros(weights.shape, dtype=bool)  # no kernels: the layer stays dense
        return pattern_prune(weights, kernel_patterns[0], kernel_patterns[1]).mask
    pattern = _n_m(method)
    if pattern is not None:
        weights = np.asarray(weights)
        if weights.ndim != 4 or weights.shape[1] % pattern[1]:
            return np.zeros(weights.shape, dtype=bool)  # no channel groups of M: the layer stays dense
        return n_m_prune_mask(weights, *pattern)
    w = _magnitude_key(weights)
    if method == "magnitude":
        flat = w.reshape(-1)
        count = int(round(sparsity * flat.size))
        mask = np.zeros(flat.size, dtype=bool)
        mask[np.argsort(flat, kind="stable")[:count]] = True
        return mask.reshape(w.shape)
    if w.ndim < 2:
        raise PruningError(f"magnitude_per_filter needs weights with a filter axis, got shape {w.shape}")
    rows = w.reshape(w.shape[0], -1)
    count = int(round(sparsity * rows.shape[1]))
    order = np.argsort(rows, axis=1, kind="stable")[:, :count]
    mask = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(w.shape)


def _magnitude_key(weights: np.ndarray) -> np.ndarray:
    """An array that sorts like ``|weights|``: the bits of |w| as uint16 when every weight is a float16
    value (non-negative float16 bit patterns sort like their values, and numpy's stable sort of 16-bit
    integers is a radix sort), else |w| in float64."""
    magnitude = np.abs(np.asarray(weights, dtype=np.float64))
    half = magnitude.astype(np.float16)
    if np.array_equal(half.astype(np.float64), magnitude):
        return half.view(np.uint16)
    return magnitude


def prune_weights(weights: np.ndarray, sparsity: float, method: str = "magnitude") -> np.ndarray:
    """A float32 copy of ``weights`` with :func:`pruning_mask`'s weights set to +0.0 (or quantised)."""
    bits = _quantize_bits(method)
    if bits is not None:
        _check_parameters(sparsity, method)
        return quantize_weights(np.asarray(weights, dtype=np.float32), bits).astype(np.float32)
    pruned = np.array(weights, dtype=np.float32, copy=True)
    pruned[pruning_mask(pruned, sparsity, method)] = 0.0
    return pruned


def prune_trace(
    trace: Trace | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    sparsity: float,
    method: str = "magnitude",
    name: str | None = None,
    layers: Sequence[str] | None = None,
) -> Trace:
    """Derive a weight-pruned trace from ``trace`` and write it to ``out_dir``; return it as loaded back.

    Args:
        trace: the source, a :class:`Trace` loaded whole with :func:`load_trace` (its manifest must still be
            at ``trace.path``: its sha256 goes into the provenance) or the path of a trace directory.
        out_dir: trace directory to write (created if missing); recorded as given in the provenance.
        sparsity: the fraction of each layer's weights set to zero, ``0 <= sparsity < 1``; in each layer
            ``round(sparsity * number of weights)`` weights (per filter with ``magnitude_per_filter``).
        method: one of :data:`PRUNING_METHODS` (see :func:`pruning_mask`).
        name: the new trace's name; default ``f"{source name}_pruned{round(100 * sparsity)}"``, with
            ``_per_filter`` appended for ``magnitude_per_filter``.
        layers: names of the layers to store (``None``: all of the source's). The pruned network is always
            run from the source's first layer up to the last requested one, every layer of it pruned.

    Each stored layer holds its pruned float16 weights, the source's bias, its input in the pruned network
    (the source's own input for the first layer; float16 of the previous pruned output, 2x2 max-pooled where
    the shapes halve, for the others) and ``layer_reference`` of all that as float32. With ``sparsity=0``
    every array equals the source's. Same arguments, same files, byte for byte.

    Raises:
        PruningError (a ValueError): ``sparsity`` outside ``[0, 1)`` or an unknown ``method``.
        TraceError: unknown layer names; the source's layers are not one chain starting at its first layer
            (shapes neither equal nor halved, or an input that is not float16 of the previous output); a
            value overflows float16; the source's manifest cannot be read.
    """
    sparsity = _check_parameters(sparsity, method)
    source, wanted, chain = layers_to_rerun(trace, layers)
    manifest_sha256 = source_manifest_sha256(source)
    pools = check_chain(source, chain)

    stored: list[Layer] = []
    per_layer = {}
    activations = chain[0].input
    for index, dense in enumerate(chain):
        weights = prune_weights(dense.weights, sparsity, method)
        pruned = replace(dense, input=activations, weights=weights)
        pruned = replace(pruned, output=layer_reference(pruned).astype(np.float32))
        per_layer[dense.name] = {
            "weights": int(weights.size),
            "zero_weights_before": int(weights.size - np.count_nonzero(dense.weights)),
            "zero_weights_after": int(weights.size - np.count_nonzero(weights)),
        }
        if _pattern(method) is not None and weights.ndim == 4:
            # The library, as 0/1 rows of R*S positions (C order), and the kernels left connected.
            patterns = pattern_prune(dense.weights, *_pattern(method)).patterns
            per_layer[dense.name]["pattern_library"] = patterns.library.astype(int).tolist()
            per_layer[dense.name]["connected_kernels"] = int(patterns.connected.sum())
        if dense.name in wanted:
            stored.append(pruned)
        logger.info(
            "%s: weight density %.4f -> %.4f, input density %.4f -> %.4f",
            dense.name,
            dense.weight_density,
            pruned.weight_density,
            dense.input_density,
            pruned.input_density,
        )
        if index < len(pools):
            carried = maxpool2x2(pruned.output) if pools[index] else pruned.output
            activations = to_float16(carried, f"pruned layer {dense.name!r} output")

    out = os.fspath(out_dir)
    command = f"sparsesim make-trace prune {source.path} {out} --sparsity {sparsity!r}"
    if method != "magnitude":
        command += f" --method {method}"
    if layers is not None:
        command += "".join(f" --layer {n}" for n in wanted)
    import sparsesim

    provenance = copy.deepcopy(source.provenance)
    pruning = {
        "method": method,
        "criterion": _criterion(method) + "; ties broken by position (stable sort, C order)",
        "sparsity": sparsity,
        "training": "one-shot, no retraining or fine-tuning",
        "layers_pruned": [layer.name for layer in chain],
        "per_layer": per_layer,
        "activations": (
            "those of the pruned network: the first layer keeps the source trace's input; each following "
            "layer's input is float16 of the previous pruned layer's output (max-pooled 2x2 where the "
            "network pools); each output is the layer's op on its stored operands (pruned weights) plus "
            "bias, then its activation, computed in float64 and stored as float32"
        ),
        "first_layer": (
            f"{chain[0].name}: its input is the source trace's, unchanged; any layer that ran before it when "
            "the source was made is not pruned"
        ),
        "source": {
            "name": source.name,
            "path": source.path,
            "manifest_sha256": manifest_sha256,
            "pruning": source.provenance.get("pruning", "none"),
        },
        "command": command,
        "function": "sparsesim.workload.pruning.prune_trace",
        "sparsesim_version": sparsesim.__version__,
    }
    provenance["pruning"] = pruning
    if name is None:
        name = f"{source.name}_pruned{int(round(sparsity * 100))}"
        if method == "magnitude_per_filter":
            name += "_per_filter"
        elif _n_m(method) is not None:
            name = f"{source.name}_{method.replace(':', 'of')}"
        elif _coarse(method) is not None:
            name = f"{source.name}_{method.replace(':', '')}_pruned{int(round(sparsity * 100))}"
        elif _pattern(method) is not None:
            size, rate = _pattern(method)
            name = f"{source.name}_pattern{size}" + (f"_connectivity{int(round(rate * 100))}" if rate else "")
        elif _quantize_bits(method) is not None:
            name = f"{source.name}_{_quantize_bits(method)}bit"
    save_trace(out, name, provenance, stored)
    return load_trace(out)
