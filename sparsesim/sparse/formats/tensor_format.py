"""The format vocabulary: one :class:`RankFormat` per rank of a fibertree, composed into a
:class:`TensorFormat` (Sparseloop / Timeloop naming).

A tensor with ``d`` dimensions is a fibertree of ``d`` ranks, outermost first. Rank 0 holds one fiber
(the root) whose extent is ``shape[0]``; every coordinate of a rank-``i`` fiber points to a subfiber of
rank ``i + 1`` (extent ``shape[i + 1]``), and the coordinates of the last rank (the *leaf*) hold the values.
A subfiber is *empty* if every value under it is zero. What each rank stores:

``U`` (uncompressed)
    Every coordinate: at the leaf every value (zeros too); in an upper rank every subfiber, empty ones
    included. No metadata.
``B`` (bitmask)
    One metadata bit per coordinate (1 = nonzero value / non-empty subfiber); only those are stored.
``RLE`` (run length)
    One entry per stored element: the number of zero coordinates (empty subfibers) skipped before it,
    then the element. ``run_code="fixed"``: runs in ``width_bits`` (required; Eyeriss v1 uses 5). A run
    longer than ``2**width_bits - 1`` is cut by *padding* entries: run = the maximum, payload = an explicit
    zero (an empty subfiber in an upper rank), which cost their metadata and payload bits like any entry.
    ``run_code="elias_gamma"``: each run ``r`` is coded as Elias-gamma of ``r + 1``; no padding is needed.
    Trailing zeros: the decoder knows the fiber's extent and stops when it is reached, so a fiber whose
    last coordinate is nonzero ends with that entry. Otherwise it ends with a *terminal run*: a run
    field with no payload that reaches exactly the extent (for fixed width, after as many padding entries
    as the trailing zeros need: ``t`` trailing zeros cost ``t // 2**w`` padding entries plus one terminal run
    if ``t % 2**w != 0``). A run can only be terminal if it reaches the extent, so this stays uniquely
    decodable.
``CP`` (coordinate payload)
    One coordinate per stored (nonzero) element in ``width_bits`` (``None``: ``ceil(log2(extent))``, at
    least 1), coordinates increasing. When the parent rank is not ``UOP`` (or the rank is the root),
    nothing else tells the decoder how many elements a fiber holds, so each fiber starts with its
    occupancy in ``ceil(log2(extent + 1))`` bits — counted as metadata (a flat CP tensor pays it once).
    ``aligned=True`` (leaf only) is Cnvlutin's zero-free brick: the fiber always takes ``extent`` slots of
    (coordinate, value); the nonzeros fill the first slots in increasing coordinate order, the others hold
    coordinate 0 and value +0 (a zero value marks an empty slot, so no count is needed).
``UOP`` (uncompressed offset pair; upper ranks only)
    ``extent + 1`` offsets per fiber, each ``width_bits`` (``None``: enough for the largest offset the shape
    allows), into the next rank's storage. Offsets count the next rank's *entries* (stored payload
    fields: values at the leaf, subfibers above; RLE padding entries and aligned-CP slots included) and
    run on across fibers, as CSR's ``indptr`` does; an empty subfiber costs its offset but no storage.

The payload of a stored value is its float16 bit pattern (``value_bits=16``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.sparse.formats.bitstream import MAX_FIELD_BITS

RANK_KINDS = ("U", "B", "RLE", "CP", "UOP")
RUN_CODES = ("fixed", "elias_gamma")


@dataclass(frozen=True)
class RankFormat:
    """The format of one rank. ``width_bits``: the metadata field width (RLE runs, CP coordinates, UOP
    offsets); ``run_code``: RLE only; ``aligned``: CP only (Cnvlutin's fixed-slot bricks)."""

    kind: str
    width_bits: int | None = None
    run_code: str = "fixed"
    aligned: bool = False

    def __post_init__(self) -> None:
        if self.kind not in RANK_KINDS:
            raise ValueError(f"unknown rank format {self.kind!r}; known: {', '.join(RANK_KINDS)}")
        if self.width_bits is not None:
            if isinstance(self.width_bits, bool) or not isinstance(self.width_bits, int):
                raise ValueError(f"{self.kind}: width_bits must be an int or None, got {self.width_bits!r}")
            if not 1 <= self.width_bits <= MAX_FIELD_BITS:
                raise ValueError(
                    f"{self.kind}: width_bits must be between 1 and {MAX_FIELD_BITS}, got {self.width_bits}"
                )
        if self.kind in ("U", "B") and self.width_bits is not None:
            raise ValueError(f"{self.kind} has no metadata fields, so no width_bits (got {self.width_bits})")
        if self.run_code not in RUN_CODES:
            raise ValueError(f"run_code must be one of {', '.join(RUN_CODES)}, got {self.run_code!r}")
        if self.kind != "RLE" and self.run_code != "fixed":
            raise ValueError(f"run_code is an RLE parameter, not {self.kind}'s")
        if self.kind == "RLE":
            if self.run_code == "fixed" and self.width_bits is None:
                raise ValueError("RLE with fixed-width runs needs width_bits (Eyeriss v1: 5)")
            if self.run_code == "elias_gamma" and self.width_bits is not None:
                raise ValueError(
                    "RLE with Elias-gamma runs has variable-length fields: width_bits must be None"
                )
        if self.aligned and self.kind != "CP":
            raise ValueError(f"aligned is a CP parameter, not {self.kind}'s")

    @property
    def label(self) -> str:
        """Short name for messages, e.g. ``RLE(w=5)``, ``RLE(gamma)``, ``CP(aligned, w=4)``."""
        parts = []
        if self.run_code == "elias_gamma":
            parts.append("gamma")
        if self.aligned:
            parts.append("aligned")
        if self.width_bits is not None:
            parts.append(f"w={self.width_bits}")
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind


@dataclass(frozen=True)
class TensorFormat:
    """A format per rank, outermost first, for arrays with exactly ``len(ranks)`` dimensions."""

    name: str
    ranks: tuple[RankFormat, ...]
    value_bits: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.ranks, tuple) or not self.ranks:
            raise ValueError(f"format {self.name!r}: ranks must be a non-empty tuple of RankFormat")
        for i, rank in enumerate(self.ranks):
            if not isinstance(rank, RankFormat):
                raise ValueError(f"format {self.name!r}: rank {i} is {rank!r}, not a RankFormat")
            if rank.aligned and i != len(self.ranks) - 1:
                raise ValueError(f"format {self.name!r}: aligned CP is a leaf format, found at rank {i}")
        if self.ranks[-1].kind == "UOP":
            raise ValueError(f"format {self.name!r}: UOP is an upper-rank format, it cannot be the leaf rank")
        if self.value_bits != 16:
            raise ValueError(
                f"format {self.name!r}: value_bits must be 16 (payload = float16 bit pattern), "
                f"got {self.value_bits}"
            )

    def __str__(self) -> str:
        return f"{self.name}[{' > '.join(r.label for r in self.ranks)}]"
