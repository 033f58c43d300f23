"""Reference layer ops: the plain numpy results that every simulated layer is checked against.

All ops compute in float64 and return float64, batch 1, channels first (CHW). They are vectorised (conv2d is
im2col through :func:`numpy.lib.stride_tricks.sliding_window_view` and one :func:`numpy.tensordot` per band
of output rows), so a VGG16 layer at 112x160 takes well under a second. Shape errors raise
:class:`ValueError` naming the shapes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sparsesim.sparse.geometry import output_size
from sparsesim.workload.trace import ACTIVATIONS, Layer

__all__ = [
    "conv2d_reference",
    "conv2d_reference_bands",
    "layer_reference",
    "linear_reference",
    "maxpool2x2",
    "relu",
]


#: Operand values of the band of windows :func:`conv2d_reference` copies at a time (float64: 16 MiB).
REFERENCE_BAND_VALUES = 2 * 1024 * 1024


def conv2d_reference(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    bias: np.ndarray | None,
    stride: int = 1,
    padding: int = 0,
) -> np.ndarray:
    """Cross-correlation (what DNN frameworks call convolution) of one image, in float64.

    ``input_chw`` is ``(C, H, W)``, ``weights_kcrs`` ``(K, C, R, S)``, ``bias`` ``(K,)`` or ``None``;
    ``padding`` zeros are added on every side of H and W, the kernel moves by ``stride`` along both.
    Returns ``(K, Hout, Wout)`` with ``Hout = (H + 2*padding - R) // stride + 1`` (likewise ``Wout``):
    ``out[k, y, x] = bias[k] + sum_{c,r,s} w[k, c, r, s] * in_padded[c, y*stride + r, x*stride + s]``.
    No activation is applied. The bands of :func:`conv2d_reference_bands`, put together.
    """
    x, w, h_out, w_out = _conv2d_operands(input_chw, weights_kcrs, stride, padding)
    out = np.empty((w.shape[0], h_out, w_out))
    for first_row, band in conv2d_reference_bands(x, w, bias, stride, padding):
        out[:, first_row : first_row + band.shape[1]] = band
    return out


def conv2d_reference_bands(
    input_chw: np.ndarray,
    weights_kcrs: np.ndarray,
    bias: np.ndarray | None,
    stride: int = 1,
    padding: int = 0,
    activation: str = "none",
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`conv2d_reference` a band of output rows at a time, then ``activation`` (``"relu"`` or
    ``"none"``): yields ``(first output row, band (K, rows, Wout) float64)``, bands in order, each of about
    ``REFERENCE_BAND_VALUES`` operand values (at least one row), so that a caller can compare a layer's
    output with numpy's without holding numpy's whole output.

    Only a band's input rows are padded and converted to float64 (float64 weights are used as given, not
    copied). The values are those of :func:`conv2d_reference` (and its ``relu``), bit for bit.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    x, w, h_out, w_out = _conv2d_operands(input_chw, weights_kcrs, stride, padding)
    k, channels, r, s = w.shape
    height, width = x.shape[1:]
    b = None if bias is None else _bias(bias, k)[:, None, None]
    # A band of output rows at a time: tensordot copies its windows into one matrix.
    rows_per_band = max(1, REFERENCE_BAND_VALUES // (w_out * channels * r * s))
    for y in range(0, h_out, rows_per_band):
        rows = min(rows_per_band, h_out - y)
        # The band's input rows, zero-padded: padded rows [y*stride, (y + rows - 1)*stride + r).
        first = y * stride - padding  # in unpadded rows; may be negative
        last = (y + rows - 1) * stride + r - padding
        padded = np.zeros((channels, last - first, width + 2 * padding))
        top, bottom = max(first, 0), min(last, height)
        padded[:, top - first : bottom - first, padding : padding + width] = x[:, top:bottom]
        # windows[c, y, x, r, s] = padded[c, y*stride + r, x*stride + s]
        windows = sliding_window_view(padded, (r, s), axis=(1, 2))[:, ::stride, ::stride][:, :rows, :w_out]
        band = np.tensordot(w, windows, axes=([1, 2, 3], [0, 3, 4]))
        del padded, windows
        if b is not None:
            band += b
        if activation == "relu":
            band = relu(band)
        yield y, band


def _conv2d_operands(
    input_chw: np.ndarray, weights_kcrs: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The checked input (as given) and float64 weights of a conv2d, and its output height and width."""
    x = np.asarray(input_chw)
    w = np.asarray(weights_kcrs, dtype=np.float64)
    if x.ndim != 3 or w.ndim != 4:
        raise ValueError(
            f"conv2d needs input (C, H, W) and weights (K, C, R, S), got {x.shape} and {w.shape}"
        )
    if x.shape[0] != w.shape[1]:
        raise ValueError(f"conv2d: input has C={x.shape[0]} channels, weights expect C={w.shape[1]}")
    if stride < 1 or padding < 0:
        raise ValueError(f"conv2d needs stride >= 1 and padding >= 0, got stride {stride}, padding {padding}")
    _, _, r, s = w.shape
    h_out = output_size(x.shape[1], r, stride, padding)
    w_out = output_size(x.shape[2], s, stride, padding)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"conv2d: a {r}x{s} kernel does not fit input {x.shape} with padding {padding}")
    return x, w, h_out, w_out


def linear_reference(input_c: np.ndarray, weights_kc: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Fully connected layer of one vector, in float64: ``weights_kc @ input_c + bias``, shape ``(K,)``."""
    x = np.asarray(input_c, dtype=np.float64)
    w = np.asarray(weights_kc, dtype=np.float64)
    if x.ndim != 1 or w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"linear needs input (C,) and weights (K, C), got {x.shape} and {w.shape}")
    out = w @ x
    if bias is not None:
        out += _bias(bias, w.shape[0])
    return out


def _bias(bias: np.ndarray, k: int) -> np.ndarray:
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (k,):
        raise ValueError(f"bias must have shape ({k},), got {b.shape}")
    return b


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` elementwise, in float64; zeros come out as +0.0 (never -0.0)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, 0.0)


def maxpool2x2(x_chw: np.ndarray) -> np.ndarray:
    """2x2 max pooling with stride 2 over H and W of ``(C, H, W)``, floor mode (an odd last row or column
    is dropped, like Keras ``padding='valid'``). Keeps the input's dtype."""
    x = np.asarray(x_chw)
    if x.ndim != 3:
        raise ValueError(f"maxpool2x2 needs (C, H, W), got shape {x.shape}")
    c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    if h2 < 1 or w2 < 1:
        raise ValueError(f"maxpool2x2 needs H and W >= 2, got shape {x.shape}")
    return x[:, : 2 * h2, : 2 * w2].reshape(c, h2, 2, w2, 2).max(axis=(2, 4))


def layer_reference(layer: Layer) -> np.ndarray:
    """The reference output of ``layer`` in float64: its op on its (stored) operands, plus bias, then the
    activation. A trace's ``output`` is this, rounded to float32."""
    if layer.op == "conv2d":
        out = conv2d_reference(layer.input, layer.weights, layer.bias, layer.stride, layer.padding)
    elif layer.op == "linear":
        out = linear_reference(layer.input, layer.weights, layer.bias)
    else:
        raise ValueError(f"unknown op {layer.op!r} in layer {layer.name!r}; known: conv2d, linear")
    if layer.activation == "relu":
        return relu(out)
    if layer.activation == "none":
        return out
    raise ValueError(f"unknown activation {layer.activation!r} in layer {layer.name!r}; known: relu, none")
