"""Derived traces: a shipped network made into a mixture of experts (MoEfication), with the network re-run.

:func:`moefy_trace` takes a real trace whose layers form one chain (as :func:`~sparsesim.workload.pruning.
prune_trace` does, and with the same checks), and turns every layer of the chain into a mixture of experts
with :mod:`sparsesim.sparse.moe`: the filters split into ``experts`` equal experts by balanced k-means, a
mean-filter router, each output pixel computing its ``top_k`` best-scoring experts, the other outputs 0. Then
the network runs again, so that each layer's input is the previous *MoE* layer's real output:

- the first layer keeps the source trace's own input;
- each following layer's input is float16 of the previous MoE layer's output, max-pooled 2x2 where the
  network pools;
- each stored output is the trace format's reference: the layer's own conv + bias + activation of its
  stored operands (float64, stored as float32), as in every trace, so that the functional check can verify
  it. The MoE layer's output (routed outputs as the layer computes them, the others 0) is what the next
  layer reads, not what is stored.

The weights are untouched: the experts and the router are a deterministic function of the weights and of
``(experts, top_k, seed)``, so the simulator's ``mixture_of_experts`` mode with the same parameters rebuilds
the same routing on the same inputs: its output is the MoE layer's, and its ``lossy_error`` against the
stored reference is the layer's error as a mixture of experts (``relative_rms_error_vs_dense_layer`` in the
provenance). The cost of the construction is in the provenance: per layer, the output error against the
dense layer on the same input, against the source network's output (errors compound through the layers),
and the activation the routing keeps. The construction is MoEfication's (Zhang et al., Findings of ACL
2022) applied to a CNN, with no fine-tuning: it is not a trained mixture-of-experts network, and its
provenance says so.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sparsesim.errors import SparsesimError
from sparsesim.sparse.moe import (
    activation_recall,
    balanced_kmeans_partition,
    mean_filter_router,
    moe_output,
    routed_outputs,
    router_scores,
    top_k_experts,
)
from sparsesim.workload.chain import check_chain, layers_to_rerun, source_manifest_sha256, to_float16
from sparsesim.workload.ops import layer_reference, maxpool2x2
from sparsesim.workload.trace import Layer, Trace, load_trace, save_trace

__all__ = ["MoeficationError", "layer_operands", "moefy_layer", "moefy_trace"]

logger = logging.getLogger(__name__)

CONSTRUCTION = (
    "MoEfication (Zhang et al., 'MoEfication: Transformer Feed-forward Layers are Mixtures of Experts', "
    "Findings of ACL 2022) applied to conv layers: neurons = output filters, tokens = output pixels. "
    "Experts: balanced k-means (greedy balanced assignment, k-means++ seeding) on the unit-normalised "
    "filters (the paper's parameter-clustering split). Router: per expert the mean of its filters and of "
    "their biases (its mean pre-activation; the paper's similarity selection), E dot products per pixel, "
    "not trained. Each pixel computes its top-k experts; unselected experts' outputs are 0. No fine-tuning."
)


class MoeficationError(SparsesimError, ValueError):
    """Bad MoEfication parameters (experts that do not divide a layer's filters, top_k out of range)."""


def layer_operands(layer: Layer, input_chw: np.ndarray) -> np.ndarray:
    """``(P, C*R*S)`` float64: each output pixel's input window, in the order the simulator uses (output
    rows, then columns; features by channel, then kernel row and column). A linear layer has one pixel."""
    if layer.op == "linear":
        return np.asarray(input_chw, dtype=np.float64).reshape(1, -1)
    _, _, kernel_r, kernel_s = layer.weights.shape
    p, stride = layer.padding, layer.stride
    out_h, out_w = layer.output.shape[1:]
    padded = np.pad(np.asarray(input_chw, dtype=np.float64), ((0, 0), (p, p), (p, p)))
    views = sliding_window_view(padded, (kernel_r, kernel_s), axis=(1, 2))[:, ::stride, ::stride]
    views = views[:, :out_h, :out_w]  # (C, Hout, Wout, R, S)
    return np.ascontiguousarray(views.transpose(1, 2, 0, 3, 4)).reshape(out_h * out_w, -1)


def moefy_layer(layer: Layer, experts: int, top_k: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """The layer's output as a mixture of experts (``output``'s shape, float64) and its statistics."""
    filters = layer.weights.shape[0]
    if isinstance(experts, bool) or not isinstance(experts, int) or experts < 1 or filters % experts:
        raise MoeficationError(
            f"layer {layer.name!r}: {filters} filters cannot be split into {experts!r} experts of equal size"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= experts:
        raise MoeficationError(f"top_k must be an integer in [1, experts = {experts}], got {top_k!r}")
    operands = layer_operands(layer, layer.input)
    weights = layer.weights.reshape(filters, -1).astype(np.float64)
    labels = balanced_kmeans_partition(weights, experts, seed)
    router, router_bias = mean_filter_router(weights, layer.bias, labels)
    selected = top_k_experts(router_scores(operands, router, router_bias), top_k)
    routed = routed_outputs(selected, labels)
    output = moe_output(operands, weights, layer.bias, routed, relu=layer.activation == "relu")
    dense = layer_reference(layer).reshape(filters, -1)
    stats = {
        "relative_rms_error_vs_dense_layer": _relative_rms(output, dense),
        "recall_of_dense_layer": activation_recall(dense, routed),
        "pixel_share_per_expert": [round(float(x), 6) for x in selected.mean(axis=0)],
    }
    return output.reshape(layer.output.shape), stats


def _relative_rms(value: np.ndarray, reference: np.ndarray) -> float:
    scale = float(np.sqrt(np.mean(np.square(reference))))
    return float(np.sqrt(np.mean(np.square(value - reference)))) / scale if scale > 0 else 0.0


def moefy_trace(
    trace: Trace | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    experts: int,
    top_k: int,
    seed: int = 0,
    name: str | None = None,
    layers: Sequence[str] | None = None,
) -> Trace:
    """Derive a mixture-of-experts trace from ``trace`` and write it to ``out_dir``; return it as loaded back.

    Every layer of the chain, from the source's first layer up to the last requested one, becomes a mixture
    of ``experts`` experts of which each output pixel uses ``top_k`` (see the module docstring); ``layers``
    selects the layers stored (default: all). ``name`` defaults to
    ``f"{source name}_moe{experts}top{top_k}"``. Same arguments, same files, byte for byte.

    Raises:
        MoeficationError (a ValueError): ``experts`` does not divide a layer's filter count, or ``top_k`` is
            not in ``[1, experts]``.
        TraceError: unknown layer names; the source's layers are not one chain; a value overflows float16;
            the source's manifest cannot be read.
    """
    source, wanted, chain = layers_to_rerun(trace, layers)
    manifest_sha256 = source_manifest_sha256(source)
    pools = check_chain(source, chain)

    stored, per_layer = [], {}
    activations = chain[0].input
    for index, dense in enumerate(chain):
        layer = replace(dense, input=activations)
        output, stats = moefy_layer(layer, experts, top_k, seed)
        # Stored: the layer's reference on its input (the format's contract); carried on: the MoE output.
        layer = replace(layer, output=layer_reference(layer).astype(np.float32))
        stats["relative_rms_error_vs_source_network"] = _relative_rms(
            output.reshape(len(output), -1), dense.output.reshape(len(output), -1).astype(np.float64)
        )
        per_layer[dense.name] = stats
        logger.info(
            "%s: relative rms error %.3f (layer), %.3f (network)",
            dense.name,
            stats["relative_rms_error_vs_dense_layer"],
            stats["relative_rms_error_vs_source_network"],
        )
        if dense.name in wanted:
            stored.append(layer)
        if index < len(pools):
            moe = output.astype(np.float32)
            carried = maxpool2x2(moe) if pools[index] else moe
            activations = to_float16(carried, f"MoE layer {dense.name!r} output")

    out = os.fspath(out_dir)
    command = f"sparsesim make-trace moefy {source.path} {out} --experts {experts} --top-k {top_k}"
    if seed:
        command += f" --seed {seed}"
    if layers is not None:
        command += "".join(f" --layer {n}" for n in wanted)
    import sparsesim

    provenance = copy.deepcopy(source.provenance)
    provenance["mixture_of_experts"] = {
        "construction": CONSTRUCTION,
        "experts": experts,
        "top_k": top_k,
        "seed": seed,
        "training": "none: the dense trained weights are split as they are; no fine-tuning; router untrained",
        "layers": [layer.name for layer in chain],
        "per_layer": per_layer,
        "activations": (
            "those of the MoE network: the first layer keeps the source trace's input; each following "
            "layer's input is float16 of the previous MoE layer's output (max-pooled 2x2 where the network "
            "pools), the MoE layer's output being the routed outputs' conv + bias + activation in float64 "
            "(unrouted outputs 0); each stored output is the layer's reference, its dense conv + bias + "
            "activation of its stored input in float64, stored as float32"
        ),
        "simulate_with": "pe_array.pe.mechanism kind mixture_of_experts with the same experts, top_k, "
        "seed (hwconfigs/moe.yaml) rebuilds this routing; its lossy_error against the stored reference "
        "is relative_rms_error_vs_dense_layer",
        "source": {
            "name": source.name,
            "path": source.path,
            "manifest_sha256": manifest_sha256,
            "pruning": source.provenance.get("pruning", "none"),
        },
        "command": command,
        "function": "sparsesim.workload.moefication.moefy_trace",
        "sparsesim_version": sparsesim.__version__,
    }
    save_trace(out, name or f"{source.name}_moe{experts}top{top_k}", provenance, stored)
    return load_trace(out)
