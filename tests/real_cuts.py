"""Small layers cut from the shipped real trace, for tests that need real tensors but not a whole layer."""

from __future__ import annotations

import os

import numpy as np

from sparsesim.workload.ops import conv2d_reference
from sparsesim.workload.trace import Layer


def crop(layer, channels: int, height: int, width: int, filters: int, name: str) -> Layer:
    """A corner of a real layer: its first ``channels`` input channels over ``height x width`` pixels and its
    first ``filters`` filters, with the output recomputed as the trace format defines it (float64 conv +
    bias + activation of the stored operands, rounded to float32)."""
    x = np.ascontiguousarray(layer.input[:channels, :height, :width])
    w = np.ascontiguousarray(layer.weights[:filters, :channels])
    b = np.ascontiguousarray(layer.bias[:filters])
    out = conv2d_reference(x, w, b, layer.stride, layer.padding)
    if layer.activation == "relu":
        out = np.maximum(out, 0.0)
    return Layer(
        name, "conv2d", x, w, b, out.astype(np.float32), layer.stride, layer.padding, layer.activation
    )


_PRUNED: dict[tuple, np.ndarray] = {}


def pruned_weights(trace, layer_name: str, sparsity: float) -> np.ndarray:
    """``layer_name``'s whole weights magnitude-pruned to ``sparsity`` (one-shot, in memory), computed once
    per session for each (trace, layer, sparsity) and shared read-only: the many parametrised cases that cut
    a small piece out of the same pruned layer do not each sort the layer's weights again."""
    from sparsesim.workload.pruning import prune_weights

    key = (os.path.realpath(os.fspath(trace.path)), trace.name, layer_name, sparsity)
    if key not in _PRUNED:
        weights = prune_weights(trace.layer(layer_name).weights, sparsity)
        weights.setflags(write=False)
        _PRUNED[key] = weights
    return _PRUNED[key]
