"""Prefix codes: Elias-gamma, the Kraft sum, and unique decodability (Sardinas–Patterson).

Elias-gamma codes a positive integer ``x`` as ``floor(log2 x)`` zeros followed by ``x`` in binary
(``floor(log2 x) + 1`` bits, leading 1): ``1 -> 1``, ``2 -> 010``, ``5 -> 00101``. It is prefix-free, so a
concatenation decodes without separators; the run-length format ``RLE`` with ``run_code="elias_gamma"``
codes each run ``r`` as ``gamma(r + 1)``. Written as one field, ``gamma(x)`` is simply ``x`` in
``2 * floor(log2 x) + 1`` bits, which is how the encoder emits it.

The code-theory helpers take codewords as strings of ``'0'``/``'1'``.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import numpy as np

from sparsesim.sparse.formats.bitstream import FormatDecodeError


def floor_log2(values: np.ndarray) -> np.ndarray:
    """``floor(log2 x)`` of positive integers, exactly (int64), vectorised."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and values.min() < 1:
        raise ValueError(f"floor_log2 takes positive integers, got {values.min()}")
    if values.size and values.max() >= 2**53:
        raise ValueError("floor_log2 handles integers below 2**53")
    return (np.frexp(values.astype(np.float64))[1] - 1).astype(np.int64)


def elias_gamma_lengths(values: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias-gamma codeword of each positive integer: ``2 * floor(log2 x) + 1``."""
    return 2 * floor_log2(values) + 1


def elias_gamma_codeword(value: int) -> str:
    """The Elias-gamma codeword of a positive integer, as a string of bits."""
    if int(value) < 1:
        raise ValueError(f"Elias-gamma codes positive integers, got {value}")
    binary = format(int(value), "b")
    return "0" * (len(binary) - 1) + binary


def elias_gamma_encode(values: Iterable[int]) -> str:
    """The concatenated codewords of ``values``."""
    return "".join(elias_gamma_codeword(v) for v in values)


def elias_gamma_decode(bits: str) -> list[int]:
    """Decode a concatenation of Elias-gamma codewords; a truncated last codeword raises
    :class:`FormatDecodeError` with its bit position."""
    out: list[int] = []
    pos = 0
    while pos < len(bits):
        zeros = 0
        while pos + zeros < len(bits) and bits[pos + zeros] == "0":
            zeros += 1
        end = pos + 2 * zeros + 1
        if end > len(bits):
            raise FormatDecodeError(
                f"at bit {pos} while decoding an Elias-gamma codeword: it needs {end - pos} bits, "
                f"the string ends at bit {len(bits)}"
            )
        out.append(int(bits[pos + zeros : end], 2))
        pos = end
    return out


def kraft_sum(lengths: Iterable[int], alphabet_size: int = 2) -> Fraction:
    """Exact Kraft sum ``sum(alphabet_size ** -length)``. A uniquely decodable code has a sum ≤ 1
    (McMillan); a prefix code with these lengths exists iff it is ≤ 1 (Kraft)."""
    return sum((Fraction(1, alphabet_size ** int(n)) for n in lengths), Fraction(0))


def _check_codewords(codewords: Iterable[str]) -> list[str]:
    words = list(codewords)
    for w in words:
        if not w or set(w) - {"0", "1"}:
            raise ValueError(f"codewords must be non-empty strings of '0'/'1', got {w!r}")
    return words


def is_prefix_free(codewords: Iterable[str]) -> bool:
    """True if no codeword is a prefix of another (duplicates count as prefixes)."""
    words = sorted(_check_codewords(codewords))
    # After sorting, a word that is a prefix of some other word is a prefix of its successor.
    return all(not b.startswith(a) for a, b in zip(words, words[1:], strict=False))


def is_uniquely_decodable(codewords: Iterable[str]) -> bool:
    """Sardinas–Patterson test: True iff every concatenation of codewords parses in one way only.

    Builds the sets of dangling suffixes ``S1`` (suffixes ``w`` with ``a + w == b`` for codewords
    ``a != b``) and ``S(i+1)`` (``w`` with ``a + w == s`` or ``s + w == a``, ``a`` a codeword, ``s`` in
    ``S(i)``); the code is uniquely decodable iff no dangling suffix is itself a codeword. The suffixes are
    finitely many (all are suffixes of codewords), so the search ends.
    """
    words = _check_codewords(codewords)
    code = set(words)
    if len(code) != len(words):
        return False
    frontier = {b[len(a) :] for a in code for b in code if a != b and b.startswith(a)}
    seen: set[str] = set()
    while frontier:
        if frontier & code:
            return False
        seen |= frontier
        following: set[str] = set()
        for s in frontier:
            for a in code:
                if a.startswith(s) and a != s:
                    following.add(a[len(s) :])
                elif s.startswith(a) and s != a:
                    following.add(s[len(a) :])
        frontier = following - seen
    return True
