"""Eyeriss's row-stationary fold (:mod:`sparsesim.sparse.row_stationary`) against the cycle-stepped
reference (:mod:`tests.reference.row_stationary_reference`), which lays the logical PE sets out on a grid of
physical PEs, deals them the units and ticks the clock MAC by MAC.

On synthetic tiles (named as such) covering every fold regime, on random small tiles (hypothesis) and on
real cuts of the shipped VGG16 trace on Eyeriss v1's 12 x 14 array: the fast cycles equal the reference's;
the reference performs every MAC once and its output is numpy's convolution; the pairs a PE holds stay
within the fast model's bound. The fast model's cycles never grow with more PE rows or columns.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from sparsesim.sparse.row_stationary import fold, pairs_per_pe, set_units, tile_cycles, words_per_pe
from tests.conftest import HWCONFIG_DIR
from tests.reference.row_stationary_reference import reference_tile


class Case(NamedTuple):
    name: str
    rows: int  # H: PE rows
    columns: int  # W: PE columns
    filters: int  # k
    channels: int  # c
    kernel_rows: int  # R
    kernel_columns: int  # S
    out_rows: int  # E
    out_columns: int  # Q
    stride: int


# Synthetic tiles: (sets high x wide, units per pair) in the comments. Together they cover R < H, R == H,
# R > H (several passes, a partial last pass), E < W, E == W, E > W (a partial last strip), pairs < sets
# (runs of units, some straddling two pairs), == sets, > sets (not a multiple), stride 1 and 2, S 1 and 3.
SYNTHETIC = [
    Case("synthetic_R<H_E<W_pairs>sets", 4, 6, 4, 2, 2, 3, 2, 3, 1),  # 2x3 sets, 1 unit; 8 pairs on 6
    Case("synthetic_R<H_E<W_pairs<sets", 8, 6, 1, 2, 3, 3, 2, 4, 1),  # 2x3, 1
    Case("synthetic_R<H_E<W_pairs<sets_S1", 9, 7, 2, 2, 3, 1, 3, 5, 2),  # 3x2, 1
    Case("synthetic_R==H_E==W_pairs==sets", 3, 4, 1, 1, 3, 3, 4, 3, 1),  # 1x1, 1
    Case("synthetic_R==H_E==W_pairs>sets", 3, 4, 2, 3, 3, 3, 4, 2, 2),  # 1x1, 1
    Case("synthetic_R==H_E>W_partial_strip", 3, 3, 1, 2, 3, 3, 7, 3, 1),  # 1x1, 3 strips
    Case("synthetic_R>H_5_on_4", 4, 5, 2, 1, 5, 3, 5, 3, 1),  # 1x1, 2 passes (3 + 2 rows)
    Case("synthetic_R>H_7_on_4_stride2", 4, 3, 1, 2, 7, 3, 3, 2, 2),  # 1x1, 2 passes (4 + 3 rows)
    Case("synthetic_R>H_7_on_4_strips_S1", 4, 2, 1, 1, 7, 1, 5, 4, 1),  # 1x1, 2 passes x 3 strips
    Case("synthetic_R>H_5_on_4_pairs>sets", 4, 6, 3, 3, 5, 3, 2, 2, 1),  # 1x3, 2 passes; 9 pairs on 3 sets
    Case("synthetic_E>W_pairs<sets_straddle", 8, 2, 3, 1, 2, 3, 10, 2, 1),  # 4x1, 5 strips; runs of 4
    Case("synthetic_E>W_pairs==sets", 8, 2, 2, 2, 2, 1, 5, 3, 2),  # 4x1, 3 strips
    Case("synthetic_E>W_pairs>sets_not_multiple", 4, 3, 3, 2, 2, 3, 4, 2, 1),  # 2x1, 2 strips; 6 on 2
    Case("synthetic_E>W_pairs>sets_uneven", 6, 3, 4, 1, 2, 3, 5, 2, 2),  # 3x1, 2 strips; 4 on 3: 2 x 2 units
    Case("synthetic_R>H_E>W_pairs==sets", 4, 4, 1, 1, 6, 3, 9, 2, 1),  # 1x1, 2 passes x 3 strips
    Case("synthetic_R>H_E<W_pairs<sets", 5, 9, 1, 2, 7, 3, 2, 2, 2),  # 1x4, 2 passes; 4 units on 4 sets
    Case("synthetic_R1_S1_pairs<sets", 3, 5, 2, 2, 1, 1, 2, 4, 1),  # 3x2, 1 unit; 4 pairs on 6
]


def synthetic_tile(case: Case, seed: int = 0):
    """Synthetic weights (k, c, R, S) and a padded input just large enough for the tile, with zeros."""
    rng = np.random.default_rng(seed)
    height = (case.out_rows - 1) * case.stride + case.kernel_rows
    width = (case.out_columns - 1) * case.stride + case.kernel_columns
    weights = rng.standard_normal((case.filters, case.channels, case.kernel_rows, case.kernel_columns))
    x = rng.standard_normal((case.channels, height, width))
    x[rng.random(x.shape) < 0.3] = 0.0
    return weights, x


def numpy_convolution(weights, x, stride):
    """``out[k, y, q] = sum_{c,r,s} w[k, c, r, s] x[c, y stride + r, q stride + s]`` (x already padded)."""
    windows = sliding_window_view(x, weights.shape[2:], axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("kcrs,ceqrs->keq", weights, windows)


def check_tile(rows, columns, weights, x, stride):
    """The fast model equals the reference on one tile; returns the reference's result."""
    k, c, kernel_rows, kernel_columns = weights.shape
    expected = numpy_convolution(weights, x, stride)
    out_rows, out_columns = expected.shape[1:]
    f = fold(rows, columns, kernel_rows, out_rows)
    result = reference_tile(rows, columns, weights, x, stride, out_rows)
    assert result.sets == f.sets
    assert result.cycles == tile_cycles(f, k * c, out_columns, kernel_columns)
    assert result.macs == k * c * out_rows * out_columns * kernel_rows * kernel_columns
    np.testing.assert_allclose(np.asarray(result.output), expected, rtol=0, atol=1e-9)
    most_pairs = max(max(row) for row in result.pairs_held)
    if k * c >= f.sets:
        assert most_pairs == pairs_per_pe(f, k * c)
    else:
        assert most_pairs <= pairs_per_pe(f, k * c)
    # The weight scratchpad's budget: a filter row of S words per pair and pass held.
    most_words = max(max(row) for row in result.filter_rows_held) * kernel_columns
    assert most_words <= words_per_pe(f, k * c, kernel_columns)
    return result


