"""Encode a tensor to a real bit stream in a :class:`TensorFormat`, decode it back, or count its bits.

Stream layout: the metadata of rank 0 (all its fibers, in order), then that of rank 1, ..., then the
payload (the leaf's stored values, float16 bit patterns, in storage order). Each fiber's fields are
contiguous, in coordinate order (a CP occupancy before its coordinates, an RLE terminal run after its
entries). Hardware often interleaves a value with its metadata (Eyeriss's run/level pairs); the bit
count is the same, and separate metadata and payload streams are what Sparseloop models.

Zeros: ``-0.0`` is a zero for sparsity (it is not stored by compressed formats) and every zero decodes
as ``+0.0`` (``U`` stores zeros as ``0x0000``). So ``decode(encode(x)) == x`` holds with ``==`` semantics
and bit for bit on every nonzero value.

Checks on decoding: every read past the end, every offset that is not monotone or out of bounds, every
coordinate out of range or not increasing, every run overrunning its fiber, every fiber whose entry count
disagrees with its parent's offsets, every non-finite payload value, unread bits at the end and nonzero
padding bits all raise :class:`FormatDecodeError` naming the bit and the rank (and fiber). Finally the
decoded tensor is re-encoded and must reproduce the stream exactly (so a non-canonical stream, e.g. a
bitmask bit set over an all-zero subfiber or a stored zero, is refused with the first differing bit).
Payload bits carry no redundancy: a flipped bit that turns one nonzero float16 into another nonzero
finite float16 decodes to a valid-looking, wrong tensor. Nor do all metadata bits: in ``B`` every flip
changes the number of stored values, so it is always caught, but a CP coordinate, UOP offset or RLE run
can flip to another value that is still in range and ordered and moves a nonzero elsewhere (the stream is
then the canonical encoding of that other tensor). Nothing short of a checksum can catch those.
Fibers in messages are numbered among the fibers a rank actually stores (rank 1 of CSR: the k-th
non-empty row), coordinates within their fiber.

:func:`size_bits` computes the same ``(payload_bits, metadata_bits)`` as :func:`encode` from the nonzero
structure alone, vectorised (numpy over the nonzeros, no per-element Python loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sparsesim.sparse.formats.bitstream import BitReader, BitWriter, FormatDecodeError
from sparsesim.sparse.formats.prefix_code import elias_gamma_lengths
from sparsesim.sparse.formats.tensor_format import RankFormat, TensorFormat

VALUE_BITS = 16
_NEGATIVE_ZERO = 0x8000
_EXPONENT_MASK = 0x7C00


@dataclass(frozen=True)
class EncodedTensor:
    """A tensor encoded in ``format``: ``data`` holds ``n_bits`` meaningful bits (MSB first, the last
    byte zero-padded); ``n_bits == payload_bits + metadata_bits``; ``rank_metadata_bits[i]`` is rank
    ``i``'s share of the metadata; ``shape`` is the encoded array's shape (the preset's view)."""

    data: bytes
    n_bits: int
    payload_bits: int
    metadata_bits: int
    shape: tuple[int, ...]
    format: TensorFormat
    rank_metadata_bits: tuple[int, ...]


# --------------------------------------------------------------------------------------------- helpers


def _not_finite(half: np.ndarray) -> np.ndarray:
    """Where a float16 array holds an infinity or a NaN (all exponent bits set): an integer test on the bit
    patterns, an order of magnitude faster than ``np.isfinite`` on float16 (the tiling sizes hundreds of
    slices per layer)."""
    return (half.view(np.uint16) & _EXPONENT_MASK) == _EXPONENT_MASK


FLOAT16_MAX = float(np.finfo(np.float16).max)


def stored_words(values: np.ndarray) -> np.ndarray:
    """The float16 words a machine of 16-bit words stores for computed ``values`` (outputs leaving the PEs):
    each rounded to the nearest float16 and saturated at +-65504, the largest finite one, as saturating
    hardware does (a value beyond the range keeps its sign and stays nonzero, so formats size it as a
    nonzero). Values that are already float16 are returned as they are.

    Raises ``ValueError`` on a NaN, which no word represents.
    """
    array = np.asarray(values)
    if array.dtype == np.float16:
        return array
    with np.errstate(over="ignore", invalid="ignore"):  # no float32 copy: cast, then saturate the overflows
        words = array.astype(np.float16)
    beyond = _not_finite(words)
    if beyond.any():
        if np.isnan(words[beyond]).any():
            raise ValueError("NaN values cannot be stored as 16-bit words")
        words[beyond] = np.copysign(FLOAT16_MAX, array[beyond])
    return words


def _validated(array: np.ndarray, fmt: TensorFormat) -> np.ndarray:
    """The array as float16, after checking rank count, emptiness and exact float16 representability."""
    if not isinstance(fmt, TensorFormat):
        raise ValueError(f"expected a TensorFormat, got {type(fmt).__name__}")
    a = np.asarray(array)
    if a.ndim != len(fmt.ranks):
        raise ValueError(
            f"format {fmt.name!r} has {len(fmt.ranks)} rank(s), the array has {a.ndim} dimension(s) "
            f"(shape {a.shape}); choose a view with one dimension per rank"
        )
    if a.size == 0:
        raise ValueError(
            f"array of shape {a.shape} is empty; formats encode tensors with at least one element"
        )
    if a.dtype.kind not in "fiub":
        raise ValueError(f"array dtype must be numeric, got {a.dtype}")
    if a.dtype == np.float16:
        h = a
        bad = _not_finite(h)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            h = a.astype(np.float16)
            back = h.astype(a.dtype) if a.dtype.kind == "f" else h.astype(np.float64)
            orig = a if a.dtype.kind == "f" else a.astype(np.float64)
            bad = (back != orig) | _not_finite(h)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"value {a[index]!r} at index {index} is not a finite, exactly float16-representable number; "
            f"the payload is the float16 bit pattern (value_bits=16)"
        )
    return h


