"""Pattern-based kernel pruning (PCONV, AAAI 2020; PatDNN, ASPLOS 2020): pure numpy, no timing.

A convolution *kernel* is the ``R x S`` slice ``w[k, c]`` of one filter ``k`` and input channel ``c``.
Pattern-based pruning combines two structures:

- **kernel pattern pruning**: every kept kernel keeps exactly ``entries`` positions (4 of a 3x3 kernel in
  both papers, the centre always among them), and the set of positions must be one of a small *library*
  of patterns (8 here by default; PatDNN compares libraries of about 6 to 12). A pattern is stored as a
  code: bit ``r * S + s`` set for a kept position ``(r, s)``. (The search tool surfaced only the papers'
  abstracts, which confirm the two sparsities and the headline speed-ups; the 4 entries, the centre and
  the library sizes are as the papers are usually described, not checked against their text.)
- **connectivity pruning**: whole kernels (the connection from input channel ``c`` to output channel ``k``)
  are removed, those whose pattern-pruned weights have the smallest L2 norm.

What is implemented here, one-shot from the real weights (the papers learn both with ADMM and retrain;
nothing is retrained here):

- :func:`build_library`: each kernel's *natural* pattern is its centre plus its ``entries - 1`` largest
  ``|w|`` elsewhere; the library is the ``size`` most frequent natural patterns of the layer, ties broken
  by the smaller code. One library per layer (PatDNN selects its set from the trained model; a per-layer
  set fits each layer at least as well and costs a 72-bit table per layer).
- :func:`assign_patterns`: each kernel takes the library pattern that keeps the largest L2 norm of its
  weights (ties: the lower pattern id).
- :func:`pattern_prune`: both, then connectivity pruning of ``round(rate * K * C)`` kernels.

And the hardware's view (:func:`layer_patterns`): from weights as stored, the library a compiler would
build (one pattern id per connected kernel, every kept weight inside its pattern), or ``None`` when the
weights do not follow patterns (a kernel holds more than ``entries`` nonzero weights, or more patterns
would be needed than the PE's table holds). :func:`pattern_metadata_bits` sizes what must be stored
besides the weights: one connectivity bit per kernel, one pattern id per connected kernel, the table.

Kernels with ``R * S <= entries`` positions (1x1 convolutions) have a single pattern, all positions: only
connectivity pruning applies to them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Positions kept per kernel by PCONV / PatDNN (of a 3x3 kernel).
PATTERN_ENTRIES = 4
#: Library size of the hardware and the pruning command when none is given.
DEFAULT_LIBRARY_SIZE = 8


@dataclass(frozen=True)
class KernelPatterns:
    """A layer's pattern library and each kernel's pattern.

    ``library``: ``(P, R*S)`` bool, row ``i`` the kept positions of pattern ``i`` (C order over ``(r, s)``).
    ``pattern_ids``: ``(K, C)`` int64, the pattern of each kernel, ``-1`` for a removed (all-zero) kernel.
    """

    library: NDArray[np.bool_]
    pattern_ids: NDArray[np.int64]

    @property
    def connected(self) -> NDArray[np.bool_]:
        """``(K, C)``: the kernels still connected (not removed by connectivity pruning)."""
        return self.pattern_ids >= 0

    @property
    def entries(self) -> int:
        """Positions per pattern (all patterns of a library have the same count)."""
        return int(self.library[0].sum()) if len(self.library) else 0


@dataclass(frozen=True)
class PatternPruning:
    """The result of :func:`pattern_prune`: the patterns and the pruning mask (``True`` = pruned)."""

    patterns: KernelPatterns
    mask: NDArray[np.bool_]


def _check_weights(weights_kcrs: object) -> NDArray[np.float64]:
    weights = np.asarray(weights_kcrs, dtype=np.float64)
    if weights.ndim != 4:
        raise ValueError(f"kernel patterns need (K, C, R, S) weights, got shape {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError("the weights must be finite; they hold NaN or infinite values")
    return weights


def _check_entries(entries: int) -> None:
    if isinstance(entries, bool) or not isinstance(entries, (int, np.integer)) or entries < 1:
        raise ValueError(f"a pattern keeps at least 1 position per kernel; got entries={entries!r}")


def _effective_entries(positions: int, entries: int) -> int:
    return min(int(entries), positions)


def _codes_of(mask_n_positions: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Bool rows ``(..., R*S)`` -> codes ``(...)``: bit ``i`` set where position ``i`` is kept."""
    weights = np.left_shift(np.int64(1), np.arange(mask_n_positions.shape[-1], dtype=np.int64))
    return (mask_n_positions.astype(np.int64) * weights).sum(axis=-1)


