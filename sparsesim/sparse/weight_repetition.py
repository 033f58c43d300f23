"""Weight repetition (UCNN, Hegde et al., ISCA 2018): the work of a factorised dot product, pure numpy.

Modelled: one PE lane computes one output (filter ``k``, window ``p``) over the ``N = C*R*S`` operand
positions. Offline, each filter's positions are sorted by weight value (UCNN's *indirection table*): the
positions that share one nonzero weight value form a *group*, groups in increasing weight value, positions by
index inside a group. Positions whose weight is zero are not in the table at all (no read, no add, no cycle).
The lane walks the table:

- it reads the activation of each *issued* position (``skip_zero_activations``: positions whose activation is
  zero are not issued either: no read, no add, no cycle);
- the first issued activation of a group starts the group's sum, every further one is an *activation add*;
- when a group with at least one issued activation ends, the lane reads its weight once, does ONE multiply
  (weight x group sum) and one *product add* into the output's running sum (which starts at the bias).

So ``factorised = sum_g w_g * (sum_{n in g} a_n)``: the lecture's input ``[1 2 3]`` and filter ``[A B A]``
cost ``A*(1+3) + B*2``: 2 multiplies, 2 weight reads, 1 activation add, 2 product adds, instead of 3 MACs.

Counted per output, each a (K, P) int64 array in :class:`RepetitionWork`:

- ``issued``: activations issued = activation reads (positions with a nonzero weight, and with a nonzero
  activation if skipping);
- ``multiplies`` = ``weight_reads`` = the non-empty groups = distinct nonzero weight values of the filter
  among the issued positions;
- ``activation_adds`` = ``issued - multiplies``; ``product_adds`` = ``multiplies``;
- ``cycles`` = ``max(1, issued)``: the lane takes one issued activation per cycle (its activation add, or the
  start of a new group); the multiply and product add of a group are pipelined and overlap the next group's
  activations (pipeline fill and drain are ignored). An output with nothing issued still takes one cycle to
  hand on its bias.

The dense baseline (one MAC per issued activation: ``issued`` multiplies, weight reads and adds, the same
cycles) is given by the ``dense_*`` properties. At one lane UCNN saves multiplies and weight reads, never
cycles. Ignored: the indirection table's storage and reads, and the sort done offline.

Real weights are continuous: repetition has to be exposed by quantisation (:func:`quantize_weights`), which
is lossy; the caller records it in the trace's provenance and reports the output error.

How it is computed fast: each filter's weights are sorted by value (a group is a run of equal nonzero values).
A group of one position sums one activation, with no addition: its multiply is the plain product of its
weight and activation, so those groups are a dense ``(K, N)`` matrix and one matrix product (float32 for
counts, exact below 2**24). The groups of several positions are numbered ``g = 0 .. G-1`` (filter by
filter) and a sparse ``(G, N)`` indicator matrix turns a chunk of windows into per-group sums (operands) or
per-group counts of issued activations (the nonzero mask); per-filter totals come from a second sparse
product with a ``(filters, G)`` matrix: of ones for counts, of the group weights for outputs. Both are taken
a run of filters at a time, so that the ``(groups, windows)`` temporary stays small while the windows are
many (the dense product wants many). Without skipping, the counts need only the number of groups per
filter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse  # type: ignore[import-untyped]
from numpy.typing import NDArray

from sparsesim.sparse.checks import OperandBands, finite_matrix, operand_bands

QUANTIZATION_METHODS = ("uniform_symmetric",)

#: Largest number of (group, window) entries of a chunk's temporaries (16 MiB of float64).
_CHUNK_ELEMENTS = 1 << 21
#: Weights whose groups are found at a time.
_GROUPING_WEIGHTS = 1 << 18


def quantize_weights(
    weights: np.ndarray, bits: int, method: str = "uniform_symmetric"
) -> NDArray[np.float32]:
    """Quantise one layer's weights to few distinct values, exposing weight repetition. LOSSY.

    The output differs from the input: the caller must record the quantisation (method, bits) in the
    provenance of anything derived from it, and report the resulting output error.

    ``uniform_symmetric``: one scale for the whole array (the whole layer) ``scale = max|w| / L`` with
    ``L = 2**(bits-1) - 1``; each weight becomes the nearest level ``scale * i``, ``i`` an integer in
    ``[-L, L]`` (ties to even ``i``). Zeros stay zero, and so do weights smaller than ``scale / 2``. Each
    level is rounded to the nearest float16, so the values are exactly representable in float16 (and
    float32, the returned dtype); at most ``2**bits - 1`` distinct values (zero included). All-zero weights
    are returned as they are.

    ``weights``: any shape (e.g. ``(K, C, R, S)``), finite. ``bits``: int in ``[2, 16]``. Raises
    ``ValueError`` if the float16 levels are not all distinct, increasing and symmetric (bits too large for
    float16's precision, or weights too large or too small for its range).
    """
    if method not in QUANTIZATION_METHODS:
        raise ValueError(f"unknown quantization method {method!r}; known: {', '.join(QUANTIZATION_METHODS)}")
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")
    array = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("weights must be finite; they hold NaN or infinite values")
    largest = int(2 ** (int(bits) - 1) - 1)
    peak = float(np.abs(array).max(initial=0.0))
    if peak == 0.0:
        return array.astype(np.float32)
    scale = peak / largest
    with np.errstate(over="ignore"):
        levels = (scale * np.arange(-largest, largest + 1, dtype=np.float64)).astype(np.float16)
    levels64 = levels.astype(np.float64)
    if not np.isfinite(levels64).all():
        raise ValueError(f"max |weight| = {peak:g} is beyond float16's range (65504)")
    if not (np.diff(levels64) > 0).all() or not (levels64 == -levels64[::-1]).all():
        raise ValueError(
            f"{bits}-bit levels of scale {scale:g} are not distinct in float16 (too many bits for its "
            "11-bit precision, or weights too small for its range)"
        )
    index = np.clip(np.rint(array / scale), -largest, largest).astype(np.int64) + largest
    return levels.astype(np.float32)[index]


@dataclass(frozen=True)
class RepetitionWork:
    """The work of every output ``(filter k, window p)`` of a layer on a UCNN lane; each (K, P) int64.

    ``issued``: activations read and walked (one cycle each). ``multiplies``: one per non-empty group of
    equal weights. The other counts follow from these two (computed when asked for, so that a layer holds
    two (K, P) arrays). Rules in the module docstring.
    """

    issued: NDArray[np.int64]
    multiplies: NDArray[np.int64]

    @property
    def activation_adds(self) -> NDArray[np.int64]:
        """Additions of two activations of a group: ``issued - multiplies``."""
        return self.issued - self.multiplies

    @property
    def product_adds(self) -> NDArray[np.int64]:
        """Accumulations of a group's product: ``multiplies``."""
        return self.multiplies

    @property
    def weight_reads(self) -> NDArray[np.int64]:
        """One per group: ``multiplies``."""
        return self.multiplies

    @property
    def cycles(self) -> NDArray[np.int64]:
        """``max(1, issued)``: an output with nothing issued still takes the cycle that hands on its bias."""
        return np.maximum(self.issued, 1)

    @property
    def activation_reads(self) -> NDArray[np.int64]:
        """Activations read: the issued ones."""
        return self.issued

    @property
    def dense_multiplies(self) -> NDArray[np.int64]:
        """Baseline without factorisation: one MAC per issued activation."""
        return self.issued

    @property
    def dense_weight_reads(self) -> NDArray[np.int64]:
        """Baseline without factorisation: one weight read per issued activation."""
        return self.issued

    @property
    def dense_adds(self) -> NDArray[np.int64]:
        """Baseline without factorisation: one accumulation per issued activation."""
        return self.issued


@dataclass(frozen=True)
class _GroupBlock:
    """A run of filters and their groups of several positions (``g`` of them, numbered filter by filter)."""

    filters: slice
    indicator: scipy.sparse.csr_array  # (g, N) float64: 1 at (group, each of its positions)
    weights: scipy.sparse.csr_array  # (filters, g) float64: the group's weight at (its filter, group)
    members: scipy.sparse.csr_array  # (filters, g) float32: 1 at (its filter, group)


@dataclass(frozen=True)
class _Groups:
    """The indirection tables of all filters, the groups of one position apart: a group of one position sums
    one activation (no addition), so its multiply is the plain product of its weight and activation and all
    of those are one dense matrix product. The groups of several positions come in runs of filters, so that
    a chunk of windows' temporaries stay small."""

    singles: NDArray[np.float64]  # (K, N) the weight of each position alone in its group, 0 elsewhere
    blocks: list[_GroupBlock]


def _operand_bands_and_weights(
    operands_pn: np.ndarray | OperandBands, weights_kn: np.ndarray
) -> tuple[Callable[[], Iterator[np.ndarray]], int, NDArray[np.float64]]:
    """The operands' bands (see :func:`~sparsesim.sparse.checks.operand_bands`), P and the checked weights."""
    bands, n_windows, n_positions, _ = operand_bands(
        operands_pn, lambda band: finite_matrix(band, "operands_pn", 2), weights_kn
    )
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    if weights.shape[1] != n_positions:
        raise ValueError(
            f"operands_pn has {n_positions} positions per window but weights_kn has {weights.shape[1]}"
        )
    return bands, n_windows, weights


def _group_starts(values: NDArray[np.float64]) -> NDArray[np.bool_]:
    """In each filter's weights sorted by value (rows of ``values``): where a group starts, a nonzero value
    unlike the one before it."""
    starts = values != 0
    starts[:, 1:] &= values[:, 1:] != values[:, :-1]
    return starts


def _weight_groups(weights: NDArray[np.float64], max_groups: int) -> _Groups:
    """The groups of ``weights`` ``(K, N)``, those of several positions in runs of filters that hold at most
    ``max_groups`` of them (or one filter with more). Found ``_GROUPING_WEIGHTS`` weights at a time (the
    search's temporaries are several (filters, N) arrays); a run never spans two of those blocks, and each
    filter's groups are the same whatever its run."""
    singles = np.empty_like(weights)
    blocks: list[_GroupBlock] = []
    step = max(1, _GROUPING_WEIGHTS // max(weights.shape[1], 1))
    for first in range(0, weights.shape[0], step):
        part = _block_weight_groups(weights[first : first + step], max_groups)
        singles[first : first + step] = part.singles
        for block in part.blocks:
            filters = slice(block.filters.start + first, block.filters.stop + first)
            blocks.append(dataclasses.replace(block, filters=filters))
    return _Groups(singles=singles, blocks=blocks)


def _block_weight_groups(weights: NDArray[np.float64], max_groups: int) -> _Groups:
    """:func:`_weight_groups` of one block of filters."""
    n_filters, n_positions = weights.shape
    # Each filter's positions by weight value; the order of the positions of one group does not matter (the
    # indicator's rows are sorted by position).
    order = np.argsort(weights, axis=1)
    values = np.take_along_axis(weights, order, axis=1)
    starts = _group_starts(values)
    ends = values != 0
    ends[:, :-1] &= values[:, 1:] != values[:, :-1]
    alone = starts & ends
    singles = np.zeros_like(weights)
    np.put_along_axis(singles, order, np.where(alone, values, 0.0), axis=1)
    # The groups of several positions, numbered filter by filter in increasing value; their entries in order.
    filters, ranks = np.nonzero((values != 0) & ~alone)
    first = starts[filters, ranks]
    group = np.cumsum(first) - 1
    positions = order[filters, ranks]
    group_filter, group_value = filters[first], values[filters[first], ranks[first]]
    filter_starts = np.searchsorted(group_filter, np.arange(n_filters + 1))
    entry_starts = np.searchsorted(group, np.arange(len(group_filter) + 1))
    blocks = []
    f0 = 0
    while f0 < n_filters:
        f1 = max(
            f0 + 1, int(np.searchsorted(filter_starts, filter_starts[f0] + max_groups, side="right")) - 1
        )
        g0, g1 = int(filter_starts[f0]), int(filter_starts[f1])
        e0, e1 = int(entry_starts[g0]), int(entry_starts[g1])
        indicator = scipy.sparse.csr_array(
            (np.ones(e1 - e0), (group[e0:e1] - g0, positions[e0:e1])), shape=(g1 - g0, n_positions)
        )
        indicator.sort_indices()
        of_filter = (group_filter[g0:g1] - f0, np.arange(g1 - g0))
        blocks.append(
            _GroupBlock(
                filters=slice(f0, f1),
                indicator=indicator,
                weights=scipy.sparse.csr_array((group_value[g0:g1], of_filter), shape=(f1 - f0, g1 - g0)),
                members=scipy.sparse.csr_array(
                    (np.ones(g1 - g0, dtype=np.float32), of_filter), shape=(f1 - f0, g1 - g0)
                ),
            )
        )
        f0 = f1
    return _Groups(singles=singles, blocks=blocks)


def _windows_per_chunk(weights: NDArray[np.float64]) -> int:
    """Windows taken at a time: their ``(N, W)`` operands and ``(K, W)`` outputs stay near
    ``_CHUNK_ELEMENTS`` values, and so do their groups' sums (runs of at most ``_CHUNK_ELEMENTS / W``
    groups)."""
    return max(1, _CHUNK_ELEMENTS // sum(weights.shape))


def _window_chunks(
    bands: Callable[[], Iterator[np.ndarray]], step: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """Chunks of at most ``step`` windows of each band: (their windows in the layer, their operands)."""
    start = 0
    for band in bands():
        for low in range(0, band.shape[0], step):
            chunk = band[low : low + step]
            yield slice(start + low, start + low + chunk.shape[0]), chunk
        start += band.shape[0]


def repetition_work(
    operands_pn: np.ndarray | OperandBands, weights_kn: np.ndarray, *, skip_zero_activations: bool = False
) -> RepetitionWork:
    """Count the work of every output of a layer on a UCNN lane (rules in the module docstring).

    ``operands_pn``: (P, N) the operands of each window (im2col: row ``p`` = window ``p``'s ``C*R*S``
    activations, padding as zeros), or a callable returning its bands of consecutive windows (see
    :func:`~sparsesim.sparse.checks.operand_bands`). ``weights_kn``: (K, N), usually from
    :func:`quantize_weights` (with continuous weights nearly every group has one position and nothing is
    saved).
    ``skip_zero_activations``: zero activations are not issued (no read, no add, no cycle).
    """
    bands, n_windows, weights = _operand_bands_and_weights(operands_pn, weights_kn)
    if skip_zero_activations:
        step = _windows_per_chunk(weights)
        groups = _weight_groups(weights, _CHUNK_ELEMENTS // step)
        # Counts < 2**24 are exact in float32.
        nonzero_weights = (weights != 0).astype(np.float32)
        singles = (groups.singles != 0).astype(np.float32)
        issued = np.empty((weights.shape[0], n_windows), dtype=np.int64)
        multiplies = np.empty_like(issued)
        for rows, operands in _window_chunks(bands, step):
            nonzero = np.ascontiguousarray((operands != 0).T, dtype=np.float32)  # (N, W)
            issued[:, rows] = nonzero_weights @ nonzero
            # A group is multiplied if one of its activations is issued; a group of one position if its is.
            multiplies[:, rows] = (singles @ nonzero).astype(np.int64)
            for block in groups.blocks:
                issued_in_group = ((block.indicator @ nonzero) > 0).astype(np.float32)  # (groups, W)
                multiplies[block.filters, rows] += (block.members @ issued_in_group).astype(np.int64)
    else:
        per_filter_issued = np.count_nonzero(weights, axis=1).astype(np.int64)
        issued = np.repeat(per_filter_issued[:, None], n_windows, axis=1)
        per_filter_groups = np.count_nonzero(_group_starts(np.sort(weights, axis=1)), axis=1).astype(np.int64)
        multiplies = np.repeat(per_filter_groups[:, None], n_windows, axis=1)
    return RepetitionWork(issued=issued, multiplies=multiplies)


def factorised_output(
    operands_pn: np.ndarray | OperandBands, weights_kn: np.ndarray, bias_k: np.ndarray
) -> NDArray[np.float64]:
    """Every output computed the UCNN way: per group, sum the activations, multiply once by the weight.

    Returns (K, P) float64 ``bias_k[k] + sum_g w_g * (sum of the activations of group g)``, groups of filter
    ``k`` in increasing weight value, activations of a group in position order; ReLU is NOT applied.
    ``operands_pn`` as for :func:`repetition_work`. Equal to
    ``operands_pn @ weights_kn.T + bias_k`` up to floating-point rounding (the sums are associated
    differently). Skipping zero activations does not change it: a zero adds nothing.
    """
    bands, n_windows, weights = _operand_bands_and_weights(operands_pn, weights_kn)
    bias = finite_matrix(bias_k, "bias_k", 1)
    if bias.shape[0] != weights.shape[0]:
        raise ValueError(f"bias_k has {bias.shape[0]} entries for {weights.shape[0]} filters")
    step = _windows_per_chunk(weights)
    groups = _weight_groups(weights, _CHUNK_ELEMENTS // step)
    out = np.empty((weights.shape[0], n_windows), dtype=np.float64)
    for rows, operands in _window_chunks(bands, step):
        window_operands = np.ascontiguousarray(operands.T)  # (N, W)
        out[:, rows] = groups.singles @ window_operands  # groups of one position: plain products
        for block in groups.blocks:
            group_sums = block.indicator @ window_operands  # (groups, W): activations summed per group
            out[block.filters, rows] += block.weights @ group_sums  # one multiply per group, accumulated
        out[:, rows] += bias[:, None]
    return out
