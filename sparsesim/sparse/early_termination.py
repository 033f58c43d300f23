"""ReLU early termination (SnaPEA, Akhlaghi et al., ISCA 2018): which MACs a PE leaves out, pure numpy.

Modelled: one PE (one MAC lane) computes one output (filter ``k``, window ``p``) as a sequence of MACs over
the ``N = C*R*S`` operand positions, one MAC per cycle, in an order fixed offline per filter from its weights
only (:func:`mac_order`; weights equal to zero are never issued). The running sum starts at the bias. Since
the activations after a ReLU are >= 0, once the positive weights have been issued the sum can only fall, and
the PE stops as soon as it is known to be <= 0: the ReLU output is then 0.

- ``exact``: positive weights first (index order), then the negative weights by decreasing magnitude (ties by
  index). The sign is checked once when the positive phase ends (with no positive weight: before the first
  MAC, on the bias alone) and after every negative MAC; the PE stops at the first check that finds the sum
  <= 0. The output is exactly ``relu(bias + sum of products)`` (summed in issue order).
- ``predictive`` (SnaPEA's speculative mode, lossy): the first ``min(n_speculative, n_k)`` MACs are those of
  the largest-magnitude weights (any sign; ties by index), ``n_k`` being the filter's nonzero weights. If MACs
  remain after them (``n_speculative < n_k``) the PE compares the partial sum with ``threshold``: if it is
  ``<= threshold`` the PE predicts a negative output and stops (output 0). Otherwise it issues the remaining
  MACs in exact-mode order (skipping those already done) with the exact checks: the positive phase is then the
  remaining positive weights. A prediction is a *misprediction* when the full sum (bias included) is > 0.
  ``n_speculative = 0`` with ``threshold = -inf`` is exact mode.
- ``skip_zero_activations`` (Cnvlutin-style): a MAC whose activation is zero takes no cycle; the order and the
  checks are unchanged (a zero product does not move the sum), so only the count of MACs performed changes.
- Soundness: exact termination relies on activations >= 0. If any operand is negative (the first layer of a
  CNN reads a mean-subtracted image) nothing is terminated in either mode: every MAC is performed, the output
  is the dense ReLU output, and the result says ``sound=False``.
- No ReLU (``relu=False``: the layer's activation is ``none``, e.g. a classifier's last layer): a negative
  sum is a real output, not a 0 to predict, so there is nothing to terminate. The PE runs the layer as in
  SnaPEA's normal mode: every MAC is performed (in the same order), the output is the dense pre-activation
  sum, and the result says ``relu=False``. (Refusing the layer instead would make a whole network with one
  such layer impossible to simulate on a SnaPEA machine, which runs it, only without the saving.)

Counted per output: ``macs_performed`` (cycles of a 1-MAC PE spent on it, 0 if it has nothing to do);
``terminated`` = the PE stopped and saved at least one MAC (with skipping: a MAC with a nonzero activation);
``mispredicted``. Ignored: the cost of the sign checks, of the offline reordering and of the index buffer that
fetches activations out of order (a caller charges them if it wants).

How it is computed fast, with the same results as the cycle-stepped rules: the sums at the checks that split
the sequence into phases (after the speculative MACs, at the end of the positive phase, at the end) come from
matrix products for all outputs at once; an output whose sum could change sign within the rounding
difference between a matrix product and a sequential sum (``|sum| <= 1e-10 * (|bias| + sum |a*w|)``) is
instead replayed sequentially in issue order, as the PE does. Only outputs that end <= 0 after a positive
phase ending > 0 are walked MAC by MAC through their negative phase, in blocks, all such outputs at once, each
until its sum first reaches <= 0. The walk starts at a checkpoint: each filter's negative phase is cut into
``CHECKPOINT_SEGMENTS`` equal segments whose sums also come from matrix products, and an output is walked
from the last checkpoint at which its sum is still clearly > 0 (the sums only fall in the negative phase, so
the stop lies beyond every such checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sparsesim.sparse.checks import OperandBands, finite_matrix, operand_bands

TERMINATION_MODES = ("exact", "predictive")

#: Sums within this fraction of ``|bias| + sum |a*w|`` of a decision boundary are replayed sequentially: a
#: matrix product and a sequential sum of <= 2**16 terms differ by far less (about ``n * 2**-53``).
_RELATIVE_TOLERANCE = 1e-10
#: Segments of each filter's negative phase whose sums come from matrix products: the walk starts at the last
#: segment boundary an output's sum is clearly > 0 at, and so walks at most one segment. Each boundary costs
#: one more (windows x positions) by (positions x filters) matrix product. On VGG16's conv layers (exact and
#: predictive) 6 segments walked 1.25x faster than none (the walk had taken 80 % of the time), 4 and 8 slower
#: than 6. The results do not depend on it.
CHECKPOINT_SEGMENTS = 6
#: Negative-phase walk: first block of MACs per output, largest block, and elements per block array.
_FIRST_BLOCK_MACS = 16
_LARGEST_BLOCK_MACS = 1024
_BLOCK_ELEMENTS = 1 << 18
#: Operand bytes of the windows walked together. Larger groups mean fewer, longer numpy calls (the walk's
#: cost is mostly per call) against gathers from further out in the cache: on VGG16's conv1_2-conv5_2,
#: 4 MiB (a slice of a server's L3) walked 1.3x faster than 512 KiB (one core's L2), and 8-16 MiB slower.
#: The results do not depend on it (each output's running sum is the same sequence of adds).
_WALK_GROUP_BYTES = 1 << 22
#: Weights whose issue plan is built at once: its temporaries are a few times this many int64 or float64
#: values, the phase weights (N, 2 or 4 x filters) float64 and the checkpoint weights (N, (segments - 1) x
#: filters) float64 (and as many float32 when zero activations are skipped).
FILTER_BLOCK_WEIGHTS = 1 << 19


@dataclass(frozen=True)
class TerminationResult:
    """What early termination did to every output ``(filter k, window p)`` of a layer.

    ``macs_performed`` (K, P) int64: MACs the output actually performed (cycles of a 1-MAC PE).
    ``terminated`` (K, P) bool: the PE stopped before its last MAC (saved at least one MAC).
    ``output`` (K, P) float64: what the PE produces (ReLU applied; 0 where it stopped on a check; with
    ``relu=False`` the pre-activation sum).
    ``mispredicted`` (K, P) bool: predicted negative but the true ReLU output is > 0 (never in exact mode).
    ``sound``: False if termination was disabled because some operand is negative.
    ``relu``: False if termination was disabled because no ReLU follows the layer.
    """

    macs_performed: NDArray[np.int64]
    terminated: NDArray[np.bool_]
    output: NDArray[np.float64]
    mispredicted: NDArray[np.bool_]
    sound: bool
    relu: bool = True


@dataclass(frozen=True)
class _IssuePlan:
    """The per-filter MAC sequence split into phases: speculative, positive, negative (all (K,) counts)."""

    order: NDArray[np.int64]  # (K, N) positions in issue order, -1 after the last nonzero weight
    nonzero: NDArray[np.int64]  # n_k: MACs issued without termination
    speculative: NDArray[np.int64]  # MACs before the prediction check (0 in exact mode)
    first_check: NDArray[np.int64]  # MACs issued when the positive phase ends (first exact check)
    predicts: NDArray[np.bool_]  # the prediction check is made (predictive mode and MACs remain after it)
    speculative_mask: NDArray[np.bool_]  # (K, N) positions issued speculatively
    positive_mask: NDArray[np.bool_]  # (K, N) positions of the (remaining) positive phase
    negative_mask: NDArray[np.bool_]  # (K, N) positions of the (remaining) negative phase


def _check_mode(mode: str, n_speculative: int) -> None:
    if mode not in TERMINATION_MODES:
        raise ValueError(f"unknown early termination mode {mode!r}; known: {', '.join(TERMINATION_MODES)}")
    if isinstance(n_speculative, bool) or not isinstance(n_speculative, int | np.integer):
        raise ValueError(f"n_speculative must be an int, got {type(n_speculative).__name__}")
    if n_speculative < 0:
        raise ValueError(f"n_speculative must be >= 0, got {n_speculative}")


def _issue_plan(weights: NDArray[np.float64], mode: str, n_speculative: int) -> _IssuePlan:
    n_filters, n_positions = weights.shape
    magnitude = np.abs(weights)
    nonzero = weights != 0
    speculative = np.zeros_like(nonzero)
    if mode == "predictive" and n_speculative >= n_positions:
        speculative = nonzero.copy()
    elif mode == "predictive" and n_speculative > 0:
        # The n_speculative largest magnitudes, ties by index: all above the n-th largest magnitude, then the
        # first (by index) of those equal to it.
        nth = -np.partition(-magnitude, n_speculative - 1, axis=1)[:, n_speculative - 1 : n_speculative]
        above = magnitude > nth
        equal = magnitude == nth
        room = n_speculative - np.count_nonzero(above, axis=1, keepdims=True)
        speculative = nonzero & (above | (equal & (np.cumsum(equal, axis=1) <= room)))
    positive = (weights > 0) & ~speculative
    negative = (weights < 0) & ~speculative
    # Phase of each position: 0 speculative, 1 positive, 2 negative, 3 never issued. Within the speculative
    # and negative phases by decreasing magnitude; lexsort is stable, so ties (and the positive phase) keep
    # index order.
    phase = np.full(weights.shape, 3, dtype=np.int8)
    phase[negative] = 2
    phase[positive] = 1
    phase[speculative] = 0
    within = np.negative(magnitude, out=magnitude)  # magnitude is not used after this
    within[~(speculative | negative)] = 0.0
    order = np.lexsort((within, phase), axis=-1).astype(np.int64, copy=False)
    n_nonzero = np.count_nonzero(nonzero, axis=1).astype(np.int64)
    order[np.arange(n_positions)[None, :] >= n_nonzero[:, None]] = -1
    n_speculative_k = np.count_nonzero(speculative, axis=1).astype(np.int64)
    return _IssuePlan(
        order=order,
        nonzero=n_nonzero,
        speculative=n_speculative_k,
        first_check=n_speculative_k + np.count_nonzero(positive, axis=1),
        predicts=np.full(n_filters, mode == "predictive") & (n_speculative < n_nonzero),
        speculative_mask=speculative,
        positive_mask=positive,
        negative_mask=negative,
    )


def mac_order(weights_kn: np.ndarray, mode: str, n_speculative: int = 0) -> NDArray[np.int64]:
    """Per filter, the operand positions in the order the PE issues their MACs.

    ``weights_kn``: (K, N) weights. Returns int64 (K, N): row ``k`` lists the positions of filter ``k``'s
    nonzero weights in issue order (see the module docstring for ``exact`` and ``predictive``), then -1.
    """
    _check_mode(mode, n_speculative)
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    return _issue_plan(weights, mode, int(n_speculative)).order


def _replay(
    operands: NDArray[np.float64],
    weights: NDArray[np.float64],
    bias: NDArray[np.float64],
    plan: _IssuePlan,
    threshold: float,
    windows: NDArray[np.int64],
    filters: NDArray[np.int64],
    skip: bool,
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.float64], NDArray[np.bool_]]:
    """Sequential replay of single outputs in issue order, for sums too close to a decision boundary.

    Returns, per (window, filter) pair: MACs performed, whether a check stopped the PE, output, misprediction.
    """
    n_pairs = windows.size
    macs = np.zeros(n_pairs, dtype=np.int64)
    halted = np.zeros(n_pairs, dtype=bool)
    output = np.zeros(n_pairs, dtype=np.float64)
    predicted = np.zeros(n_pairs, dtype=bool)
    for i, (p, k) in enumerate(zip(windows.tolist(), filters.tolist(), strict=True)):
        n_k = int(plan.nonzero[k])
        positions = plan.order[k, :n_k]
        activations = operands[p, positions]
        sums = np.cumsum(np.concatenate(([bias[k]], activations * weights[k, positions])))  # sums[c]: c MACs
        stop = n_k
        if plan.predicts[k] and sums[plan.speculative[k]] <= threshold:
            stop, halted[i], predicted[i] = int(plan.speculative[k]), True, True
        else:
            below = np.flatnonzero(sums[plan.first_check[k] :] <= 0)
            if below.size:
                stop, halted[i] = int(plan.first_check[k] + below[0]), True
        output[i] = 0.0 if halted[i] else max(float(sums[n_k]), 0.0)
        predicted[i] &= sums[n_k] > 0  # now: mispredicted
        macs[i] = np.count_nonzero(activations[:stop]) if skip else stop
    return macs, halted, output, predicted


def _walk_negative_phase(
    operands: NDArray[np.float64],
    phase: _NegativePhase,
    windows: NDArray[np.int64],
    filters: NDArray[np.int64],
    first_macs: NDArray[np.int64],
    start_sums: NDArray[np.float64],
    tolerance: NDArray[np.float64],
    skip: bool,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Walk each output's negative phase, from its MAC ``first_macs``, until its sum first reaches <= 0.

    ``start_sums``: the sums before that MAC (> tolerance). Works on all outputs at once, a block of MACs at a
    time (blocks grow geometrically), dropping outputs as they stop. Arrays are laid out (MAC, output) so
    that the running sum is a cumulative sum over contiguous rows. Every product is <= 0, so each running sum
    is non-increasing (also in floating point) and the MACs before the stop are those whose sum is still > 0.
    Returns per output: negative MACs issued (``first_macs`` included), of which with a nonzero activation
    (those walked only), and whether the stop was too close to call.
    """
    n_pairs = windows.size
    issued = np.zeros(n_pairs, dtype=np.int64)
    nonzero = np.zeros(n_pairs, dtype=np.int64)
    unclear = np.zeros(n_pairs, dtype=bool)
    flat_operands = operands.reshape(-1)
    row_starts = windows * operands.shape[1]
    flat_order, flat_weights = phase.order.reshape(-1), phase.weights.reshape(-1)
    last_row, n_filters = phase.order.shape[0] - 1, phase.order.shape[1]
    # Index of each output's first MAC in the flattened (MAC, filter) phase arrays: its MAC i is i filters on.
    # Indices past the end are clipped to the last element, in the last row (weight 0): a sum never stops
    # there, and an output that walks past its phase's end is replayed.
    first_index = first_macs * n_filters + filters
    carry = start_sums.copy()
    active = np.arange(n_pairs)
    offset, block = 0, _FIRST_BLOCK_MACS
    longest = int((last_row - first_macs).max(initial=0))
    while active.size and offset < longest:
        width = min(block, longest - offset, max(1, _BLOCK_ELEMENTS // active.size))
        flat = first_index[active] + (offset + np.arange(width)[:, None]) * n_filters  # (width, M)
        columns = flat_order.take(flat, mode="clip")
        columns += row_starts[active]
        values = flat_operands.take(columns)
        running = np.empty((width + 1, active.size))
        running[0] = carry[active]
        np.multiply(values, flat_weights.take(flat, mode="clip"), out=running[1:])
        for i in range(width):  # row by row: contiguous adds (numpy's cumsum over axis 0 is strided)
            np.add(running[i], running[i + 1], out=running[i + 1])
        still_positive = running[1:] > 0
        count = np.count_nonzero(still_positive, axis=0)  # MACs of this block after which the sum is > 0
        stopped = count < width
        rows = np.flatnonzero(stopped)
        done, at = active[rows], count[rows]
        issued[done] = first_macs[done] + offset + at + 1
        # The previous check saw the sum > 0 and this one <= 0: clear only if both are beyond the tolerance.
        unclear[done] = (running[at, rows] <= tolerance[done]) | (running[at + 1, rows] >= -tolerance[done])
        if skip:
            nonzero_values = values != 0
            performed = np.ones_like(still_positive)
            performed[1:] = still_positive[:-1]  # the MACs up to and including the one that stopped
            nonzero[active] += np.count_nonzero(nonzero_values & performed, axis=0)
        carry[active] = running[-1]
        active = active[~stopped]
        offset += width
        block = min(2 * block, _LARGEST_BLOCK_MACS)
    unclear[active] = True  # never reached <= 0: the end sum was misjudged; replay
    return issued, nonzero, unclear


def _checkpoint_starts(
    operands: NDArray[np.float64],
    phase: _NegativePhase,
    at_first_check: NDArray[np.float64],
    tolerance: NDArray[np.float64],
    windows: NDArray[np.int64],
    filters: NDArray[np.int64],
    skip: bool,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """Where to start walking each output (``windows``, ``filters``): the last checkpoint of its negative
    phase at which its sum is > tolerance (so truly > 0; the first check's sum counts as checkpoint 0).

    Returns per output: negative MACs before that checkpoint, the sum there, and (skipping PEs) how many of
    those MACs have a nonzero activation.
    """
    n_windows, n_filters = at_first_check.shape
    n_checkpoints = phase.checkpoint_weights.shape[1] // max(n_filters, 1)
    pair_sums = np.empty((windows.size, n_checkpoints + 1))
    pair_sums[:, 0] = at_first_check[windows, filters]
    sums = (operands @ phase.checkpoint_weights).reshape(n_windows, n_checkpoints, n_filters)
    np.cumsum(sums, axis=1, out=sums)
    pair_sums[:, 1:] = sums[windows, :, filters]
    pair_sums[:, 1:] += pair_sums[:, :1]
    # Checkpoints passed: the leading ones whose sum is clearly > 0 (the sums only fall, so a later one never
    # is while an earlier one is not, but for rounding within the tolerance: stop at the first that is not).
    beyond = np.ones((windows.size, n_checkpoints + 2), dtype=bool)
    np.less_equal(pair_sums, tolerance[windows, filters][:, None], out=beyond[:, :-1])
    passed = np.argmax(beyond, axis=1) - 1  # the last clear checkpoint, >= 0 (checkpoint 0 is clear)
    pairs = np.arange(windows.size)
    nonzero_before = np.zeros(windows.size, dtype=np.int64)
    if skip and n_checkpoints:
        counts = np.asarray(operands != 0, dtype=np.float32) @ phase.checkpoint_masks
        counts = np.rint(counts).astype(np.int64).reshape(n_windows, n_checkpoints, n_filters)
        np.cumsum(counts, axis=1, out=counts)
        inside = passed > 0
        nonzero_before[inside] = counts[windows[inside], passed[inside] - 1, filters[inside]]
    return phase.boundaries[filters, passed], pair_sums[pairs, passed], nonzero_before


def early_termination(
    operands_pn: np.ndarray | OperandBands,
    weights_kn: np.ndarray,
    bias_k: np.ndarray,
    *,
    mode: str = "exact",
    n_speculative: int = 0,
    threshold: float = 0.0,
    skip_zero_activations: bool = False,
    chunk_windows: int = 256,
    relu: bool = True,
) -> TerminationResult:
    """Run every output of a layer through SnaPEA early termination (rules in the module docstring).

    ``operands_pn``: (P, N) the operands of each window (im2col: row ``p`` = window ``p``'s ``C*R*S``
    activations, padding as zeros), or a callable returning its bands of consecutive windows (see
    :func:`~sparsesim.sparse.checks.operand_bands`; called once per pass over the windows, so that a caller
    can build them a band at a time). ``weights_kn``: (K, N). ``bias_k``: (K,). ``mode``: ``exact`` or
    ``predictive`` (``n_speculative``, ``threshold`` are used only by ``predictive``).
    ``skip_zero_activations``: zero activations take no cycle. ``relu``: whether a ReLU follows the layer
    (without one nothing is terminated and the output is the pre-activation). ``chunk_windows``: windows
    processed together;
    the temporaries of a chunk are a few (chunk_windows, K) float64 arrays and, with skipping, one
    (chunk_windows, N) float32 array. The filters' issue plans are built a block of about
    ``FILTER_BLOCK_WEIGHTS`` weights at a time, each block passing over all the windows.
    """
    _check_mode(mode, n_speculative)
    bands, n_windows, n_positions, sound = operand_bands(
        operands_pn, lambda band: finite_matrix(band, "operands_pn", 2), weights_kn
    )
    weights, bias, threshold = check_layer_inputs(n_positions, weights_kn, bias_k, threshold, chunk_windows)
    n_filters = weights.shape[0]
    # (K, P) results, filled through (P_chunk, K_block) views.
    macs = np.empty((n_filters, n_windows), dtype=np.int64)
    terminated = np.zeros((n_filters, n_windows), dtype=bool)
    output = np.empty((n_filters, n_windows), dtype=np.float64)
    mispredicted = np.zeros((n_filters, n_windows), dtype=bool)
    filters_per_block = max(1, FILTER_BLOCK_WEIGHTS // max(n_positions, 1))
    for first in range(0, n_filters, filters_per_block):
        block = slice(first, first + filters_per_block)
        _filter_block(
            bands,
            weights[block],
            bias[block],
            mode,
            int(n_speculative),
            threshold,
            skip_zero_activations,
            sound,
            bool(relu),
            int(chunk_windows),
            (macs[block], terminated[block], output[block], mispredicted[block]),
        )
    return TerminationResult(
        macs_performed=macs,
        terminated=terminated,
        output=output,
        mispredicted=mispredicted,
        sound=sound,
        relu=bool(relu),
    )


def _filter_block(
    bands: OperandBands,
    weights: NDArray[np.float64],
    bias: NDArray[np.float64],
    mode: str,
    n_speculative: int,
    threshold: float,
    skip: bool,
    sound: bool,
    relu: bool,
    chunk_windows: int,
    out: tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.float64], NDArray[np.bool_]],
) -> None:
    """Fill ``out`` = (macs, terminated, output, mispredicted), each (K_block, P), for a block of filters:
    their issue plans, then a pass over all the windows. (A function, so that a block's plans are freed
    before the next block's are built.)"""
    plan = _issue_plan(weights, mode, n_speculative)
    # Phase weights as (N, K) columns: positive, negative, then (if any) speculative and |speculative|.
    phases = [plan.positive_mask, plan.negative_mask]
    if plan.speculative.any():
        phases.append(plan.speculative_mask)
    n_filters, n_positions = weights.shape
    phase_weights = np.zeros((n_positions, n_filters * (len(phases) + (len(phases) == 3))))
    # Only skipping PEs count their nonzero activations per phase.
    phase_masks = np.zeros((n_positions, len(phases) * n_filters if skip else 0), np.float32)
    for i, mask in enumerate(phases):
        np.copyto(phase_weights[:, i * n_filters : (i + 1) * n_filters], weights.T, where=mask.T)
        if skip:
            phase_masks[:, i * n_filters : (i + 1) * n_filters] = mask.T
    if len(phases) == 3:
        np.abs(phase_weights[:, 2 * n_filters : 3 * n_filters], out=phase_weights[:, 3 * n_filters :])
    negative_phase = _negative_phase(plan, weights, skip)
    start = 0
    for band in bands():
        for low in range(0, band.shape[0], chunk_windows):
            chunk = band[low : low + chunk_windows]
            rows = slice(start + low, start + low + chunk.shape[0])
            _chunk(
                chunk,
                weights,
                bias,
                plan,
                threshold,
                skip,
                sound,
                relu,
                phase_weights,
                phase_masks,
                negative_phase,
                tuple(array[:, rows].T for array in out),  # type: ignore[arg-type]
            )
        start += band.shape[0]


@dataclass(frozen=True)
class _NegativePhase:
    """Each filter's negative phase in issue order, and the matrices of its checkpoint sums (see
    ``CHECKPOINT_SEGMENTS``)."""

    order: NDArray[np.int64]  # (L + 1, K) positions, 0 past the phase's end (so in the last row)
    weights: NDArray[np.float64]  # (L + 1, K) their weights, 0 past the phase's end
    boundaries: NDArray[np.int64]  # (K, J) negative MACs before each checkpoint (the first is 0)
    checkpoint_weights: NDArray[np.float64]  # (N, (J - 1) * K) segment j's weights in columns j*K..(j+1)*K
    checkpoint_masks: NDArray[np.float32]  # the same, 1 for each weight (skipping PEs only, else (N, 0))


def _negative_phase(plan: _IssuePlan, weights: NDArray[np.float64], skip: bool) -> _NegativePhase:
    """The negative phases of ``plan``'s filters and their checkpoint matrices (:class:`_NegativePhase`)."""
    n_filters, n_positions = weights.shape
    lengths = plan.nonzero - plan.first_check
    longest = int(lengths.max(initial=0))
    index = np.arange(longest + 1)[None, :]
    column = plan.first_check[:, None] + index
    inside = index < lengths[:, None]
    filters = np.arange(n_filters)[:, None]
    positions = np.where(inside, plan.order[filters, np.minimum(column, n_positions - 1)], 0)
    weights_in_order = np.where(inside, weights[filters, positions], 0.0)
    # Segment j holds the MACs i with floor(i * J / L) = j: checkpoint j is after ceil(j * L / J) MACs.
    segments = CHECKPOINT_SEGMENTS
    boundaries = -(-np.arange(segments)[None, :] * lengths[:, None] // segments)
    segment = index * segments // np.maximum(lengths, 1)[:, None]
    counted = inside & (segment < segments - 1)  # the last segment's sum is not needed
    rows, columns = positions[counted], (segment * n_filters + filters)[counted]
    checkpoint_weights = np.zeros((n_positions, (segments - 1) * n_filters))
    checkpoint_weights[rows, columns] = weights_in_order[counted]
    checkpoint_masks = np.zeros((n_positions, (segments - 1) * n_filters if skip else 0), np.float32)
    if skip:
        checkpoint_masks[rows, columns] = 1.0
    return _NegativePhase(
        order=np.ascontiguousarray(positions.T),
        weights=np.ascontiguousarray(weights_in_order.T),
        boundaries=boundaries.astype(np.int64),
        checkpoint_weights=checkpoint_weights,
        checkpoint_masks=checkpoint_masks,
    )


def _chunk(
    operands: NDArray[np.float64],
    weights: NDArray[np.float64],
    bias: NDArray[np.float64],
    plan: _IssuePlan,
    threshold: float,
    skip: bool,
    sound: bool,
    relu: bool,
    phase_weights: NDArray[np.float64],
    phase_masks: NDArray[np.float32],
    negative_phase: _NegativePhase,
    out: tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.float64], NDArray[np.bool_]],
) -> None:
    """Fill ``out`` = (macs, terminated, output, mispredicted), each (P_chunk, K), for a chunk of windows."""
    macs, terminated, output, mispredicted = out
    n_filters = weights.shape[0]
    n_windows = operands.shape[0]
    sums = operands @ phase_weights  # (P, 2K or 4K): positive, negative[, speculative, |speculative|]
    positive, negative = sums[:, :n_filters], sums[:, n_filters : 2 * n_filters]
    spec = (
        sums[:, 2 * n_filters : 3 * n_filters] if sums.shape[1] > 2 * n_filters else np.zeros_like(positive)
    )
    spec_magnitude = sums[:, 3 * n_filters :] if sums.shape[1] > 2 * n_filters else spec
    after_speculation = bias + spec
    at_first_check = after_speculation + positive
    full = at_first_check + negative
    if skip:
        counts = np.rint(np.asarray(operands != 0, dtype=np.float32) @ phase_masks).astype(np.int64)
        nz_positive, nz_negative = counts[:, :n_filters], counts[:, n_filters : 2 * n_filters]
        nz_spec = (
            counts[:, 2 * n_filters :] if counts.shape[1] > 2 * n_filters else np.zeros_like(nz_positive)
        )
        unterminated = nz_spec + nz_positive + nz_negative
    else:
        unterminated = np.broadcast_to(plan.nonzero, full.shape)
    if not sound or not relu:  # nothing is terminated: every MAC, the dense output
        macs[:] = unterminated
        output[:] = np.maximum(full, 0.0) if relu else full
        return

    tolerance = _RELATIVE_TOLERANCE * (np.abs(bias) + spec_magnitude + positive - negative)
    stop = np.broadcast_to(plan.nonzero, full.shape).copy()
    if skip:
        stop_nonzero = unterminated.copy()
    predicts = plan.predicts[None, :]
    unclear = predicts & (np.abs(after_speculation - threshold) <= tolerance)
    predicted = predicts & (after_speculation <= threshold) & ~unclear
    unclear |= predicted & (np.abs(full) <= tolerance)  # is it a misprediction?
    stop = np.where(predicted, plan.speculative[None, :], stop)
    if skip:
        stop_nonzero = np.where(predicted, nz_spec, stop_nonzero)
    going_on = ~predicted & ~unclear
    unclear |= going_on & (np.abs(at_first_check) <= tolerance)
    at_phase_end = going_on & (at_first_check < -tolerance)
    stop = np.where(at_phase_end, plan.first_check[None, :], stop)
    if skip:
        stop_nonzero = np.where(at_phase_end, nz_spec + nz_positive, stop_nonzero)
    crossing = going_on & (at_first_check > tolerance)
    unclear |= crossing & (np.abs(full) <= tolerance)
    walked = crossing & (full < -tolerance)
    halted = predicted | at_phase_end | walked

    all_windows, all_filters = np.nonzero(walked)  # window-major
    if all_windows.size:
        all_first, all_starts, all_nonzero_before = _checkpoint_starts(
            operands, negative_phase, at_first_check, tolerance, all_windows, all_filters, skip
        )
    # Walk a group of windows whose operands stay in cache (the walk gathers from them at random).
    group = max(1, _WALK_GROUP_BYTES // (8 * operands.shape[1]))
    bounds = np.searchsorted(all_windows, np.arange(0, n_windows + group, group))
    for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if first == last:
            continue
        windows, filters = all_windows[first:last], all_filters[first:last]
        low = int(windows[0]) // group * group
        issued, issued_nonzero, too_close = _walk_negative_phase(
            operands[low : low + group],
            negative_phase,
            windows - low,
            filters,
            all_first[first:last],
            all_starts[first:last],
            tolerance[windows, filters],
            skip,
        )
        stop[windows, filters] = plan.first_check[filters] + issued
        if skip:
            stop_nonzero[windows, filters] = (
                (nz_spec + nz_positive)[windows, filters] + all_nonzero_before[first:last] + issued_nonzero
            )
        unclear[windows[too_close], filters[too_close]] = True

    output[:] = np.where(halted, 0.0, np.maximum(full, 0.0))
    mispredicted[:] = predicted & (full > 0)
    macs[:] = stop_nonzero if skip else stop
    windows, filters = np.nonzero(unclear)
    if windows.size:
        replayed_macs, _, replayed_output, replayed_mispredicted = _replay(
            operands, weights, bias, plan, threshold, windows, filters, skip
        )
        macs[windows, filters] = replayed_macs
        output[windows, filters] = replayed_output
        mispredicted[windows, filters] = replayed_mispredicted
    terminated[:] = macs < unterminated


def check_layer_inputs(
    n_positions: int, weights_kn, bias_k, threshold, chunk_windows
) -> tuple[np.ndarray, np.ndarray, float]:
    """The checks every early-termination mechanism makes of its layer: finite ``(K, n_positions)`` weights,
    ``(K,)`` bias, a threshold that is not NaN and ``chunk_windows >= 1``. Returns weights, bias, threshold.
    """
    weights = finite_matrix(weights_kn, "weights_kn", 2)
    bias = finite_matrix(bias_k, "bias_k", 1)
    n_filters = weights.shape[0]
    if weights.shape[1] != n_positions:
        raise ValueError(
            f"operands_pn has {n_positions} positions per window but weights_kn has {weights.shape[1]}"
        )
    if bias.shape[0] != n_filters:
        raise ValueError(f"bias_k has {bias.shape[0]} entries for {n_filters} filters")
    threshold = float(threshold)
    if np.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    if (
        isinstance(chunk_windows, bool)
        or not isinstance(chunk_windows, int | np.integer)
        or chunk_windows < 1
    ):
        raise ValueError(f"chunk_windows must be an int >= 1, got {chunk_windows!r}")
    return weights, bias, threshold
