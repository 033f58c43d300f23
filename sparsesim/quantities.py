"""Derived quantities shared by every layer of sparsesim (pure: no imports from the package).

Any module may import this one, as it may import :mod:`sparsesim.errors` and :mod:`sparsesim.files`.
"""

from __future__ import annotations

__all__ = ["percent", "ratio"]


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` as a float, or ``None`` when the denominator is zero (undefined).

    Reports use it for every derived ratio (speed-up, utilisation, energy share...), so that an empty
    layer or a machine that did nothing shows ``null`` rather than raising or printing ``inf``.
    """
    return float(numerator) / float(denominator) if denominator else None


def percent(share: float | None) -> str:
    """A share (a :func:`ratio`) as a percentage with one decimal for tables; ``n/a`` when it is undefined."""
    return "n/a" if share is None else f"{share * 100:.1f}%"