def _rows_of(codes: NDArray[np.int64], positions: int) -> NDArray[np.bool_]:
    """Codes -> bool rows ``(len(codes), positions)``."""
    bits = np.arange(positions, dtype=np.int64)
    return ((np.asarray(codes, dtype=np.int64)[:, None] >> bits[None, :]) & 1).astype(bool)


def _popcount(codes: NDArray[np.int64], positions: int) -> NDArray[np.int64]:
    return _rows_of(codes.reshape(-1), positions).sum(axis=1).reshape(codes.shape)


def candidate_patterns(kernel_r: int, kernel_s: int, entries: int = PATTERN_ENTRIES) -> NDArray[np.int64]:
    """Codes of every pattern of ``entries`` positions holding the kernel's centre, in increasing order.

    For a 3x3 kernel and 4 entries: the centre and 3 of the 8 others, C(8, 3) = 56 patterns. A kernel with
    at most ``entries`` positions has one pattern, all of them.
    """
    _check_entries(entries)
    positions = kernel_r * kernel_s
    keep = _effective_entries(positions, entries)
    centre = (kernel_r // 2) * kernel_s + kernel_s // 2
    others = [p for p in range(positions) if p != centre]
    codes = [
        (1 << centre) + sum(1 << p for p in chosen) for chosen in itertools.combinations(others, keep - 1)
    ]
    return np.array(sorted(codes), dtype=np.int64)


def natural_patterns(weights_kcrs: object, entries: int = PATTERN_ENTRIES) -> NDArray[np.int64]:
    """``(K, C)`` codes: each kernel's centre plus its ``entries - 1`` largest ``|w|`` elsewhere.

    Ties are broken by position (a stable sort), so the result depends only on the values.
    """
    _check_entries(entries)
    weights = _check_weights(weights_kcrs)
    filters, channels, kernel_r, kernel_s = weights.shape
    positions = kernel_r * kernel_s
    keep = _effective_entries(positions, entries)
    magnitude = np.abs(weights).reshape(filters, channels, positions)
    centre = (kernel_r // 2) * kernel_s + kernel_s // 2
    # The centre sorts first whatever its magnitude: PCONV/PatDNN patterns always keep it.
    key = -magnitude
    key[:, :, centre] = -np.inf
    order = np.argsort(key, axis=2, kind="stable")[:, :, :keep]
    kept = np.zeros(magnitude.shape, dtype=bool)
    np.put_along_axis(kept, order, True, axis=2)
    return _codes_of(kept)


def build_library(
    weights_kcrs: object, size: int = DEFAULT_LIBRARY_SIZE, entries: int = PATTERN_ENTRIES
) -> NDArray[np.bool_]:
    """``(P, R*S)`` bool: the ``size`` most frequent natural patterns of the layer's nonzero kernels.

    Ties in frequency go to the smaller code. If the layer shows fewer distinct natural patterns than
    ``size``, the library is completed with the other candidates (:func:`candidate_patterns`) in increasing
    code order, so that it holds ``min(size, number of candidates)`` patterns.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"a pattern library holds at least 1 pattern; got size={size!r}")
    weights = _check_weights(weights_kcrs)
    _, _, kernel_r, kernel_s = weights.shape
    natural = natural_patterns(weights, entries)
    nonzero = (weights != 0).any(axis=(2, 3))
    codes, counts = np.unique(natural[nonzero], return_counts=True)  # codes ascending
    by_frequency = codes[np.argsort(-counts, kind="stable")]  # descending count, then ascending code
    chosen = list(by_frequency[:size])
    for code in candidate_patterns(kernel_r, kernel_s, entries):
        if len(chosen) >= size:
            break
        if code not in chosen:
            chosen.append(code)
    return _rows_of(np.array(chosen, dtype=np.int64), kernel_r * kernel_s)


def assign_patterns(weights_kcrs: object, library: NDArray[np.bool_]) -> NDArray[np.int64]:
    """``(K, C)``: per kernel, the library pattern keeping the largest sum of ``w**2`` (ties: lowest id)."""
    weights = _check_weights(weights_kcrs)
    filters, channels, kernel_r, kernel_s = weights.shape
    library = np.asarray(library, dtype=bool)
    if library.ndim != 2 or library.shape[1] != kernel_r * kernel_s or len(library) == 0:
        raise ValueError(
            f"a library for {kernel_r}x{kernel_s} kernels is (P >= 1, {kernel_r * kernel_s}) bool, "
            f"got shape {library.shape}"
        )
    squares = (weights**2).reshape(filters * channels, -1)
    kept = squares @ library.T.astype(np.float64)  # (K*C, P): exact sums of the kept squares
    return np.argmax(kept, axis=1).reshape(filters, channels).astype(np.int64)  # first maximum


def pattern_prune(
    weights_kcrs: object,
    library_size: int = DEFAULT_LIBRARY_SIZE,
    connectivity: float = 0.0,
    entries: int = PATTERN_ENTRIES,
) -> PatternPruning:
    """Kernel pattern pruning, then connectivity pruning of a layer's weights (one-shot, no retraining).

    Every kernel keeps the positions of its assigned library pattern (:func:`assign_patterns` on the library
    of :func:`build_library`); then the ``round(connectivity * K * C)`` kernels of smallest kept L2 norm are
    removed whole (ties: the lower flat index ``k * C + c`` goes first). ``0 <= connectivity < 1``.
    """
    if not 0.0 <= float(connectivity) < 1.0:
        raise ValueError(f"the connectivity pruning rate must be in [0, 1), got {connectivity!r}")
    weights = _check_weights(weights_kcrs)
    filters, channels, kernel_r, kernel_s = weights.shape
    library = build_library(weights, library_size, entries)
    ids = assign_patterns(weights, library)
    kept = library[ids].reshape(weights.shape)  # (K, C, R, S): positions the patterns keep
    norms = np.where(kept, weights**2, 0.0).sum(axis=(2, 3)).reshape(-1)
    removed = np.zeros(norms.size, dtype=bool)
    removed[np.argsort(norms, kind="stable")[: int(round(float(connectivity) * norms.size))]] = True
    ids = np.where(removed.reshape(filters, channels), -1, ids)
    mask = ~kept | removed.reshape(filters, channels)[:, :, None, None]
    return PatternPruning(KernelPatterns(library, ids.astype(np.int64)), mask)


def layer_patterns(
    weights_kcrs: object, entries: int = PATTERN_ENTRIES, library_size: int = DEFAULT_LIBRARY_SIZE
) -> KernelPatterns | None:
    """The pattern library a compiler builds for weights as stored, or ``None`` if they follow none.

    A kernel with no nonzero weight is not connected (id ``-1``). Every pattern holds ``min(entries, R*S)``
    positions. The library starts with the supports (nonzero positions) of the kernels that fill a whole
    pattern, most frequent first (ties: smaller code). Kernels with fewer nonzero weights (a kept weight
    that is exactly zero) must fit in some pattern: those that fit in none are covered greedily, each time
    by the pattern of ``entries`` positions that holds the most of them (ties: smaller code) -- the greedy
    set cover, not always the smallest, so a layer may run dense that a smaller library could have
    covered. Each kernel takes the first pattern holding its support. ``None`` when a kernel holds more
    than ``entries`` nonzero weights or the library would exceed ``library_size`` patterns.
    """
    _check_entries(entries)
    weights = _check_weights(weights_kcrs)
    filters, channels, kernel_r, kernel_s = weights.shape
    positions = kernel_r * kernel_s
    keep = _effective_entries(positions, entries)
    supports = _codes_of((weights != 0).reshape(filters, channels, positions))
    counts = _popcount(supports, positions)
    if (counts > keep).any():
        return None
    full, full_counts = np.unique(supports[counts == keep], return_counts=True)
    library = list(full[np.argsort(-full_counts, kind="stable")])
    if len(library) > library_size:
        return None
    partial = np.unique(supports[(counts > 0) & (counts < keep)])  # few distinct values: <= 2**(R*S)
    uncovered = partial[~_covered(partial, np.array(library, dtype=np.int64))]
    if uncovered.size:
        candidates = np.array(
            sorted(sum(1 << p for p in chosen) for chosen in itertools.combinations(range(positions), keep)),
            dtype=np.int64,
        )
        while uncovered.size:
            if len(library) >= library_size:
                return None
            holds = ((uncovered[:, None] & ~candidates[None, :]) == 0).sum(axis=0)
            best = candidates[int(np.argmax(holds))]  # first maximum: the smallest code
            library.append(best)
            uncovered = uncovered[~_covered(uncovered, np.array([best], dtype=np.int64))]
    if not library:  # an all-zero layer: one pattern, no kernel connected
        library = [np.int64((1 << keep) - 1)]
    codes = np.array(library, dtype=np.int64)
    contains = (supports.reshape(-1)[:, None] & ~codes[None, :]) == 0  # (K*C, P)
    ids = np.where(counts.reshape(-1) > 0, np.argmax(contains, axis=1), -1)
    return KernelPatterns(_rows_of(codes, positions), ids.reshape(filters, channels).astype(np.int64))


def _covered(supports: NDArray[np.int64], codes: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Per support: whether one of the patterns ``codes`` holds all of its positions."""
    if codes.size == 0:
        return np.zeros(supports.shape, dtype=bool)
    return ((supports[:, None] & ~codes[None, :]) == 0).any(axis=1)


def pattern_id_bits(library_size: int) -> int:
    """Bits of one pattern id: ``ceil(log2(P))``, 0 for a single pattern."""
    return math.ceil(math.log2(library_size)) if library_size > 1 else 0


def pattern_metadata_bits(patterns: KernelPatterns) -> dict[str, int]:
    """What a pattern machine stores besides the kept weights' values, in bits.

    ``connectivity``: one bit per kernel (connected or removed); ``pattern_ids``: ``ceil(log2(P))`` per
    connected kernel; ``library``: the pattern table, ``R*S`` bits per pattern. (PatDNN's compressed
    FKW storage keeps per-filter offsets and kernel indices instead of a bitmask; the bitmask is this
    model's choice, the smaller of the two for the dense connectivity of VGG16.)
    """
    kernels = int(patterns.pattern_ids.size)
    connected = int(patterns.connected.sum())
    library = int(patterns.library.size)
    ids = connected * pattern_id_bits(len(patterns.library))
    return {
        "connectivity": kernels,
        "pattern_ids": ids,
        "library": library,
        "total": kernels + ids + library,
    }


def filter_order(patterns: KernelPatterns) -> NDArray[np.int64]:
    """PatDNN's filter reorder: filters by decreasing connected-kernel count (ties: lower index first).

    Filters dealt to the lanes of one tile then carry about the same work, so that the slowest lane (which
    ends the tile) waits less; the order is fixed offline, the outputs are written back in place.
    """
    per_filter = patterns.connected.sum(axis=1)
    return np.argsort(-per_filter, kind="stable").astype(np.int64)
