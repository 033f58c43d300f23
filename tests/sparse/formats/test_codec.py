"""Encode / decode / size on synthetic tensors (named as such): hand calculations, scipy as an independent
check of CSR/CSC, property tests over generated formats and tensors, corrupt and truncated streams."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.sparse.formats import (
    BitReader,
    FormatDecodeError,
    RankFormat,
    TensorFormat,
    decode,
    decode_tensor,
    encode,
    encode_tensor,
    preset,
    preset_names,
    size_bits,
    tensor_size_bits,
)

# A synthetic 4x4 matrix for the hand calculation. Flat C-order: nonzeros at 1, 8, 11, 15.
SYNTHETIC_4X4 = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [2, 0, 0, 3], [0, 0, 0, 4]], dtype=np.float32)


def stream_bits(encoded) -> str:
    bits = np.unpackbits(np.frombuffer(encoded.data, dtype=np.uint8))[: encoded.n_bits]
    return "".join(map(str, bits))


def f16(*values) -> str:
    return "".join(format(int(np.float16(v).view(np.uint16)), "016b") for v in values)


def check_consistent(encoded, array, fmt):
    assert size_bits(array, fmt) == (encoded.payload_bits, encoded.metadata_bits)
    assert (
        encoded.payload_bits + encoded.metadata_bits
        == encoded.n_bits
        == sum(encoded.rank_metadata_bits) + (encoded.payload_bits)
    )
    assert len(encoded.data) == -(-encoded.n_bits // 8)  # 8*len(data) minus at most 7 padding bits


def test_hand_calculation_on_a_4x4_synthetic_matrix():
    m = SYNTHETIC_4X4
    values = f16(1, 2, 3, 4)
    # U: 16 values x 16 bits, no metadata.
    assert tensor_size_bits(m, "matrix", "U") == (256, 0)
    # B: one bit per coordinate (16), payload for the 4 nonzeros.
    e = encode_tensor(m, "matrix", "B")
    assert stream_bits(e) == "0100000010010001" + values
    # RLE, 2-bit runs (max 3): gaps 1, 6, 2, 3 zeros; the gap of 6 needs one padding entry (3 zeros skipped
    # then an explicit zero at position 5), leaving a run of 2 before the value 2: 5 entries x 2 bits.
    e = encode_tensor(m, "matrix", "RLE", width_bits=2)
    assert (e.payload_bits, e.metadata_bits) == (5 * 16, 5 * 2)
    assert stream_bits(e) == "0111101011" + f16(1, 0, 2, 3, 4)
    # RLE with Elias-gamma runs: gamma(2)=010, gamma(7)=00111, gamma(3)=011, gamma(4)=00100.
    e = encode_tensor(m, "matrix", "RLE_gamma")
    assert stream_bits(e) == "0100011101100100" + values
    # CP, flat: occupancy 4 in ceil(log2(17)) = 5 bits, then 4 coordinates in ceil(log2(16)) = 4 bits.
    e = encode_tensor(m, "matrix", "CP")
    assert stream_bits(e) == "001000001100010111111" + values
    # CSR: 5 offsets [0,1,1,3,4] in bit_length(16) = 5 bits (enough for any 4x4 matrix), then column
    # coordinates [1,0,3,3] in 2 bits; no occupancy fields (the offsets give them).
    e = encode_tensor(m, "matrix", "CSR")
    assert (e.payload_bits, e.metadata_bits) == (64, 25 + 8)
    assert stream_bits(e) == "000000000100001000110010001001111" + values
    # BB: 4 bits of non-empty rows, then a 4-bit mask for each of the 3 non-empty rows.
    e = encode_tensor(m, "matrix", "BB")
    assert stream_bits(e) == "1011010010010001" + values
    for name in preset_names("matrix"):
        e = encode_tensor(m, "matrix", name)
        check_consistent(e, preset(name, "matrix").view(m), e.format)
        assert np.array_equal(decode_tensor(e, "matrix", name, m.shape), m)


def test_rle_trailing_zeros_cost_padding_then_a_terminal_run_without_payload():
    synthetic = np.array([0, 5, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    fmt = TensorFormat("rle2", (RankFormat("RLE", 2),))
    e = encode(synthetic, fmt)
    # value 5 after 1 zero; 6 trailing zeros = one padding entry (3 skipped + explicit zero) + terminal run 2
    assert stream_bits(e) == "011110" + f16(5, 0)
    assert np.array_equal(decode(e), synthetic)
    gamma = encode(synthetic, TensorFormat("g", (RankFormat("RLE", run_code="elias_gamma"),)))
    assert stream_bits(gamma) == "01000111" + f16(5)  # gamma(2), then terminal gamma(6 + 1)


def test_negative_zero_counts_as_zero_and_decodes_as_positive_zero():
    synthetic = np.array([[-0.0, 1.0], [0.0, -0.0]], dtype=np.float16)
    for name in preset_names("matrix"):
        e = encode_tensor(synthetic, "matrix", name)
        out = decode_tensor(e, "matrix", name, synthetic.shape)
        assert np.array_equal(out, synthetic)  # == semantics: -0.0 == 0.0
        assert not np.signbit(out[out == 0]).any()
        if name != "U":
            assert e.payload_bits == 16


def test_values_must_be_exactly_float16_representable_and_finite():
    with pytest.raises(ValueError, match=r"index \(1,\).*float16"):
        size_bits(np.array([1.0, 0.1], dtype=np.float32), preset("U", "matrix").format)
    with pytest.raises(ValueError, match="float16"):
        encode(np.array([np.inf, 0.0]), preset("B", "matrix").format)
    with pytest.raises(ValueError, match="1 rank"):
        encode(np.zeros((2, 2)), preset("B", "matrix").format)


def test_field_widths_too_narrow_for_the_data_are_refused():
    with pytest.raises(ValueError, match="width_bits=3 cannot hold 15"):
        tensor_size_bits(SYNTHETIC_4X4, "matrix", "CP", width_bits=3)
    with pytest.raises(ValueError, match="width_bits=2 cannot hold 4"):
        tensor_size_bits(SYNTHETIC_4X4, "matrix", "CSR", offset_width_bits=2)
    with pytest.raises(ValueError, match="needs width_bits"):
        RankFormat("RLE")
    with pytest.raises(ValueError, match="upper-rank"):
        TensorFormat("bad", (RankFormat("UOP"),))


synthetic_matrices = arrays(
    np.float16,
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    elements=st.sampled_from([0.0, 0.0, 0.0, -0.0, 1.0, -2.5, 65504.0, 6e-08]),
)


@settings(max_examples=80, deadline=None)
@given(synthetic_matrices)
def test_csr_and_csc_emit_scipys_indptr_and_indices_on_synthetic_matrices(m):
    for name, sp in (("CSR", scipy.sparse.csr_matrix), ("CSC", scipy.sparse.csc_matrix)):
        ref = sp(m.astype(np.float32))
        ref.eliminate_zeros()
        e = encode_tensor(m, "matrix", name)
        outer, inner = e.shape
        r = BitReader(e.data, e.n_bits)
        indptr = r.read_fields(outer + 1, (outer * inner).bit_length())
        indices = r.read_fields(ref.nnz, max(1, (inner - 1).bit_length()))
        payload = r.read_fields(ref.nnz, 16).astype(np.uint16).view(np.float16)
        assert r.remaining == 0
        assert indptr.tolist() == ref.indptr.tolist()
        assert indices.tolist() == ref.indices.tolist()
        assert np.array_equal(payload, ref.data.astype(np.float16))
        assert e.payload_bits == ref.nnz * 16


@st.composite
def synthetic_tensor_and_format(draw):
    """A synthetic tensor with 1-3 dimensions and an arbitrary per-rank format for it."""
    depth = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=depth, max_size=depth)))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([1.0, -3.0, 0.5, 1024.0], dtype=np.float16), size=shape)
    synthetic = np.where(rng.random(shape) < density, values, np.float16(0))
    upper = st.sampled_from(
        [
            RankFormat("U"),
            RankFormat("B"),
            RankFormat("CP"),
            RankFormat("UOP"),
            RankFormat("RLE", 1),
            RankFormat("RLE", 2),
            RankFormat("RLE", run_code="elias_gamma"),
        ]
    )
    leaf = st.sampled_from(
        [
            RankFormat("U"),
            RankFormat("B"),
            RankFormat("CP"),
            RankFormat("CP", 3, aligned=True),
            RankFormat("RLE", 1),
            RankFormat("RLE", 3),
            RankFormat("RLE", run_code="elias_gamma"),
        ]
    )
    ranks = tuple(draw(upper) for _ in range(depth - 1)) + (draw(leaf),)
    return synthetic.astype(np.float16), TensorFormat("synthetic", ranks)


@settings(max_examples=300, deadline=None)
@given(synthetic_tensor_and_format())
def test_every_composition_round_trips_and_size_bits_equals_encode_on_synthetic_tensors(case):
    synthetic, fmt = case
    if any(r.aligned for r in fmt.ranks) and synthetic.shape[-1] > 8:
        return
    e = encode(synthetic, fmt)
    check_consistent(e, synthetic, fmt)
    out = decode(e)
    assert out.dtype == np.float16 and out.shape == synthetic.shape
    assert np.array_equal(out.view(np.uint16), np.where(synthetic == 0, 0, synthetic).view(np.uint16))


special_synthetic_vectors = st.one_of(
    st.integers(1, 3000).map(lambda n: np.zeros(n, dtype=np.float16)),  # all zeros
    st.integers(1, 300).map(lambda n: np.full(n, 1.5, dtype=np.float16)),  # no zeros
    st.sampled_from([0.0, 2.0]).map(lambda v: np.array([v], dtype=np.float16)),  # one element
    st.tuples(st.integers(0, 2000), st.integers(0, 2000)).map(  # runs far longer than any RLE width
        lambda ab: np.concatenate([np.zeros(ab[0]), [7.0], np.zeros(ab[1]), [-1.0]]).astype(np.float16)
    ),
)


@settings(max_examples=60, deadline=None)
@given(special_synthetic_vectors, st.data())
def test_every_preset_round_trips_special_synthetic_tensors(vector, data):
    rows = data.draw(st.sampled_from([v for v in (1, 2, 3) if vector.size % v == 0]))
    m = vector.reshape(rows, -1)
    # empty rows and columns
    m = np.concatenate([m, np.zeros_like(m)], axis=0)
    m = np.concatenate([m, np.zeros((m.shape[0], 1), dtype=np.float16)], axis=1)
    chw = m.reshape(1, *m.shape)
    for role, tensor in (("matrix", m), ("activations", chw)):
        for name in preset_names(role):
            overrides = {"width_bits": data.draw(st.integers(1, 6))} if name == "RLE" else {}
            e = encode_tensor(tensor, role, name, **overrides)
            p = preset(name, role, **overrides)
            check_consistent(e, p.view(tensor), p.format)
            assert np.array_equal(decode_tensor(e, role, name, tensor.shape, **overrides), tensor)


@pytest.mark.parametrize("role", ["activations", "weights"])
def test_sizing_and_encoding_leave_nothing_for_the_garbage_collector(role):
    """No reference cycle: a sized slice's masks and float16 copy are freed as soon as the call returns
    (the tiling sizes hundreds of slices per layer; a cycle kept them all until a collection ran)."""
    shape = (6, 5, 9) if role == "activations" else (4, 6, 3, 3)
    tensor = SYNTHETIC_4X4.ravel()[np.arange(np.prod(shape)) % 16].reshape(shape)
    gc.collect()
    gc.disable()
    try:
        for name in preset_names(role):
            tensor_size_bits(tensor, role, name)
            encode_tensor(tensor, role, name)
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0


# ------------------------------------------------------------------------------ corrupt streams

_corruption_rng = np.random.default_rng(7)
SYNTHETIC_CORRUPTION_TENSOR = np.where(
    _corruption_rng.random((6, 5, 9)) < 0.3, _corruption_rng.choice([1.0, -2.0, 0.25], (6, 5, 9)), 0
).astype(np.float16)

# Formats whose every metadata bit is checked by structure: a flip always changes how many payload
# values the stream holds, or breaks canonical form. In CP/UOP/RLE a flipped coordinate, offset or run can
# yield another valid stream (a value moved to another in-range, still-increasing coordinate).
ALWAYS_DETECTED = ("B", "BB")


@pytest.mark.parametrize("name", preset_names("activations"))
def test_truncated_streams_raise_and_say_where(name):
    e = encode_tensor(SYNTHETIC_CORRUPTION_TENSOR, "activations", name)
    shape = SYNTHETIC_CORRUPTION_TENSOR.shape
    for cut in (1, 2, len(e.data) // 2, len(e.data) - 1):
        truncated = dataclasses.replace(e, data=e.data[:cut])
        with pytest.raises(FormatDecodeError, match=r"at bit \d+ while decoding"):
            decode_tensor(truncated, "activations", name, shape)
        both = dataclasses.replace(e, data=e.data[:cut], n_bits=cut * 8)
        with pytest.raises(FormatDecodeError, match=r"at bit \d+"):
            decode_tensor(both, "activations", name, shape)
    longer = dataclasses.replace(e, data=e.data + b"\0", n_bits=e.n_bits + 8)
    with pytest.raises(FormatDecodeError, match="left after the payload|canonical"):
        decode_tensor(longer, "activations", name, shape)


def flip(encoded, bit):
    data = bytearray(encoded.data)
    data[bit // 8] ^= 0x80 >> (bit % 8)
    return dataclasses.replace(encoded, data=bytes(data))


@pytest.mark.parametrize("name", preset_names("activations"))
def test_metadata_bit_flips_raise_or_decode_to_a_tensor_whose_encoding_is_the_corrupt_stream(name):
    tensor = SYNTHETIC_CORRUPTION_TENSOR
    e = encode_tensor(tensor, "activations", name)
    detected = 0
    for bit in range(e.metadata_bits):
        bad = flip(e, bit)
        try:
            out = decode_tensor(bad, "activations", name, tensor.shape)
        except FormatDecodeError as error:
            assert "while decoding" in str(error)
            assert "at bit" in str(error) or "padding channel" in str(error)
            detected += 1
            continue
        assert name not in ALWAYS_DETECTED, f"flip of metadata bit {bit} went unnoticed"
        assert not np.array_equal(out, tensor)
        assert encode_tensor(out, "activations", name).data == bad.data
    if e.metadata_bits:
        assert detected > 0


def test_a_payload_flip_to_a_stored_zero_is_refused_as_non_canonical():
    e = encode_tensor(SYNTHETIC_4X4, "matrix", "B")
    # The first payload value is 1.0 = 0x3C00; clear its 4 set bits: a stored zero under a set mask bit.
    for bit in (2, 3, 4, 5):
        e = flip(e, e.metadata_bits + bit)
    with pytest.raises(FormatDecodeError, match=r"at bit \d+ while decoding (the payload|rank 0).*canonical"):
        decode_tensor(e, "matrix", "B", SYNTHETIC_4X4.shape)


def test_an_offset_out_of_bounds_is_reported_with_its_bit_and_fiber():
    e = encode_tensor(SYNTHETIC_4X4, "matrix", "CSR")
    bad = flip(e, 5 * 3 + 2)  # offsets [0,1,1,3,4]: the 4th (bits 15-19) goes 3 -> 7, a step of 6 > 4 columns
    with pytest.raises(
        FormatDecodeError,
        match=r"at bit 15 while decoding rank 0 \(UOP\) metadata: offsets of fiber 0 go from 1 to 7",
    ):
        decode(bad)
    bad = flip(e, 5 * 3 + 3)  # 3 -> 1: offsets [0,1,1,1,4] are monotone, but row 3 then lists column 3 twice
    with pytest.raises(FormatDecodeError, match=r"rank 1 \(CP\).*coordinate 3 of fiber 1 is not increasing"):
        decode(bad)
