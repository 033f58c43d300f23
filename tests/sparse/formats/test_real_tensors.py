"""Every preset on the shipped real tensors (VGG16 on china.jpg): exact round trips and size_bits == encode.

Round trips use a leading slice of each tensor (whole channels / filters, at most about 40k values) to
keep the test tier fast; size_bits is checked against encode on full tensors of three layers.
Outputs are stored as float32 in the trace and are not float16 values (the encoder refuses them, see
``test_real_float32_outputs_are_refused_until_rounded``); the accelerators store them as float16, as the
trace does when an output becomes the next layer's input, so the tests round them the same way.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.sparse.formats import decode_tensor, encode_tensor, preset, preset_names, size_bits

ROUND_TRIP_VALUES = 40_000


def real_tensors(trace, layer_index):
    layer = trace.layers[layer_index]
    return (
        ("input", "activations", layer.input),
        ("weights", "weights", layer.weights),
        ("output as float16", "activations", layer.output.astype(np.float16)),
    )


def leading_slice(tensor):
    per_outer = tensor[0].size
    return tensor[: max(1, ROUND_TRIP_VALUES // per_outer)]


@pytest.mark.parametrize("layer_index", range(13))
def test_every_preset_round_trips_every_real_tensor_of_the_layer(vgg16_trace, layer_index):
    for which, role, tensor in real_tensors(vgg16_trace, layer_index):
        part = leading_slice(tensor)
        for name in preset_names(role):
            encoded = encode_tensor(part, role, name)
            p = preset(name, role)
            assert size_bits(p.view(part), p.format) == (encoded.payload_bits, encoded.metadata_bits)
            assert encoded.payload_bits + encoded.metadata_bits == encoded.n_bits
            decoded = decode_tensor(encoded, role, name, part.shape)
            assert decoded.dtype == np.float16
            # == semantics (a -0.0 would decode as +0.0); every nonzero is bit-exact.
            assert np.array_equal(decoded, part), f"{which} of layer {layer_index} in {name}"
            nonzero = part != 0
            assert np.array_equal(
                decoded[nonzero].view(np.uint16), part[nonzero].astype(np.float16).view(np.uint16)
            )


@pytest.mark.parametrize("layer_index", [1, 4, 12])
def test_size_bits_equals_encode_on_full_real_tensors(vgg16_trace, layer_index):
    for _, role, tensor in real_tensors(vgg16_trace, layer_index):
        for name in preset_names(role):
            p = preset(name, role)
            encoded = encode_tensor(tensor, role, name)
            assert size_bits(p.view(tensor), p.format) == (encoded.payload_bits, encoded.metadata_bits)
            assert encoded.n_bits == encoded.payload_bits + encoded.metadata_bits
            assert len(encoded.data) == -(-encoded.n_bits // 8)


def test_full_real_input_round_trips_in_the_eyeriss_and_csc_formats(vgg16_trace):
    tensor = vgg16_trace.layers[3].input  # conv2_2: 128 x 56 x 80, density 0.21
    for name in ("RLE", "CSC", "ZFB"):
        encoded = encode_tensor(tensor, "activations", name)
        assert np.array_equal(decode_tensor(encoded, "activations", name, tensor.shape), tensor)


def test_compressed_presets_beat_dense_on_a_sparse_real_input_and_zfb_does_not(vgg16_trace):
    from sparsesim.sparse.formats import compare_formats

    sizes = {s.name: s for s in compare_formats(vgg16_trace.layers[4].input, "activations")}  # density 0.09
    assert sizes["U"].ratio == 1.0 and sizes["U"].metadata_bits == 0
    for name in ("B", "RLE", "RLE_gamma", "CP", "CSR", "CSC", "BB"):
        assert sizes[name].ratio > 2
    assert sizes["ZFB"].ratio == pytest.approx(1 / 1.25)  # 128 channels: no padding, 20 bits per slot


def test_real_float32_outputs_are_refused_until_rounded(vgg16_trace):
    output = vgg16_trace.layers[0].output
    with pytest.raises(ValueError, match="float16-representable"):
        encode_tensor(output, "activations", "B")
    assert encode_tensor(output.astype(np.float16), "activations", "B").payload_bits == 16 * int(
        np.count_nonzero(output.astype(np.float16))
    )
