"""Workloads: the trace format (real layers on disk), reference layer ops, and trace generators.

The generators (:mod:`sparsesim.workload.vgg16_hed`) need the optional ``traces`` extra and are imported
on use, not here.
"""

from sparsesim.workload.ops import conv2d_reference, layer_reference, linear_reference, maxpool2x2, relu
from sparsesim.workload.trace import TRACE_FORMAT_VERSION, Layer, Trace, load_trace, save_trace

__all__ = [
    "TRACE_FORMAT_VERSION",
    "Layer",
    "Trace",
    "conv2d_reference",
    "layer_reference",
    "linear_reference",
    "load_trace",
    "maxpool2x2",
    "relu",
    "save_trace",
]
