"""The reference ops against naive loop versions, on small synthetic tensors."""

import numpy as np
import pytest

from sparsesim.workload.ops import conv2d_reference, layer_reference, linear_reference, maxpool2x2, relu
from sparsesim.workload.trace import Layer


def naive_conv2d(x, w, b, stride, padding):
    """One loop iteration per output element: the definition of cross-correlation, written for clarity."""
    c, h, width = x.shape
    k, _, r, s = w.shape
    xp = np.zeros((c, h + 2 * padding, width + 2 * padding))
    xp[:, padding : padding + h, padding : padding + width] = x
    h_out = (h + 2 * padding - r) // stride + 1
    w_out = (width + 2 * padding - s) // stride + 1
    out = np.zeros((k, h_out, w_out))
    for kk in range(k):
        for y in range(h_out):
            for xx in range(w_out):
                total = b[kk]
                for cc in range(c):
                    for rr in range(r):
                        for ss in range(s):
                            total += w[kk, cc, rr, ss] * xp[cc, y * stride + rr, xx * stride + ss]
                out[kk, y, xx] = total
    return out


def naive_maxpool2x2(x):
    c, h, w = x.shape
    out = np.empty((c, h // 2, w // 2), dtype=x.dtype)
    for cc in range(c):
        for y in range(h // 2):
            for xx in range(w // 2):
                out[cc, y, xx] = max(x[cc, 2 * y + dy, 2 * xx + dx] for dy in (0, 1) for dx in (0, 1))
    return out


@pytest.mark.parametrize(
    "c,h,w,k,r,s,stride,padding",
    [
        (3, 7, 9, 4, 3, 3, 1, 1),
        (2, 8, 8, 3, 3, 3, 2, 1),
        (4, 6, 5, 2, 1, 1, 1, 0),
        (1, 9, 7, 2, 5, 3, 3, 2),
        (2, 5, 5, 1, 5, 5, 1, 0),
    ],
)
def test_conv2d_reference_equals_naive_loops_on_synthetic_tensors(c, h, w, k, r, s, stride, padding):
    rng = np.random.default_rng(c * 1000 + h * 100 + stride * 10 + padding)
    synthetic_x = rng.standard_normal((c, h, w))
    synthetic_w = rng.standard_normal((k, c, r, s))
    synthetic_b = rng.standard_normal(k)
    got = conv2d_reference(synthetic_x, synthetic_w, synthetic_b, stride, padding)
    want = naive_conv2d(synthetic_x, synthetic_w, synthetic_b, stride, padding)
    assert got.shape == want.shape
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv2d_reference_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="C=3"):
        conv2d_reference(np.zeros((3, 4, 4)), np.zeros((2, 4, 3, 3)), None)


def test_linear_reference_equals_naive_loop_on_synthetic_tensors():
    rng = np.random.default_rng(1)
    synthetic_x, synthetic_w, synthetic_b = (
        rng.standard_normal(7),
        rng.standard_normal((5, 7)),
        rng.standard_normal(5),
    )
    want = [synthetic_b[k] + sum(synthetic_w[k, c] * synthetic_x[c] for c in range(7)) for k in range(5)]
    np.testing.assert_allclose(linear_reference(synthetic_x, synthetic_w, synthetic_b), want, rtol=1e-12)


def test_relu_zeroes_negatives_and_never_returns_negative_zero():
    out = relu(np.array([-2.0, -0.0, 0.0, 1.5]))
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 1.5])
    assert not np.any(np.signbit(out))


@pytest.mark.parametrize("h,w", [(4, 6), (5, 7), (2, 3)])
def test_maxpool2x2_equals_naive_loops_in_floor_mode_on_synthetic_tensors(h, w):
    synthetic_x = np.random.default_rng(h * w).standard_normal((3, h, w)).astype(np.float32)
    got = maxpool2x2(synthetic_x)
    assert got.shape == (3, h // 2, w // 2)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, naive_maxpool2x2(synthetic_x))


def test_layer_reference_applies_bias_and_activation_on_synthetic_layers():
    rng = np.random.default_rng(2)
    synthetic_x = rng.standard_normal((2, 5, 5))
    synthetic_w = rng.standard_normal((3, 2, 3, 3))
    synthetic_b = rng.standard_normal(3)
    raw = naive_conv2d(synthetic_x, synthetic_w, synthetic_b, 1, 1)
    for activation, want in (("relu", np.maximum(raw, 0)), ("none", raw)):
        layer = Layer("synthetic", "conv2d", synthetic_x, synthetic_w, synthetic_b, want, 1, 1, activation)
        np.testing.assert_allclose(layer_reference(layer), want, rtol=1e-12, atol=1e-12)
    linear = Layer(
        "synthetic_fc", "linear", synthetic_x.ravel(), rng.standard_normal((4, 50)), np.zeros(4), None
    )
    np.testing.assert_allclose(
        layer_reference(linear), np.maximum(linear.weights @ linear.input, 0), rtol=1e-12
    )