def _resolve_width(rank: RankFormat, default: int, largest: int, where: str) -> int:
    width = default if rank.width_bits is None else rank.width_bits
    if largest >> width:
        raise ValueError(
            f"{where}: {rank.kind} width_bits={width} cannot hold {largest} "
            f"(needs {largest.bit_length()} bits)"
        )
    return width


def _row_gaps(rows: np.ndarray, cols: np.ndarray, n_fibers: int, extent: int):
    """Per nonzero, the zeros since the previous nonzero of its fiber (or the fiber's start); per fiber,
    the nonzero count and the trailing zeros."""
    counts = np.bincount(rows, minlength=n_fibers).astype(np.int64)
    prev = np.empty_like(cols)
    if cols.size:
        prev[0] = -1
        prev[1:] = cols[:-1]
        prev[1:][rows[1:] != rows[:-1]] = -1
    gaps = cols - prev - 1
    last = np.full(n_fibers, -1, dtype=np.int64)
    has = counts > 0
    last[has] = cols[(np.cumsum(counts) - 1)[has]]
    trailing = extent - 1 - last
    return counts, gaps, trailing


def _per_row_sum(rows: np.ndarray, values: np.ndarray, n_fibers: int) -> np.ndarray:
    out = np.zeros(n_fibers, dtype=np.int64)
    np.add.at(out, rows, values)
    return out


@dataclass
class _Rank:
    """What one rank stores for the fibers it was given."""

    n_fibers: int
    extent: int
    entries: np.ndarray  # payload fields (values / subfibers) per fiber
    metadata_bits: int
    rows: np.ndarray | None = None  # stored entries (fiber index, coordinate); None: every coordinate
    cols: np.ndarray | None = None
    fields: list[tuple[np.ndarray, int | np.ndarray]] = field(default_factory=list)
    width: int = 0
    slots: tuple[np.ndarray, np.ndarray] | None = None  # aligned CP: (fiber, slot) of each nonzero


