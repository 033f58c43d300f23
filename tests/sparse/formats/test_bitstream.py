"""Bit streams: MSB first, exact bit counts, typed errors past the end."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim.sparse.formats import BitReader, BitWriter, FormatDecodeError


def test_fields_are_written_msb_first_and_the_last_byte_is_zero_padded():
    w = BitWriter()
    w.write(0b101, 3)
    w.write_fields(np.array([1, 0, 3]), 2)
    assert w.n_bits == 9
    assert w.getvalue() == bytes([0b10101001, 0b10000000])


@given(st.lists(st.tuples(st.integers(1, 62), st.integers(0, 2**62 - 1)), max_size=40))
def test_fields_round_trip_one_at_a_time_and_vectorised(fields):
    fields = [(width, value % (1 << width)) for width, value in fields]
    w = BitWriter()
    for width, value in fields:
        w.write(value, width)
    v = BitWriter()
    if fields:
        v.write_fields(np.array([x for _, x in fields]), np.array([width for width, _ in fields]))
    assert w.getvalue() == v.getvalue() and w.n_bits == v.n_bits == sum(width for width, _ in fields)
    r = BitReader(w.getvalue(), w.n_bits)
    assert [r.read(width) for width, _ in fields] == [x for _, x in fields]
    assert r.remaining == 0


@given(st.lists(st.tuples(st.integers(0, 62), st.integers(0, 2**62 - 1)), min_size=1, max_size=40))
def test_vectorised_fields_split_into_chunks_give_the_same_stream(fields):
    """varfields_to_bits converts a bounded number of fields at a time; the chunks join seamlessly, 0-bit
    fields included."""
    from sparsesim.sparse.formats import bitstream

    fields = [(width, value % (1 << width)) for width, value in fields]
    values = np.array([x for _, x in fields])
    widths = np.array([width for width, _ in fields])
    whole = bitstream.varfields_to_bits(values, widths)
    chunk_fields = bitstream._CHUNK_FIELDS
    bitstream._CHUNK_FIELDS = 3
    try:
        chunked = bitstream.varfields_to_bits(values, widths)
    finally:
        bitstream._CHUNK_FIELDS = chunk_fields
    one_at_a_time = [bitstream.fields_to_bits(np.array([x]), width) for width, x in fields]
    assert np.array_equal(chunked, whole) and np.array_equal(whole, np.concatenate(one_at_a_time))
    assert whole.dtype == np.uint8 and whole.size == widths.sum()


def test_reading_past_the_end_raises_a_format_decode_error_with_the_bit_position():
    w = BitWriter()
    w.write_fields(np.arange(4), 3)
    r = BitReader(w.getvalue(), w.n_bits)
    r.context = "rank 0 (CP) metadata"
    assert r.read_fields(3, 3).tolist() == [0, 1, 2]
    with pytest.raises(FormatDecodeError, match=r"at bit 9 while decoding rank 0 \(CP\) metadata"):
        r.read_fields(2, 3)
    assert issubclass(FormatDecodeError, ValueError)


def test_a_value_too_wide_for_its_field_is_refused():
    with pytest.raises(ValueError, match="out of range"):
        BitWriter().write(8, 3)
