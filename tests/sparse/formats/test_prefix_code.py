"""Prefix codes: Elias-gamma, Kraft sums and the Sardinas–Patterson test."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim.sparse.formats import (
    FormatDecodeError,
    elias_gamma_codeword,
    elias_gamma_decode,
    elias_gamma_encode,
    elias_gamma_lengths,
    is_prefix_free,
    is_uniquely_decodable,
    kraft_sum,
)


def test_the_lectures_example_code_is_not_uniquely_decodable():
    code = {"r0": "0", "r1": "1", "r2": "00", "r3": "01"}
    assert kraft_sum(len(w) for w in code.values()) == Fraction(3, 2)
    assert not is_prefix_free(code.values())
    assert not is_uniquely_decodable(code.values())


def test_a_fixed_length_code_is_uniquely_decodable():
    code = ["00", "01", "10", "11"]
    assert kraft_sum(len(w) for w in code) == 1
    assert is_prefix_free(code) and is_uniquely_decodable(code)


def test_a_suffix_code_is_uniquely_decodable_without_being_prefix_free():
    code = ["1", "10", "100"]  # reversed prefix code: decodable from the right
    assert not is_prefix_free(code)
    assert is_uniquely_decodable(code)


def test_sardinas_patterson_finds_a_subtle_ambiguity():
    # 010 = 0 + 10 = 01 + 0
    assert not is_uniquely_decodable(["0", "01", "10"])
    assert not is_uniquely_decodable(["1", "1"])  # duplicate codewords


def test_elias_gamma_codewords_for_1_to_1000_are_prefix_free_with_kraft_sum_at_most_one():
    words = [elias_gamma_codeword(x) for x in range(1, 1001)]
    assert is_prefix_free(words)
    assert is_uniquely_decodable(words[:64])
    assert kraft_sum(len(w) for w in words) <= 1


def test_elias_gamma_known_codewords_and_vectorised_lengths():
    assert [elias_gamma_codeword(x) for x in (1, 2, 3, 4, 5, 9)] == [
        "1",
        "010",
        "011",
        "00100",
        "00101",
        "0001001",
    ]
    values = np.arange(1, 5000)
    assert elias_gamma_lengths(values).tolist() == [len(elias_gamma_codeword(int(v))) for v in values]
    assert elias_gamma_lengths(np.array([2**40, 2**40 - 1])).tolist() == [81, 79]


@given(st.lists(st.integers(1, 10**9), max_size=50))
def test_elias_gamma_round_trips(values):
    assert elias_gamma_decode(elias_gamma_encode(values)) == values


def test_a_truncated_elias_gamma_stream_says_where():
    with pytest.raises(FormatDecodeError, match="at bit 1"):
        elias_gamma_decode("1" + "0010")


def test_codewords_must_be_binary_strings():
    with pytest.raises(ValueError, match="codewords"):
        is_prefix_free(["0", "2"])
    with pytest.raises(ValueError, match="positive"):
        elias_gamma_codeword(0)
