"""Derived quantities shared by the whole package."""

from __future__ import annotations

import numpy as np

from sparsesim.quantities import percent, ratio


def test_ratio_is_a_float_and_undefined_over_zero():
    assert ratio(3, 4) == 0.75 and type(ratio(3, 4)) is float
    assert type(ratio(np.int64(3), np.int64(4))) is float  # JSON-able, whatever the counters' type
    assert ratio(5, 0) is None
    assert ratio(0, 0.0) is None
    assert ratio(0, 7) == 0.0


def test_percent_shows_one_decimal_and_an_undefined_share_as_n_a():
    assert percent(ratio(1, 8)) == "12.5%" and percent(ratio(2, 3)) == "66.7%" and percent(1.0) == "100.0%"
    assert percent(ratio(5, 0)) == "n/a"
