"""SCNN's Cartesian product, pure logic: properties on synthetic tensors (named as such), the cycle-stepped
reference on synthetic and real cuts, and the counts that must equal closed forms on whole real layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.sparse import cartesian
from sparsesim.sparse.activation_work import effectual_macs
from sparsesim.sparse.cartesian import (
    ARBITRATIONS,
    PeGrid,
    bank_of,
    group_work,
    issue_activations,
    issue_weights,
    output_channel_group,
    plan_band,
    split_bounds,
)
from sparsesim.sparse.geometry import ConvGeometry
from sparsesim.workload.ops import conv2d_reference
from tests.reference.cartesian_reference import reference_band

grids = st.builds(
    PeGrid,
    rows=st.integers(1, 3),
    columns=st.integers(1, 3),
    weights_per_vector=st.integers(1, 4),
    activations_per_vector=st.integers(1, 4),
    banks=st.integers(1, 8),
)


@st.composite
def synthetic_layers(draw):
    """A synthetic conv layer (small integers, many zeros), a PE grid, a band and a group size."""
    kernel = draw(st.sampled_from([1, 3]))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 1)) if kernel == 3 else 0
    channels, height, width = draw(st.integers(1, 3)), draw(st.integers(3, 7)), draw(st.integers(3, 7))
    filters = draw(st.integers(1, 5))
    values = st.sampled_from([0.0, 0.0, 1.0, -2.0, 3.0])
    x = draw(arrays(np.float64, (channels, height, width), elements=values))
    w = draw(arrays(np.float64, (filters, channels, kernel, kernel), elements=values))
    shape = ConvGeometry(channels, height, width, filters, kernel, kernel, stride, padding)
    band_start = draw(st.integers(0, shape.out_height - 1))
    band_stop = draw(st.integers(band_start + 1, shape.out_height))
    return (
        x,
        w,
        shape,
        draw(grids),
        (band_start, band_stop),
        draw(st.integers(1, filters)),
        draw(st.booleans()),
    )


def fast_band(x, w, shape, grid, band_rows, group, dense, arbitration="stall"):
    """The fast model's counts over a band, group after group, in the reference's terms."""
    band = plan_band(shape, grid, *band_rows)
    activations = issue_activations(x, band, dense)
    counts = dict.fromkeys(
        ("steps", "products", "kept_products", "halo_products", "activation_reads", "weight_reads"), 0
    )
    pe_cycles = np.zeros(grid.pes, dtype=np.int64)
    sums = np.zeros((w.shape[0], band_rows[1] - band_rows[0], shape.out_width))
    compute, exchange = [], []
    for first in range(0, w.shape[0], group):
        n = min(w.shape[0], first + group) - first
        weights = issue_weights(w[first : first + n], first, grid, dense)
        work = group_work(activations, weights, band, n, first, True, arbitration)
        counts["steps"] += int(work.steps.sum())
        for key in ("products", "kept_products", "halo_products", "activation_reads", "weight_reads"):
            counts[key] += getattr(work, key)
        pe_cycles += work.cycles
        sums[first : first + n] = work.sums
        compute.append(int(work.cycles.max()))
        exchange.append(int(band.halo_entries.max()) * n)
    cycles = sum(max(c, h) for c, h in zip(compute, [0, *exchange[:-1]], strict=True)) + exchange[-1]
    counts.update(
        cycles=cycles,
        pe_cycles=pe_cycles.tolist(),
        halo_words=int(band.halo_entries.sum()) * w.shape[0],
        largest_region=int(band.accumulator_entries.max()),
    )
    return counts, sums


def reference_sums(sums, filters, band_rows, out_width):
    array = np.zeros((filters, band_rows[1] - band_rows[0], out_width))
    for (k, y, x), value in sums.items():
        array[k, y - band_rows[0], x] = value
    return array


@settings(max_examples=200, deadline=None)
@given(synthetic_layers(), st.sampled_from(ARBITRATIONS))
def test_fast_band_equals_the_cycle_stepped_reference_on_synthetic_layers(layer, arbitration):
    x, w, shape, grid, band_rows, group, dense = layer
    fast, sums = fast_band(x, w, shape, grid, band_rows, group, dense, arbitration)
    counts, reference = reference_band(
        x.tolist(),
        w.tolist(),
        stride=shape.stride,
        padding=shape.padding,
        band=band_rows,
        grid=(grid.rows, grid.columns, grid.weights_per_vector, grid.activations_per_vector, grid.banks),
        group_filters=group,
        dense=dense,
        arbitration=arbitration,
    )
    assert fast == counts
    np.testing.assert_array_equal(sums, reference_sums(reference, w.shape[0], band_rows, shape.out_width))


@settings(max_examples=80, deadline=None)
@given(synthetic_layers())
def test_queues_never_take_longer_than_stalls_and_take_at_least_a_cycle_per_step(layer):
    x, w, shape, grid, band_rows, group, dense = layer
    stall, _ = fast_band(x, w, shape, grid, band_rows, group, dense, "stall")
    queue, _ = fast_band(x, w, shape, grid, band_rows, group, dense, "queue")
    for stalled, queued in zip(stall["pe_cycles"], queue["pe_cycles"], strict=True):
        assert queued <= stalled
    assert sum(queue["pe_cycles"]) >= queue["steps"]
    assert queue["cycles"] <= stall["cycles"]


@settings(max_examples=80, deadline=None)
@given(synthetic_layers())
def test_whole_layer_keeps_exactly_the_effectual_macs_and_sums_to_the_convolution(layer):
    x, w, shape, grid, _, group, _ = layer
    whole = (0, shape.out_height)
    fast, sums = fast_band(x, w, shape, grid, whole, group, dense=False)
    assert fast["kept_products"] == effectual_macs(x, w, shape.stride, shape.padding)
    expected = conv2d_reference(x, w, np.zeros(w.shape[0]), shape.stride, shape.padding)
    np.testing.assert_allclose(sums, expected, rtol=0, atol=1e-9)
    # Every issued activation (of the input rows some output needs) meets every issued weight of its channel.
    first, stop = shape.input_rows(*whole)
    nonzero_weights = np.count_nonzero(w, axis=(0, 2, 3))
    assert fast["products"] == int(np.count_nonzero(x[:, first:stop], axis=(1, 2)) @ nonzero_weights)


@settings(max_examples=80, deadline=None)
@given(synthetic_layers())
def test_dense_issue_keeps_every_mac_whose_input_is_inside_the_image(layer):
    x, w, shape, grid, _, group, _ = layer
    fast, _ = fast_band(x, w, shape, grid, (0, shape.out_height), group, dense=True)
    assert fast["kept_products"] == effectual_macs(
        np.ones_like(x), np.ones_like(w), shape.stride, shape.padding
    )
    first, stop = shape.input_rows(0, shape.out_height)
    assert fast["products"] == x[0, first:stop].size * w[:, 0].size * x.shape[0]


@settings(max_examples=80, deadline=None)
@given(synthetic_layers())
def test_cycles_lie_between_the_steps_and_one_cycle_per_kept_product(layer):
    x, w, shape, grid, band_rows, group, dense = layer
    fast, _ = fast_band(x, w, shape, grid, band_rows, group, dense)
    busy = sum(fast["pe_cycles"])
    assert fast["steps"] <= busy <= fast["steps"] + fast["kept_products"]
    assert fast["halo_products"] <= fast["kept_products"] <= fast["products"]
    assert fast["products"] <= fast["steps"] * grid.weights_per_vector * grid.activations_per_vector


@settings(max_examples=60, deadline=None)
@given(synthetic_layers())
def test_one_bank_serialises_every_kept_product_and_one_pe_has_no_halo(layer):
    x, w, shape, _, band_rows, group, dense = layer
    grid = PeGrid(1, 1, 3, 2, 1)
    band = plan_band(shape, grid, *band_rows)
    activations = issue_activations(x, band, dense)
    work = group_work(activations, issue_weights(w, 0, grid, dense), band, w.shape[0], 0)
    assert work.halo_products == 0
    # With one bank a step costs one cycle per kept product (at least one): at most steps + kept.
    assert int(work.cycles.sum()) >= work.kept_products
    assert int(work.cycles.sum()) >= int(work.steps.sum())


@given(st.integers(0, 60), st.integers(1, 9))
def test_split_bounds_partition_into_parts_that_differ_by_at_most_one(n, parts):
    bounds = split_bounds(n, parts)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == n and (sizes >= 0).all()
    assert sizes.max() - sizes.min() <= 1


@settings(max_examples=100, deadline=None)
@given(synthetic_layers())
def test_band_plan_holds_each_needed_input_once_and_regions_cover_the_own_tiles(layer):
    _, _, shape, grid, band_rows, _, _ = layer
    band = plan_band(shape, grid, *band_rows)
    first, stop = shape.input_rows(*band_rows)
    held = band.input_row_pe >= 0
    assert held.sum() == stop - first and held[first:stop].all()
    assert (np.diff(band.input_row_pe[first:stop]) >= 0).all()  # planar: contiguous, in grid order
    assert ((band.input_col_pe >= 0) & (band.input_col_pe < grid.columns)).all()
    assert (band.halo_entries >= 0).all()
    assert (band.own_rows <= np.diff(band.out_row_bounds)).all()
    assert output_channel_group([band], 1000) * band.accumulator_entries.max() <= 1000


@given(
    st.integers(0, 50),
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(1, 30),
    grids,
    st.integers(-99, 99),
)
def test_banks_are_in_range_and_a_shift_of_filters_rotates_them(k, y, x, width, grid, shift):
    bank = bank_of(k, y, x, width, grid)
    assert 0 <= bank < grid.banks
    assert bank_of(k + shift, y, x, width, grid) == (bank + shift) % grid.banks


def test_four_consecutive_filters_times_four_neighbouring_outputs_meet_sixteen_banks():
    grid = PeGrid(1, 1, 4, 4, 32)
    row = {int(bank_of(k, 5, x, 22, grid)) for k in range(4) for x in range(3, 7)}
    assert len(row) == 16
    wrapping = {int(bank_of(k, y, x, 6, grid)) for k in range(4) for y, x in ((0, 4), (0, 5), (1, 0), (1, 1))}
    assert len(wrapping) == 16  # consecutive outputs of a region row-major, across a row end


def test_group_size_follows_the_largest_accumulator_region():
    shape = ConvGeometry(64, 112, 160, 64, 3, 3, 1, 1)
    band = plan_band(shape, PeGrid(8, 8, 4, 4, 32), 0, 112)
    assert band.tile_shape == (14, 20)
    assert int(band.accumulator_entries.max()) == 16 * 22  # a tile plus a one-pixel halo all round
    assert output_channel_group([band], 32 * 32) == 2
    assert int(band.halo_entries.min()) == 15 * 21 - 14 * 20  # a corner PE: halo on two sides only


def test_a_band_whose_outputs_read_only_padding_holds_no_input_row():
    # Synthetic: a 1x1 kernel of stride 4 with padding 2; output row 0 reads padded row 0, which is padding.
    x = np.arange(1.0, 41.0).reshape(2, 4, 5)
    w = np.ones((3, 2, 1, 1))
    shape = ConvGeometry(2, 4, 5, 3, 1, 1, 4, 2)
    assert shape.input_rows(0, 1) == (0, 0)
    fast, sums = fast_band(x, w, shape, PeGrid(2, 2, 2, 2, 4), (0, 1), 3, dense=False)
    counts, reference = reference_band(
        x.tolist(),
        w.tolist(),
        stride=4,
        padding=2,
        band=(0, 1),
        grid=(2, 2, 2, 2, 4),
        group_filters=3,
        dense=False,
    )
    assert fast == counts
    assert fast["products"] == fast["activation_reads"] == 0
    np.testing.assert_array_equal(sums, reference_sums(reference, 3, (0, 1), shape.out_width))


def test_mismatched_channels_are_refused():
    shape = ConvGeometry(2, 4, 4, 1, 3, 3, 1, 1)
    grid = PeGrid(1, 1, 2, 2, 4)
    band = plan_band(shape, grid, 0, 4)
    activations = issue_activations(np.ones((2, 4, 4)), band, dense=False)
    with pytest.raises(ValueError, match="2 channels, the weights 3"):
        group_work(activations, issue_weights(np.ones((1, 3, 3, 3)), 0, grid, False), band, 1, 0)
    with pytest.raises(ValueError, match="non-empty range"):
        plan_band(shape, grid, 3, 3)
    with pytest.raises(ValueError, match="finite"):
        issue_activations(np.full((1, 4, 4), np.nan), band, dense=False)


REAL_CUTS = [  # (layer, channels, rows, columns, filters)
    ("conv1_2", slice(0, 5), slice(20, 28), slice(30, 39), 6),
    ("conv3_1", slice(16, 24), slice(3, 10), slice(10, 18), 5),
    ("conv5_2", slice(100, 108), slice(0, 7), slice(0, 10), 4),
]


@pytest.mark.parametrize("arbitration", ARBITRATIONS)
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("cut", REAL_CUTS, ids=[c[0] for c in REAL_CUTS])
def test_fast_band_equals_the_reference_on_real_cuts(vgg16_trace, cut, dense, arbitration):
    for band_rows, group in (((0, None), 2), ((2, 5), 4)):  # None: to the last output row
        assert_band_equals_the_reference(vgg16_trace, cut, 32, band_rows, group, dense, arbitration)


def assert_band_equals_the_reference(vgg16_trace, cut, banks, band_rows, group, dense, arbitration) -> dict:
    """Run one band of a real cut (3x3 kernels, stride 1, padding 1) through the fast model and the
    cycle-stepped reference on a 3 x 2 grid of 4 x 4 multipliers; assert equal counts and sums.
    ``band_rows``: ``(first, stop)`` output rows, ``stop`` None for the last."""
    name, channels, rows, cols, filters = cut
    layer = vgg16_trace.layer(name)
    x = layer.input[channels, rows, cols].astype(np.float64)
    w = layer.weights[:filters, channels].astype(np.float64)
    shape = ConvGeometry(*x.shape, w.shape[0], 3, 3, 1, 1)
    band_rows = (band_rows[0], shape.out_height if band_rows[1] is None else band_rows[1])
    fast, sums = fast_band(x, w, shape, PeGrid(3, 2, 4, 4, banks), band_rows, group, dense, arbitration)
    counts, reference = reference_band(
        x.tolist(),
        w.tolist(),
        stride=1,
        padding=1,
        band=band_rows,
        grid=(3, 2, 4, 4, banks),
        group_filters=group,
        dense=dense,
        arbitration=arbitration,
    )
    assert fast == counts
    np.testing.assert_allclose(
        sums, reference_sums(reference, filters, band_rows, shape.out_width), rtol=1e-12, atol=1e-9
    )
    return counts


@pytest.mark.parametrize("arbitration", ARBITRATIONS)
@pytest.mark.parametrize("banks", [32, 64], ids=["tallied", "too_many_banks_to_tally"])
@pytest.mark.parametrize("table_bytes", [cartesian._TABLE_BYTES, 0], ids=["vector_tables", "slot_tables"])
def test_every_way_of_looking_up_banks_equals_the_reference(
    vgg16_trace, monkeypatch, table_bytes, banks, arbitration
):
    """A step's banks are looked up per weight vector while the tables stay small, else per weight slot
    (pruned weights: vectors differ from channel to channel); stalling steps are found by their tallies,
    unless the banks are too many for a 64-bit tally (every step is then counted). Each way gives the
    reference's counts."""
    monkeypatch.setattr(cartesian, "_TABLE_BYTES", table_bytes)
    counts = assert_band_equals_the_reference(
        vgg16_trace, REAL_CUTS[0], banks, (0, None), 3, False, arbitration
    )
    assert sum(counts["pe_cycles"]) > counts["steps"]  # products do meet in banks
