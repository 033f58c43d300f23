"""Bit streams over bytes, most significant bit first, with an exact bit count.

:class:`BitWriter` appends unsigned fields (one at a time or many at once, vectorised with numpy) and
returns the bytes plus the number of meaningful bits; the last byte is padded with zero bits.
:class:`BitReader` reads them back; reading past the end raises :class:`FormatDecodeError` naming the bit
position and what was being decoded (the decoder sets :attr:`BitReader.context` as it goes).
"""

from __future__ import annotations

import numpy as np

from sparsesim.errors import SparsesimError

#: Widest field a writer or reader handles (fields travel as int64 inside numpy).
MAX_FIELD_BITS = 62
#: Fields converted at a time by :func:`varfields_to_bits` (bounds its temporaries to about 128 MB).
_CHUNK_FIELDS = 1 << 20


class FormatDecodeError(SparsesimError, ValueError):
    """A bit stream is not a valid encoding of any tensor in its format: truncated, corrupt or
    non-canonical. The message says at which bit and in which rank (and fiber) decoding failed."""


def _check_width(width: int) -> None:
    if not 0 <= width <= MAX_FIELD_BITS:
        raise ValueError(f"field width must be between 0 and {MAX_FIELD_BITS} bits, got {width}")


def fields_to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """MSB-first bits (uint8 0/1) of unsigned ``values``, ``width`` bits each, concatenated.

    Raises ValueError if a value is negative or does not fit.
    """
    _check_width(width)
    values = np.asarray(values)
    if values.size == 0 or width == 0:
        if width == 0 and values.size and np.any(values != 0):
            raise ValueError("a 0-bit field can only hold 0")
        return np.zeros(0, dtype=np.uint8)
    if values.dtype == np.bool_:
        if width != 1:
            values = values.astype(np.int64)
        else:
            return values.astype(np.uint8).ravel()
    values = values.astype(np.int64, copy=False).ravel()
    if values.min() < 0 or (values.max() >> width) != 0:
        raise ValueError(f"field value out of range for {width} bits: min {values.min()}, max {values.max()}")
    # Align each value to the top of a 32- or 64-bit big-endian word, unpack, keep the first `width` bits.
    word_bits = 32 if width <= 32 else 64
    aligned = values.astype(np.uint64) << np.uint64(word_bits - width)
    words = aligned.astype(">u4" if word_bits == 32 else ">u8")
    bits = np.unpackbits(words.view(np.uint8)).reshape(len(values), word_bits)
    return bits[:, :width].ravel()


def varfields_to_bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """MSB-first bits of unsigned ``values[i]`` in ``widths[i]`` bits each, concatenated."""
    values = np.asarray(values, dtype=np.int64).ravel()
    widths = np.asarray(widths, dtype=np.int64).ravel()
    if values.shape != widths.shape:
        raise ValueError("values and widths must have the same length")
    if widths.size == 0:
        return np.zeros(0, dtype=np.uint8)
    if widths.min() < 0 or widths.max() > MAX_FIELD_BITS:
        raise ValueError(f"field widths must be between 0 and {MAX_FIELD_BITS} bits")
    if values.min() < 0 or np.any((values >> widths) != 0):
        raise ValueError("a field value does not fit its width")
    # As fields_to_bits: each value aligned to the top of a 32- or 64-bit big-endian word and unpacked, one
    # row per field; the first widths[i] bits of row i are kept (row-major order is the stream's order).
    # Chunks of fields bound the temporaries (a byte per bit of the words, not int64 per bit of the stream).
    out = np.empty(int(widths.sum()), dtype=np.uint8)
    written = 0
    for start in range(0, len(values), _CHUNK_FIELDS):
        chunk_values = values[start : start + _CHUNK_FIELDS]
        chunk_widths = widths[start : start + _CHUNK_FIELDS]
        word_bits, word, unsigned = (
            (32, ">u4", np.uint32) if chunk_widths.max() <= 32 else (64, ">u8", np.uint64)
        )
        aligned = chunk_values.astype(unsigned) << (word_bits - chunk_widths).astype(unsigned)
        bits = np.unpackbits(aligned.astype(word).view(np.uint8)).reshape(len(chunk_values), word_bits)
        kept = bits[np.arange(word_bits) < chunk_widths[:, None]]
        out[written : written + kept.size] = kept
        written += kept.size
    return out


