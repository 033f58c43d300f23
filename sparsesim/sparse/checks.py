"""Input checks shared by the pure mechanisms: clear ValueErrors instead of silently wrong counts."""

from __future__ import annotations

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