def _analyse_rank(
    nz: np.ndarray,
    rank: RankFormat,
    has_count: bool,
    uop_bound: int,
    positions: bool,
    fields: bool,
    where: str,
) -> _Rank:
    n_fibers, extent = nz.shape
    kind = rank.kind
    if kind == "U":
        return _Rank(n_fibers, extent, np.full(n_fibers, extent, dtype=np.int64), 0)
    if kind == "CP" and rank.aligned and not (fields or positions):
        # Aligned CP keeps every slot and an offset per slot: its size follows from the shape alone, so
        # sizing (the tiling search's hot path, for Cnvlutin's bricks) need not find the nonzeros.
        width = _resolve_width(rank, max(1, (extent - 1).bit_length()), extent - 1, where)
        return _Rank(n_fibers, extent, np.full(n_fibers, extent, dtype=np.int64), nz.size * width)
    rows, cols = np.nonzero(nz)
    rows = rows.astype(np.int64, copy=False)
    cols = cols.astype(np.int64, copy=False)
    if kind == "B":
        out = _Rank(
            n_fibers, extent, np.bincount(rows, minlength=n_fibers).astype(np.int64), nz.size, rows, cols
        )
        if fields:
            out.fields = [(nz.ravel(), 1)]
        return out
    if kind == "UOP":
        width = _resolve_width(rank, max(1, uop_bound.bit_length()), 0, where)
        counts = np.bincount(rows, minlength=n_fibers).astype(np.int64)
        return _Rank(n_fibers, extent, counts, n_fibers * (extent + 1) * width, rows, cols, width=width)
    if kind == "CP":
        width = _resolve_width(rank, max(1, (extent - 1).bit_length()), extent - 1, where)
        counts = np.bincount(rows, minlength=n_fibers).astype(np.int64)
        if rank.aligned:
            out = _Rank(
                n_fibers, extent, np.full(n_fibers, extent, dtype=np.int64), nz.size * width, rows, cols
            )
            if fields or positions:
                slot = np.arange(rows.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
                out.slots = (rows, slot)
                offsets = np.zeros((n_fibers, extent), dtype=np.int64)
                offsets[rows, slot] = cols
                out.fields = [(offsets.ravel(), width)]
            return out
        count_width = extent.bit_length()
        meta = rows.size * width + (n_fibers * count_width if has_count else 0)
        out = _Rank(n_fibers, extent, counts, meta, rows, cols)
        if fields:
            if has_count:
                keys = np.concatenate(
                    [np.arange(n_fibers, dtype=np.int64) * (extent + 1), rows * (extent + 1) + cols + 1]
                )
                order = np.argsort(keys, kind="stable")
                values = np.concatenate([counts, cols])[order]
                widths = np.concatenate(
                    [
                        np.full(n_fibers, count_width, dtype=np.int64),
                        np.full(rows.size, width, dtype=np.int64),
                    ]
                )[order]
                out.fields = [(values, widths)]
            else:
                out.fields = [(cols, width)]
        return out
    # RLE
    counts, gaps, trailing = _row_gaps(rows, cols, n_fibers, extent)
    all_fibers = np.arange(n_fibers, dtype=np.int64)
    if rank.run_code == "elias_gamma":
        lengths = elias_gamma_lengths(gaps + 1)
        terminal = trailing > 0
        term_lengths = elias_gamma_lengths(trailing[terminal] + 1)
        out = _Rank(n_fibers, extent, counts, int(lengths.sum() + term_lengths.sum()), rows, cols)
        if fields:
            keys = np.concatenate([rows * (extent + 1) + cols, all_fibers[terminal] * (extent + 1) + extent])
            order = np.argsort(keys, kind="stable")
            values = np.concatenate([gaps + 1, trailing[terminal] + 1])[order]
            out.fields = [(values, np.concatenate([lengths, term_lengths])[order])]
        return out
    width = int(rank.width_bits)  # type: ignore[arg-type]  # validated: fixed RLE has a width
    span = 1 << width  # a padding entry covers 2**w - 1 skipped zeros plus its own explicit zero
    gap_pads = gaps // span
    trail_pads = trailing // span
    terminal = trailing % span > 0
    entries = counts + _per_row_sum(rows, gap_pads, n_fibers) + trail_pads
    out = _Rank(
        n_fibers, extent, entries, int((entries.sum() + terminal.sum()) * width), rows, cols, width=width
    )
    if not (positions or fields):
        return out
    pad_starts = np.concatenate([cols - gaps, extent - trailing])
    pad_rows = np.concatenate([rows, all_fibers])
    pad_counts = np.concatenate([gap_pads, trail_pads])
    owner = np.repeat(np.arange(pad_counts.size), pad_counts)
    nth = (
        np.arange(owner.size, dtype=np.int64) - np.repeat(np.cumsum(pad_counts) - pad_counts, pad_counts) + 1
    )
    pad_cols = pad_starts[owner] + nth * span - 1
    keys = np.concatenate(
        [
            rows * (extent + 1) + cols,
            pad_rows[owner] * (extent + 1) + pad_cols,
            all_fibers[terminal] * (extent + 1) + extent,
        ]
    )
    runs = np.concatenate(
        [gaps % span, np.full(owner.size, span - 1, dtype=np.int64), trailing[terminal] % span]
    )
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    is_stored = (sorted_keys % (extent + 1)) != extent
    out.rows = sorted_keys[is_stored] // (extent + 1)
    out.cols = sorted_keys[is_stored] % (extent + 1)
    if fields:
        out.fields = [(runs[order], width)]
    return out


@dataclass
class _Analysis:
    ranks: list[_Rank]
    payload_bits: int
    payload: np.ndarray | None  # uint16 bit patterns in storage order


def _nonempty_at(values: np.ndarray, i: int, cache: dict[int, np.ndarray]) -> np.ndarray:
    """Whether each coordinate of rank ``i`` holds a nonzero below it (computed once per rank, in ``cache``).

    A module function rather than a closure inside :func:`_analyse`: a recursive closure refers to itself,
    and that reference cycle would keep the masks and the values alive until the garbage collector runs.
    """
    if i not in cache:
        below = values != 0 if i == values.ndim - 1 else _nonempty_at(values, i + 1, cache).any(axis=-1)
        cache[i] = np.asarray(below)
    return cache[i]


def _analyse(values: np.ndarray, fmt: TensorFormat, want_fields: bool) -> _Analysis:
    shape = values.shape
    depth = len(shape)
    nonempty: dict[int, np.ndarray] = {}

    fibers: np.ndarray | None = None  # flat ids of the current rank's fibers; None: all of them
    ranks: list[_Rank] = []
    for i, rank in enumerate(fmt.ranks):
        extent = shape[i]
        above = math.prod(shape[:i])
        leaf = i == depth - 1
        n_fibers = above if fibers is None else fibers.size
        if rank.kind == "U" or (rank.kind == "CP" and rank.aligned and leaf and not want_fields):
            # Their size follows from the shape (see _analyse_rank): no need to find the nonzeros.
            nz = np.broadcast_to(np.False_, (n_fibers, extent))
        else:
            grid = _nonempty_at(values, i, nonempty).reshape(above, extent)
            nz = grid if fibers is None else grid[fibers]
        has_count = i == 0 or fmt.ranks[i - 1].kind != "UOP"
        uop_bound = math.prod(shape[: i + 2])
        where = f"format {fmt.name!r} rank {i}"
        result = _analyse_rank(nz, rank, has_count, uop_bound, not leaf or want_fields, want_fields, where)
        ranks.append(result)
        if not leaf:
            if result.rows is None or result.cols is None:
                if fibers is not None:
                    fibers = (fibers[:, None] * extent + np.arange(extent)).ravel()
            else:
                base = result.rows if fibers is None else fibers[result.rows]
                fibers = base * extent + result.cols
    # UOP offsets need the entries of the rank below.
    for i, rank in enumerate(fmt.ranks[:-1]):
        if rank.kind != "UOP":
            continue
        upper, lower = ranks[i], ranks[i + 1]
        largest = int(lower.entries.sum())
        _resolve_width(RankFormat("UOP", upper.width), upper.width, largest, f"format {fmt.name!r} rank {i}")
        if want_fields:
            assert upper.rows is not None and upper.cols is not None
            counts = np.zeros(upper.n_fibers * upper.extent, dtype=np.int64)
            counts[upper.rows * upper.extent + upper.cols] = lower.entries
            cumulative = np.concatenate([[0], np.cumsum(counts)])
            index = np.arange(upper.n_fibers)[:, None] * upper.extent + np.arange(upper.extent + 1)
            upper.fields = [(cumulative[index].ravel(), upper.width)]
    leaf_rank = ranks[-1]
    payload_bits = int(leaf_rank.entries.sum()) * VALUE_BITS
    payload = None
    if want_fields:
        bits = values.view(np.uint16).reshape(-1, shape[-1])
        if fibers is not None:
            bits = bits[fibers]
        if fmt.ranks[-1].aligned:
            assert leaf_rank.slots is not None
            slots = np.zeros(bits.shape, dtype=np.uint16)
            slots[leaf_rank.slots] = bits[leaf_rank.rows, leaf_rank.cols]
            payload = slots.ravel()
        elif leaf_rank.rows is None or leaf_rank.cols is None:
            payload = bits.ravel()
        else:
            payload = bits[leaf_rank.rows, leaf_rank.cols]
        payload = np.where(payload == _NEGATIVE_ZERO, 0, payload).astype(np.int64)
    return _Analysis(ranks, payload_bits, payload)


# ------------------------------------------------------------------------------------------ public API


def size_bits(array: np.ndarray, fmt: TensorFormat) -> tuple[int, int]:
    """``(payload_bits, metadata_bits)`` of ``array`` in ``fmt``, equal to :func:`encode`'s, computed from
    the nonzero structure alone (vectorised). Validates the array as :func:`encode` does."""
    values = _validated(array, fmt)
    analysis = _analyse(values, fmt, want_fields=False)
    return analysis.payload_bits, sum(r.metadata_bits for r in analysis.ranks)


def encode(array: np.ndarray, fmt: TensorFormat) -> EncodedTensor:
    """Encode ``array`` (one dimension per rank of ``fmt``, values exactly representable in float16) into
    a bit stream. Raises ValueError on a wrong number of dimensions, an empty array, a value that is not
    a finite float16, or a metadata field too narrow for the data (an explicit ``width_bits``)."""
    values = _validated(array, fmt)
    analysis = _analyse(values, fmt, want_fields=True)
    writer = BitWriter()
    rank_bits = []
    for i, rank in enumerate(analysis.ranks):
        start = writer.n_bits
        for field_values, width in rank.fields:
            writer.write_fields(field_values, width)
        written = writer.n_bits - start
        if written != rank.metadata_bits:  # an internal inconsistency, never the user's fault
            raise RuntimeError(f"rank {i}: wrote {written} metadata bits, counted {rank.metadata_bits}")
        rank_bits.append(written)
    assert analysis.payload is not None
    writer.write_fields(analysis.payload, VALUE_BITS)
    metadata_bits = sum(rank_bits)
    return EncodedTensor(
        data=writer.getvalue(),
        n_bits=writer.n_bits,
        payload_bits=analysis.payload_bits,
        metadata_bits=metadata_bits,
        shape=tuple(int(s) for s in values.shape),
        format=fmt,
        rank_metadata_bits=tuple(rank_bits),
    )


# ------------------------------------------------------------------------------------------ decoding


def _check_expected(reader: BitReader, entries: np.ndarray, expected: np.ndarray | None, i: int, parent: str):
    if expected is None:
        return
    bad = np.flatnonzero(entries != expected)
    if bad.size:
        f = int(bad[0])
        raise reader.fail(
            f"fiber {f} of rank {i} holds {int(entries[f])} entries but the offsets of rank {i - 1} "
            f"({parent}) say {int(expected[f])}"
        )


def _decode_rle_fixed(reader: BitReader, n_fibers: int, extent: int, width: int, i: int, label: str):
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for f in range(n_fibers):
        reader.context = f"rank {i} ({label}) metadata, fiber {f}"
        start = reader.pos
        available = min(extent + 1, reader.remaining // width)
        runs = reader.peek_fields(available, width)
        ends = np.cumsum(runs + 1)  # coordinate just after each entry's payload
        last = int(np.searchsorted(ends, extent))
        if last == available:
            reader.pos += available * width
            raise reader.fail(f"the stream ends before fiber {f} reaches its extent {extent}")
        if ends[last] > extent + 1:
            raise reader.fail(
                f"run {int(runs[last])} overruns fiber {f} "
                f"(position {int(ends[last]) - 1} >= extent {extent})",
                start + last * width,
            )
        stored = last + 1 if ends[last] == extent else last  # == extent + 1: a terminal run, no payload
        rows.append(np.full(stored, f, dtype=np.int64))
        cols.append(ends[:stored] - 1)
        reader.pos = start + (last + 1) * width
    empty = np.zeros(0, dtype=np.int64)
    return np.concatenate([empty, *rows]), np.concatenate([empty, *cols])


def _decode_rle_gamma(reader: BitReader, n_fibers: int, extent: int, i: int, label: str):
    bits = reader.bits[reader.pos :]
    size = bits.size
    ones = np.where(bits == 1, np.arange(size), size)
    next_one = np.minimum.accumulate(ones[::-1])[::-1].tolist() if size else []
    window = 32
    padded = np.concatenate([bits, np.zeros(window, dtype=np.uint8)]).astype(np.int64)
    words = np.zeros(size, dtype=np.int64)
    for k in range(window):
        words |= padded[k : k + size] << (window - 1 - k)
    word_list = words.tolist()
    base = reader.pos
    p = 0
    rows: list[int] = []
    cols: list[int] = []
    for f in range(n_fibers):
        reader.context = f"rank {i} ({label}) metadata, fiber {f}"
        pos = 0
        while pos < extent:
            if p >= size or next_one[p] >= size:
                raise reader.fail(f"the stream ends inside an Elias-gamma run of fiber {f}", base + p)
            zeros = next_one[p] - p
            if zeros >= window or p + 2 * zeros + 1 > size:
                raise reader.fail(f"Elias-gamma run of fiber {f} is longer than the stream allows", base + p)
            run = (word_list[p + zeros] >> (window - 1 - zeros)) - 1
            pos += run
            if pos > extent:
                raise reader.fail(f"run {run} overruns fiber {f} (extent {extent})", base + p)
            p += 2 * zeros + 1
            if pos == extent:
                break  # a terminal run
            rows.append(f)
            cols.append(pos)
            pos += 1
    reader.pos = base + p
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def _decode_cp(reader: BitReader, n_fibers: int, extent: int, width: int, expected, i: int, label: str):
    if expected is not None:
        counts = expected
        start = reader.pos
        reader.context = f"rank {i} ({label}) metadata"
        cols = reader.read_fields(int(counts.sum()), width)
        rows = np.repeat(np.arange(n_fibers, dtype=np.int64), counts)
    else:
        count_width = extent.bit_length()
        rows_list, cols_list = [], []
        start = reader.pos
        for f in range(n_fibers):
            reader.context = f"rank {i} ({label}) metadata, fiber {f}"
            count = reader.read(count_width)
            if count > extent:
                raise reader.fail(
                    f"fiber {f} claims {count} entries, more than its extent {extent}",
                    reader.pos - count_width,
                )
            rows_list.append(np.full(count, f, dtype=np.int64))
            cols_list.append(reader.read_fields(count, width))
        rows = np.concatenate([np.zeros(0, np.int64), *rows_list])
        cols = np.concatenate([np.zeros(0, np.int64), *cols_list])
    bad_range = np.flatnonzero(cols >= extent)
    same = rows[1:] == rows[:-1]
    bad_order = np.flatnonzero(same & (cols[1:] <= cols[:-1])) + 1
    for bad, what in ((bad_range, "out of range"), (bad_order, "not increasing")):
        if bad.size:
            k = int(bad[0])
            # bit of the k-th coordinate: with occupancy fields interleaved, count them in
            bit = (
                start + k * width + (0 if expected is not None else (int(rows[k]) + 1) * extent.bit_length())
            )
            raise reader.fail(
                f"coordinate {int(cols[k])} of fiber {int(rows[k])} is {what} (extent {extent})", bit
            )
    return rows, cols


def decode(encoded: EncodedTensor) -> np.ndarray:
    """The float16 array (of ``encoded.shape``) that ``encoded`` holds; raises :class:`FormatDecodeError`
    (a ValueError) if the stream is truncated, corrupt or not the canonical encoding of any tensor."""
    fmt = encoded.format
    shape = tuple(encoded.shape)
    if not isinstance(fmt, TensorFormat) or len(shape) != len(fmt.ranks) or math.prod(shape) == 0:
        raise FormatDecodeError(f"shape {shape} does not fit format {fmt}")
    reader = BitReader(encoded.data, encoded.n_bits)
    depth = len(shape)
    fibers: np.ndarray | None = None
    expected: np.ndarray | None = None
    rows = cols = None
    rank_starts = []
    for i, rank in enumerate(fmt.ranks):
        rank_starts.append(reader.pos)
        extent = shape[i]
        above = math.prod(shape[:i])
        n_fibers = above if fibers is None else fibers.size
        label = rank.label
        reader.context = f"rank {i} ({label}) metadata"
        kind = rank.kind
        parent = fmt.ranks[i - 1].label if i else ""
        if kind == "U":
            rows = cols = None
            entries = np.full(n_fibers, extent, dtype=np.int64)
        elif kind == "B":
            mask = reader.read_bits(n_fibers * extent).reshape(n_fibers, extent)
            rows, cols = (a.astype(np.int64) for a in np.nonzero(mask))
            entries = mask.sum(axis=1).astype(np.int64)
        elif kind == "UOP":
            width = rank.width_bits or max(1, math.prod(shape[: i + 2]).bit_length())
            start = reader.pos
            offsets = reader.read_fields(n_fibers * (extent + 1), width).reshape(n_fibers, extent + 1)
            starts = np.concatenate([[0], offsets[:-1, -1]])
            bad = np.flatnonzero(offsets[:, 0] != starts)
            if bad.size:
                f = int(bad[0])
                raise reader.fail(
                    f"fiber {f} starts at offset {int(offsets[f, 0])}, expected {int(starts[f])}",
                    start + f * (extent + 1) * width,
                )
            steps = np.diff(offsets, axis=1)
            limit = shape[i + 1]
            bad_flat = np.flatnonzero((steps < 0) | (steps > limit))
            if bad_flat.size:
                f, j = divmod(int(bad_flat[0]), extent)
                raise reader.fail(
                    f"offsets of fiber {f} go from {int(offsets[f, j])} to {int(offsets[f, j + 1])} "
                    f"(must not decrease, nor step by more than the subfiber extent {limit})",
                    start + (f * (extent + 1) + j + 1) * width,
                )
            rows, cols = (a.astype(np.int64) for a in np.nonzero(steps))
            entries = (steps > 0).sum(axis=1).astype(np.int64)
            _check_expected(reader, entries, expected, i, parent)
            expected = steps[rows, cols]
            fibers = (np.arange(n_fibers, dtype=np.int64) if fibers is None else fibers)[rows] * extent + cols
            continue
        elif kind == "CP":
            width = rank.width_bits or max(1, (extent - 1).bit_length())
            if rank.aligned:
                slot_offsets = reader.read_fields(n_fibers * extent, width).reshape(n_fibers, extent)
                entries = np.full(n_fibers, extent, dtype=np.int64)
            else:
                rows, cols = _decode_cp(reader, n_fibers, extent, width, expected, i, label)
                entries = np.bincount(rows, minlength=n_fibers).astype(np.int64)
        elif rank.run_code == "elias_gamma":
            rows, cols = _decode_rle_gamma(reader, n_fibers, extent, i, label)
            entries = np.bincount(rows, minlength=n_fibers).astype(np.int64)
        else:
            rows, cols = _decode_rle_fixed(reader, n_fibers, extent, int(rank.width_bits or 0), i, label)
            entries = np.bincount(rows, minlength=n_fibers).astype(np.int64)
        _check_expected(reader, entries, expected, i, parent)
        expected = None
        if i < depth - 1:
            if rows is None or cols is None:
                base = np.arange(above, dtype=np.int64) if fibers is None else fibers
                fibers = (base[:, None] * extent + np.arange(extent)).ravel()
            else:
                fibers = (np.arange(above, dtype=np.int64) if fibers is None else fibers)[
                    rows
                ] * extent + cols
    # payload
    leaf = fmt.ranks[-1]
    extent = shape[-1]
    n_fibers = math.prod(shape[:-1]) if fibers is None else fibers.size
    n_values = int(entries.sum())
    reader.context = "the payload"
    payload_start = reader.pos
    raw = reader.read_fields(n_values, VALUE_BITS).astype(np.uint16)
    bad = np.flatnonzero((raw & _EXPONENT_MASK) == _EXPONENT_MASK)
    if bad.size:
        raise reader.fail(
            f"value {int(bad[0])} (0x{int(raw[bad[0]]):04x}) is not finite", payload_start + int(bad[0]) * 16
        )
    grid = np.zeros((n_fibers, extent), dtype=np.uint16)
    if leaf.aligned:
        slots = raw.reshape(n_fibers, extent)
        valid = (slots & 0x7FFF) != 0
        gap = np.flatnonzero((valid[:, 1:] & ~valid[:, :-1]).ravel())
        if gap.size:
            f, j = divmod(int(gap[0]), extent - 1)
            raise reader.fail(
                f"fiber {f}: nonzero value in slot {j + 1} after an empty slot",
                payload_start + (f * extent + j + 1) * 16,
            )
        rows, slot = (a.astype(np.int64) for a in np.nonzero(valid))
        cols = slot_offsets[rows, slot]
        bad_range = np.flatnonzero(cols >= extent)
        bad_order = np.flatnonzero((rows[1:] == rows[:-1]) & (cols[1:] <= cols[:-1])) + 1
        for bad_idx, what in ((bad_range, "out of range"), (bad_order, "not increasing")):
            if bad_idx.size:
                k = int(bad_idx[0])
                raise reader.fail(
                    f"offset {int(cols[k])} of fiber {int(rows[k])} slot {int(slot[k])} is {what} "
                    f"(extent {extent})",
                    rank_starts[-1] + (int(rows[k]) * extent + int(slot[k])) * width,
                )
        grid[rows, cols] = raw.reshape(n_fibers, extent)[rows, slot]
    elif rows is None or cols is None:
        grid[:] = raw.reshape(n_fibers, extent)
    else:
        grid[rows, cols] = raw
    if reader.pos != reader.n_bits:
        raise reader.fail(f"{reader.n_bits - reader.pos} bits are left after the payload")
    expected_bytes = -(-encoded.n_bits // 8)
    if len(encoded.data) != expected_bytes:
        raise FormatDecodeError(
            f"at bit {reader.pos}: the data holds {len(encoded.data)} bytes, "
            f"{encoded.n_bits} bits need {expected_bytes}"
        )
    if encoded.n_bits % 8 and encoded.data[-1] & ((1 << (8 - encoded.n_bits % 8)) - 1):
        raise FormatDecodeError(f"at bit {encoded.n_bits}: the padding bits of the last byte are not zero")
    flat = np.zeros(math.prod(shape), dtype=np.uint16)
    if fibers is None:
        flat[:] = grid.ravel()
    else:
        flat.reshape(-1, extent)[fibers] = grid
    result = flat.view(np.float16).reshape(shape)
    _check_canonical(result, encoded, rank_starts, payload_start)
    return result


def _check_canonical(result: np.ndarray, encoded: EncodedTensor, rank_starts: list[int], payload_start: int):
    """Re-encode: the stream must be exactly what the encoder writes for the tensor it decodes to."""
    again = encode(result, encoded.format)
    if again.data == encoded.data and again.n_bits == encoded.n_bits:
        return
    a = np.unpackbits(np.frombuffer(again.data, dtype=np.uint8))
    b = np.unpackbits(np.frombuffer(encoded.data, dtype=np.uint8))
    common = min(a.size, b.size)
    diff = np.flatnonzero(a[:common] != b[:common])
    bit = int(diff[0]) if diff.size else common
    section = "the payload"
    for i, start in enumerate(rank_starts):
        if bit >= start:
            section = f"rank {i} ({encoded.format.ranks[i].label}) metadata"
    if bit >= payload_start:
        section = "the payload"
    raise FormatDecodeError(
        f"at bit {bit} while decoding {section}: the stream is not the canonical encoding of the tensor it "
        f"decodes to (e.g. a stored zero, or a bitmask bit over an empty subfiber)"
    )