class BitWriter:
    """Append-only bit stream. ``getvalue()`` returns the bytes; ``n_bits`` the meaningful bit count."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._n_bits = 0

    @property
    def n_bits(self) -> int:
        """Bits written so far."""
        return self._n_bits

    def write_bits(self, bits: np.ndarray) -> None:
        """Append 0/1 (or bool) values, one bit each."""
        chunk = np.asarray(bits).astype(np.uint8, copy=False).ravel()
        if chunk.size and chunk.max() > 1:
            raise ValueError("write_bits takes 0/1 values")
        self._chunks.append(chunk)
        self._n_bits += chunk.size

    def write(self, value: int, width: int) -> None:
        """Append one unsigned field of ``width`` bits."""
        self.write_bits(fields_to_bits(np.array([value], dtype=np.int64), width))

    def write_fields(self, values: np.ndarray, width: int | np.ndarray) -> None:
        """Append unsigned fields: all of ``width`` bits (an int), or ``width[i]`` bits each (an array)."""
        if np.ndim(width) == 0:
            self.write_bits(fields_to_bits(values, int(width)))
        else:
            self.write_bits(varfields_to_bits(values, np.asarray(width)))

    def getvalue(self) -> bytes:
        """The stream as bytes, MSB first, the last byte padded with zero bits."""
        if not self._chunks:
            return b""
        return np.packbits(np.concatenate(self._chunks)).tobytes()


class BitReader:
    """Reads a stream written by :class:`BitWriter`.

    ``n_bits`` is the number of meaningful bits; if ``data`` holds fewer, the stream ends where the data
    does (a truncated stream). :attr:`context` names what is being decoded, for error messages.
    """

    def __init__(self, data: bytes, n_bits: int | None = None) -> None:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        available = bits.size if n_bits is None else min(int(n_bits), bits.size)
        self.bits: np.ndarray = bits[:available]
        self.declared_bits = bits.size if n_bits is None else int(n_bits)
        self.pos = 0
        self.context = "the stream"

    @property
    def n_bits(self) -> int:
        """Bits available to read (the declared count, or fewer if the data is truncated)."""
        return int(self.bits.size)

    @property
    def remaining(self) -> int:
        """Bits left after the current position."""
        return self.n_bits - self.pos

    def fail(self, message: str, bit: int | None = None) -> FormatDecodeError:
        """A :class:`FormatDecodeError` for ``message`` at ``bit`` (default: the current position)."""
        where = self.pos if bit is None else bit
        return FormatDecodeError(f"at bit {where} while decoding {self.context}: {message}")

    def _need(self, count: int) -> None:
        if count > self.remaining:
            truncated = (
                " (the data is shorter than its declared bit count)"
                if (self.n_bits < self.declared_bits)
                else ""
            )
            raise self.fail(f"needs {count} more bits but the stream ends at bit {self.n_bits}{truncated}")

    def read_bits(self, count: int) -> np.ndarray:
        """The next ``count`` bits as a bool array."""
        self._need(count)
        out = self.bits[self.pos : self.pos + count].astype(bool)
        self.pos += count
        return out

    def read(self, width: int) -> int:
        """The next unsigned field of ``width`` bits."""
        return int(self.read_fields(1, width)[0])

    def peek_fields(self, count: int, width: int) -> np.ndarray:
        """The next ``count`` fields of ``width`` bits as int64, without advancing."""
        _check_width(width)
        self._need(count * width)
        if count == 0 or width == 0:
            return np.zeros(count, dtype=np.int64)
        chunk = self.bits[self.pos : self.pos + count * width].reshape(count, width)
        word_bits = 32 if width <= 32 else 64
        padded = np.zeros((count, word_bits), dtype=np.uint8)
        padded[:, word_bits - width :] = chunk
        words = np.packbits(padded, axis=1).view(">u4" if word_bits == 32 else ">u8")
        return words.ravel().astype(np.int64)

    def read_fields(self, count: int, width: int) -> np.ndarray:
        """The next ``count`` unsigned fields of ``width`` bits each, as int64."""
        out = self.peek_fields(count, width)
        self.pos += count * width
        return out
