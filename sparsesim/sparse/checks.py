"""Input checks shared by the pure mechanisms: clear ValueErrors instead of silently wrong counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from numpy.typing import NDArray

# Rows checked at a time, so that checking a large operand matrix needs no copy of its size.
CHECK_ROWS = 4096


def finite_matrix(values: object, name: str, ndim: int) -> NDArray[np.float64]:
    """``values`` as a C-contiguous float64 array of ``ndim`` dimensions, all finite (checked in slices)."""
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    for start in range(0, max(len(array), 1), CHECK_ROWS):
        if not np.isfinite(array[start : start + CHECK_ROWS]).all():
            raise ValueError(f"{name} must be finite; it holds NaN or infinite values")
    return array


#: A layer's operand matrix given as its bands: a callable returning (P_i, N) matrices of consecutive rows
#: (windows) whose concatenation is the (P, N) matrix; each call starts over from the first window.
OperandBands = Callable[[], Iterable[np.ndarray]]


def operand_bands(
    operands: np.ndarray | OperandBands, convert: Callable[[object], np.ndarray], weights_kn: np.ndarray
) -> tuple[Callable[[], Iterator[np.ndarray]], int, int, bool]:
    """One checking pass over a (P, N) operand matrix or its :data:`OperandBands`.

    ``convert`` checks one band (raising ``ValueError``) and returns it as the mechanism computes with it.
    Returns a callable yielding the converted bands (a matrix is its own single band), then P, N (with no
    band: the N of ``weights_kn``, if it is (K, N)) and whether every operand is >= 0.
    """
    if not callable(operands):
        matrix = convert(operands)
        return lambda: iter((matrix,)), matrix.shape[0], matrix.shape[1], _nonnegative(matrix)
    n_windows, n_positions, nonnegative = 0, None, True
    for band in operands():
        band = convert(band)
        if n_positions is not None and band.shape[1] != n_positions:
            raise ValueError(f"operand bands must all have {n_positions} columns, got {band.shape[1]}")
        n_positions = band.shape[1]
        n_windows += band.shape[0]
        nonnegative = nonnegative and _nonnegative(band)
    if n_positions is None:
        n_positions = np.shape(weights_kn)[1] if np.ndim(weights_kn) == 2 else 0
    return lambda: (convert(band) for band in operands()), n_windows, n_positions, nonnegative


def _nonnegative(matrix: np.ndarray) -> bool:
    return not any((matrix[i : i + CHECK_ROWS] < 0).any() for i in range(0, len(matrix), CHECK_ROWS))
