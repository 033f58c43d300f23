"""Structured weight sparsity, N:M: in every group of M consecutive input channels, at most N nonzero weights.

This is the pattern of sparse tensor cores (2:4 in NVIDIA's Ampere): for each filter ``k`` and kernel
position ``(r, s)``, the channels ``c`` are taken ``M`` at a time and at most ``N`` weights of each group are
nonzero. The hardware stores the ``N`` weights with a ``log2(M)``-bit index each and, per group, issues ``N``
MACs (each index selects its activation) instead of ``M``: at most ``M/N`` times the dense math throughput,
however many more zeros the weights hold. Pure numpy: masks, a conformance check, and the cycle rule.
"""

from __future__ import annotations

import re

import numpy as np


def parse_n_m(pattern: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``; requires ``1 <= N < M``."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(pattern))
    if not match or not 1 <= int(match[1]) < int(match[2]):
        raise ValueError(f"an N:M pattern needs integers 1 <= N < M, like '2:4'; got {pattern!r}")
    return int(match[1]), int(match[2])


def _groups(weights_kcrs: np.ndarray, m: int) -> np.ndarray:
    """View the weights as ``(K, C/M, M, R, S)``: the channel groups."""
    filters, channels, kernel_r, kernel_s = weights_kcrs.shape
    if channels % m:
        raise ValueError(f"N:M groups of {m} channels need a channel count divisible by {m}, got {channels}")
    return weights_kcrs.reshape(filters, channels // m, m, kernel_r, kernel_s)


def n_m_prune_mask(weights_kcrs: np.ndarray, n: int, m: int) -> np.ndarray:
    """Mask (``True`` = pruned) keeping the ``n`` largest ``|w|`` of every group of ``m`` channels.

    Ties keep the lower channel (a stable sort), so the mask depends only on the values.
    """
    groups = np.abs(_groups(np.asarray(weights_kcrs, dtype=np.float64), m))
    order = np.argsort(-groups, axis=2, kind="stable")  # descending |w|, stable: lower channel first
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return ~keep.reshape(weights_kcrs.shape)


def conforms_n_m(weights_kcrs: np.ndarray, n: int, m: int) -> bool:
    """Whether every group of ``m`` channels holds at most ``n`` nonzero weights (and ``C % m == 0``)."""
    if weights_kcrs.shape[1] % m:
        return False
    return bool((np.count_nonzero(_groups(weights_kcrs, m), axis=2) <= n).all())


def n_m_window_cycles(n_groups: int, lanes: int, kernel_positions: int, n: int) -> int:
    """Cycles of one window on a PE whose lanes share out ``n_groups`` channel groups (whole groups each).

    Per kernel position a lane issues ``n`` slots per group it owns; the busiest lane (``ceil(n_groups /
    lanes)`` groups) sets the pace. Dense, the same lane would spend ``m`` cycles per group.
    """
    return -(-n_groups // lanes) * n * kernel_positions


COARSE_GRANULARITIES = ("filter", "channel", "block")


def coarse_prune_mask(
    weights_kcrs: np.ndarray, sparsity: float, granularity: str, block: int = 4
) -> np.ndarray:
    """Mask (``True`` = pruned) removing whole groups of weights, those of smallest L1 norm.

    ``filter``: whole filters ``w[k]`` (a dense machine can drop them from the layer); ``channel``: whole
    input channels ``w[:, c]`` of every filter; ``block``: ``block`` consecutive input channels of one
    filter and kernel position (Scalpel's SIMD-aligned groups; ``C`` must be a multiple of ``block``).
    ``round(sparsity * number of groups)`` groups go, ties broken by position (a stable sort).
    """
    w = np.abs(np.asarray(weights_kcrs, dtype=np.float64))
    filters, channels, kernel_r, kernel_s = w.shape
    if granularity == "filter":
        scores = w.sum(axis=(1, 2, 3))
    elif granularity == "channel":
        scores = w.sum(axis=(0, 2, 3))
    elif granularity == "block":
        scores = _groups(w, block).sum(axis=2)  # (K, C/block, R, S)
    else:
        raise ValueError(f"unknown granularity {granularity!r}; known: {', '.join(COARSE_GRANULARITIES)}")
    flat = scores.reshape(-1)
    pruned_groups = np.zeros(flat.size, dtype=bool)
    pruned_groups[np.argsort(flat, kind="stable")[: int(round(sparsity * flat.size))]] = True
    pruned_groups = pruned_groups.reshape(scores.shape)
    if granularity == "filter":
        mask = np.broadcast_to(pruned_groups[:, None, None, None], w.shape)
    elif granularity == "channel":
        mask = np.broadcast_to(pruned_groups[None, :, None, None], w.shape)
    else:
        mask = np.repeat(pruned_groups, block, axis=1)
    return np.array(mask, dtype=bool)