def test_synthetic_cases_cover_every_regime():
    regimes = set()
    for case in SYNTHETIC:
        f = fold(case.rows, case.columns, case.kernel_rows, case.out_rows)
        pairs = case.filters * case.channels
        regimes.add(
            "R<H" if case.kernel_rows < case.rows else "R==H" if case.kernel_rows == case.rows else "R>H"
        )
        regimes.add(
            "E<W" if case.out_rows < case.columns else "E==W" if case.out_rows == case.columns else "E>W"
        )
        if case.out_rows > case.columns and case.out_rows % case.columns:
            regimes.add("partial strip")
        if case.kernel_rows > case.rows and case.kernel_rows % f.set_rows:
            regimes.add("partial pass")
        if f.sets_wide > 1:
            regimes.add("several sets wide")
        regimes.add("pairs<sets" if pairs < f.sets else "pairs==sets" if pairs == f.sets else "pairs>sets")
        if pairs > f.sets and pairs % f.sets:
            regimes.add("pairs>sets, not a multiple")
        if pairs < f.sets and pairs * f.units_per_pair % f.sets:
            regimes.add("uneven runs")
        if pairs > f.sets and -(-pairs // f.sets) * f.units_per_pair > -(-pairs * f.units_per_pair // f.sets):
            regimes.add("whole pairs dealt: slower than their units would be")
        regimes.add(f"stride {case.stride}")
        regimes.add(f"S {case.kernel_columns}")
        regimes.add(f"R {case.kernel_rows}")
    assert regimes >= {
        "R<H",
        "R==H",
        "R>H",
        "E<W",
        "E==W",
        "E>W",
        "partial strip",
        "partial pass",
        "several sets wide",
        "pairs<sets",
        "pairs==sets",
        "pairs>sets",
        "pairs>sets, not a multiple",
        "uneven runs",
        "whole pairs dealt: slower than their units would be",
        "stride 1",
        "stride 2",
        "S 1",
        "S 3",
        "R 5",
        "R 7",
    }


@pytest.mark.parametrize("case", SYNTHETIC, ids=lambda case: case.name)
def test_synthetic_tiles_equal_the_cycle_stepped_reference(case):
    weights, x = synthetic_tile(case)
    result = check_tile(case.rows, case.columns, weights, x, case.stride)
    # Every physical PE outside the sets' rectangles stays idle.
    for row in range(case.rows):
        for column in range(case.columns):
            if result.set_of_pe[row][column] is None:
                assert result.pairs_held[row][column] == 0


def test_a_run_of_units_straddling_two_pairs_holds_both():
    """Runs of 4 units of 5 (strips) per pair: set 1 runs the last unit of pair 0 and three of pair 1."""
    case = next(c for c in SYNTHETIC if c.name == "synthetic_E>W_pairs<sets_straddle")
    weights, x = synthetic_tile(case)
    f = fold(case.rows, case.columns, case.kernel_rows, case.out_rows)
    assert (f.sets, f.units_per_pair, set_units(f, 3)) == (4, 5, 4)
    result = reference_tile(case.rows, case.columns, weights, x, case.stride, case.out_rows)
    assert result.set_of_pe[2][0] == (1, 0, 0)  # set 1's PE (0, 0)
    assert result.pairs_held[2][0] == 2 <= pairs_per_pe(f, 3)


@st.composite
def synthetic_tiles(draw):
    """A small synthetic tile (random shapes, small integer values with zeros) and an array."""
    rows, columns = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    filters, channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel_rows, kernel_columns = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    out_rows, out_columns, stride = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    values = np.array([0.0, 0.0, 1.0, -2.0, 3.0])
    weights = rng.choice(values, (filters, channels, kernel_rows, kernel_columns))
    x = rng.choice(
        values,
        (channels, (out_rows - 1) * stride + kernel_rows, (out_columns - 1) * stride + kernel_columns),
    )
    return rows, columns, weights, x, stride


@settings(max_examples=150, deadline=None)
@given(synthetic_tiles())
def test_random_synthetic_tiles_equal_the_reference_and_never_beat_the_compute_bound(tile):
    rows, columns, weights, x, stride = tile
    result = check_tile(rows, columns, weights, x, stride)
    k, c, kernel_rows, kernel_columns = weights.shape
    out_rows, out_columns = numpy_convolution(weights, x, stride).shape[1:]
    macs = k * c * out_rows * out_columns * kernel_rows * kernel_columns
    cycles = tile_cycles(fold(rows, columns, kernel_rows, out_rows), k * c, out_columns, kernel_columns)
    assert cycles == result.cycles >= -(-macs // (rows * columns))


def test_more_pe_rows_or_columns_never_take_more_cycles():
    """On the fast model, over a grid of arrays and tiles: one more PE row, or one more PE column, never
    makes a tile slower."""
    pair_counts = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 16, 23, 24, 48, 96, 97)
    out_columns, kernel_columns = 7, 3  # a common factor of every tile's cycles
    for kernel_rows in (1, 2, 3, 4, 5, 7, 11):
        for out_rows in range(1, 31):
            cycles = {}
            for rows in range(1, 15):
                for columns in range(1, 17):
                    f = fold(rows, columns, kernel_rows, out_rows)
                    cycles[rows, columns] = [
                        tile_cycles(f, p, out_columns, kernel_columns) for p in pair_counts
                    ]
            for (rows, columns), here in cycles.items():
                for bigger in ((rows + 1, columns), (rows, columns + 1)):
                    for pairs, now, then in zip(pair_counts, here, cycles.get(bigger, here), strict=True):
                        assert then <= now, (
                            f"R={kernel_rows} E={out_rows} pairs={pairs}: array {rows}x{columns} takes "
                            f"{now} cycles, {bigger[0]}x{bigger[1]} takes {then}"
                        )


@pytest.fixture(scope="module")
def eyeriss_v1_array():
    from sparsesim.config import load_hwconfig

    array = load_hwconfig(HWCONFIG_DIR / "eyeriss_v1.yaml").pe_array
    assert (array.rows, array.columns) == (12, 14)  # the paper's 168 PEs
    return array.rows, array.columns


# Real cuts of conv2_1 (real weights, real ReLU input with its zeros; padding 1 at the image's top and left
# edges): (filters, channels, first output row, output rows, first output column, output columns).
REAL_CUTS = [
    ("conv2_1_pairs>sets", slice(0, 4), slice(8, 11), 0, 14, 0, 6),  # 4x1 sets of 3x14; 12 pairs
    ("conv2_1_strips_pairs<sets", slice(5, 6), slice(0, 3), 30, 20, 40, 5),  # 2 strips; 3 pairs on 4 sets
    ("conv2_1_several_wide", slice(10, 13), slice(20, 25), 50, 5, 70, 9),  # 4x2 sets of 3x5; 15 pairs
]


def real_cut(trace, filters, channels, first_row, out_rows, first_column, out_columns):
    layer = trace.layer("conv2_1")
    assert layer.stride == 1 and layer.weights.shape[2:] == (3, 3)
    pad = layer.padding
    padded = np.pad(np.asarray(layer.input[channels], dtype=np.float64), ((0, 0), (pad, pad), (pad, pad)))
    x = padded[:, first_row : first_row + out_rows + 2, first_column : first_column + out_columns + 2]
    return np.asarray(layer.weights[filters, channels], dtype=np.float64), x


@pytest.mark.parametrize("cut", REAL_CUTS, ids=[cut[0] for cut in REAL_CUTS])
def test_real_cuts_on_eyeriss_v1_equal_the_reference(vgg16_trace, eyeriss_v1_array, cut):
    weights, x = real_cut(vgg16_trace, *cut[1:])
    assert (x == 0).any()  # real ReLU zeros (and padding)
    check_tile(*eyeriss_v1_array, weights, x, 1)


def test_a_real_output_corner_summed_over_all_channels_is_the_traces(vgg16_trace, eyeriss_v1_array):
    """Two filters over all 64 channels (128 pairs, 8 per set) for the first 3 x 4 outputs of conv2_1: the
    reference's partial sums, plus the bias and ReLU, are the trace's stored output (float32)."""
    layer = vgg16_trace.layer("conv2_1")
    weights, x = real_cut(vgg16_trace, slice(0, 2), slice(0, 64), 0, 3, 0, 4)
    result = check_tile(*eyeriss_v1_array, weights, x, 1)
    assert result.cycles == 8 * 4 * 3
    out = np.maximum(np.asarray(result.output) + layer.bias[:2, None, None].astype(np.float64), 0.0)
    np.testing.assert_allclose(out, layer.output[:2, :3, :4], rtol=1e-6, atol=1e-6)
