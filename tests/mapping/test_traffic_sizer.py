"""The slice sizer's shortcut: a slice with no zero is sized once per shape. Checked against sizing every
slice on its own, in every format, on real tensors (conv4_2's weights hold 9 zeros among 2.4 million, its
inputs many)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.mapping.traffic import SliceSizer
from sparsesim.sparse.formats import preset_names, tensor_size_bits


@pytest.mark.parametrize("role", ["weights", "activations"])
def test_zero_free_slices_sized_by_shape_equal_their_own_sizes(vgg16_trace, role):
    layer = vgg16_trace.layer("conv4_2")
    sizer = SliceSizer(layer.input, layer.weights, layer.output, value_bits=16)
    rng = np.random.default_rng(0)
    tensor = (layer.weights if role == "weights" else layer.input).astype(np.float16)
    size = sizer.weights if role == "weights" else sizer.inputs
    zero_free = 0
    for _ in range(40):
        a0, b0 = int(rng.integers(0, tensor.shape[0] - 1)), int(rng.integers(0, tensor.shape[1] - 1))
        a1, b1 = a0 + int(rng.integers(1, 24)), b0 + int(rng.integers(1, 8))
        window = (slice(a0, a1), slice(b0, b1))
        zero_free += sizer.zero_free("w" if role == "weights" else "i", window)
        for fmt in preset_names(role):
            assert size(fmt, a0, a1, b0, b1).total == sum(tensor_size_bits(tensor[window], role, fmt)), fmt
    assert zero_free  # the shortcut was taken


def test_the_zero_count_of_a_window_is_its_own():
    weights = np.ones((5, 7, 3, 3), dtype=np.float32)
    weights[2, 4, 1, 1] = 0.0
    sizer = SliceSizer(np.ones((7, 4, 4), np.float32), weights, np.ones((5, 2, 2), np.float32), 16)
    assert not sizer.zero_free("w", (slice(0, 5), slice(0, 7)))
    assert not sizer.zero_free("w", (slice(2, 3), slice(4, 5)))
    assert sizer.zero_free("w", (slice(0, 2), slice(0, 7)))
    assert sizer.zero_free("w", (slice(3, 9), slice(0, 7)))  # clipped at the tensor's end
    assert sizer.zero_free("w", (slice(0, 5), slice(5, 7)))
