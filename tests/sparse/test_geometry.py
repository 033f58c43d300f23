"""A layer's loop bounds and the one output-size formula: floor as the frameworks, ceil as SCALE-Sim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim.sparse.geometry import ConvGeometry, output_size


@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 5), padding=st.integers(0, 4))
def test_output_size_counts_the_window_positions_inside_the_padded_input(size, kernel, stride, padding):
    if size + 2 * padding < kernel:
        assert output_size(size, kernel, stride, padding) < 1
        return
    starts = range(0, size + 2 * padding - kernel + 1, stride)  # every window wholly inside
    assert output_size(size, kernel, stride, padding) == len(starts)


@given(size=st.integers(1, 40), kernel=st.integers(1, 40), stride=st.integers(1, 8))
def test_ceil_output_size_is_scalesims_formula(size, kernel, stride):
    if kernel > size:
        return
    scalesim = math.ceil((size - kernel + stride) / stride)
    assert output_size(size, kernel, stride, ceil=True) == scalesim


def test_ceil_counts_a_last_window_that_runs_past_the_edge():
    assert output_size(7, 3, 2) == 3  # windows at 0, 2, 4
    assert output_size(8, 3, 2) == 3  # floor: the window at 6 would need column 8
    assert output_size(8, 3, 2, ceil=True) == 4


def test_geometry_derives_the_output_plane_and_the_dense_macs():
    geometry = ConvGeometry(3, 10, 12, 8, 3, 3, 2, 1)
    assert (geometry.out_height, geometry.out_width) == (5, 6)
    assert geometry.kernel_positions == 9
    assert geometry.algorithmic_macs == 8 * 3 * 9 * 5 * 6
    assert ConvGeometry(np.int64(3), 10, 12, 8, 3, 3, 2, 1) == geometry  # numpy ints are ints


def test_input_rows_are_the_unpadded_rows_outputs_read():
    geometry = ConvGeometry(1, 10, 10, 1, 3, 3, 1, 1)
    assert geometry.input_rows(0, 1) == (0, 2)  # the top padding row is not an input row
    assert geometry.input_rows(4, 6) == (3, 7)
    assert geometry.input_rows(9, 10) == (8, 10)
    only_padding = ConvGeometry(1, 4, 5, 1, 1, 1, 4, 2)  # output row 0 reads padded row 0
    assert only_padding.input_rows(0, 1) == (0, 0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 4, 4, 1, 3, 3, 1, 1), "ConvGeometry.channels must be an int >= 1, got 0"),
        ((1, 4, 4, 1, 3, 3, 0, 1), "ConvGeometry.stride must be an int >= 1, got 0"),
        ((1, 4, 4, 1, 3, 3, 1, -1), "ConvGeometry.padding must be an int >= 0, got -1"),
        ((1, 4.0, 4, 1, 3, 3, 1, 1), "ConvGeometry.height must be an int >= 1, got 4.0"),
        ((1, 4, 4, True, 3, 3, 1, 1), "ConvGeometry.filters must be an int >= 1, got True"),
        ((1, 2, 4, 1, 5, 3, 1, 1), "a 5x3 kernel does not fit a 2x4 input with padding 1"),
    ],
)
def test_impossible_geometries_are_refused_naming_the_field(arguments, message):
    with pytest.raises(ValueError, match=message):
        ConvGeometry(*arguments)
