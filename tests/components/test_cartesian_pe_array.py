"""SCNN's Cartesian-product PE array: every band's cycles and actions equal the cycle-stepped reference on
small real cuts of the shipped trace and of a magnitude-pruned derivative; the output, summed from the kept
products, equals numpy's convolution; the PE array picks the mechanism its config names, and the planar
tiling and the group size behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.components import PeArray
from sparsesim.config import parse_hwconfig
from sparsesim.errors import SimulationError
from sparsesim.mapping import ConvGeometry, tile_layer_planar
from sparsesim.mechanisms.cartesian_product import CartesianProduct, CartesianProductDense
from sparsesim.mechanisms.dense import Dense
from sparsesim.workload.ops import conv2d_reference
from tests.reference.cartesian_reference import reference_band, reference_largest_region

# (layer, channel slice, row slice, column slice, filters): zeros, nonzeros and imbalance between PEs.
CUTS = [
    ("conv1_2", slice(0, 6), slice(20, 30), slice(30, 41), 5),
    ("conv3_1", slice(16, 26), slice(3, 12), slice(10, 20), 4),
    ("conv5_2", slice(100, 110), slice(0, 7), slice(0, 10), 3),
]
GRIDS = [  # rows, columns, F, I, banks, bank entries
    (2, 3, 4, 4, 32, 32),
    (3, 2, 2, 3, 5, 8),
]


def scnn_config(rows, columns, f, i, banks, entries, kind="cartesian_product", group=0, arbitration="stall"):
    """A small SCNN-like array; the accumulator parameters belong to the Cartesian-product kinds' block."""
    mechanism = {"kind": kind}
    if kind.startswith("cartesian_product"):
        mechanism.update(
            accumulator_banks=banks,
            accumulator_bank_entries=entries,
            output_channel_group=group,
            arbitration=arbitration,
        )
    return parse_hwconfig(
        {
            "name": "scnn-test",
            "pe_array": {
                "rows": rows,
                "columns": columns,
                "pe": {
                    "filter_lanes": f,
                    "activation_lanes": i,
                    "mechanism": mechanism,
                },
            },
        },
        source="test",
    )


def real_cut(layer, channels, rows, cols, filters):
    return (
        np.ascontiguousarray(layer.input[channels, rows, cols]),
        np.ascontiguousarray(layer.weights[:filters, channels]),
        np.ascontiguousarray(layer.bias[:filters]),
    )


def check_against_reference(x, w, b, grid, kind, arbitration="stall"):
    rows, columns, f, i, banks, entries = grid
    hw = scnn_config(*grid, kind=kind, arbitration=arbitration)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    # A small buffer, so that the layer splits into several bands.
    tiling = tile_layer_planar(geometry, global_buffer_bytes=2 * 2 * 700, word_bytes=2)
    assert len(tiling.tiles) > 1
    pe = PeArray(hw.pe_array)
    assert isinstance(pe.mechanism, CartesianProduct) and pe.mechanism.kind() == kind
    pe.prepare(x, geometry, tiling, w, b)
    dense = kind == "cartesian_product_dense"
    walks = []
    for tile in tiling.tiles:
        band = (tile.out_row_start, tile.out_row_stop)
        kwargs = dict(
            stride=1,
            padding=1,
            band=band,
            grid=(rows, columns, f, i, banks),
            dense=dense,
            arbitration=arbitration,
        )
        walks.append((tile, kwargs))
    # Kc: as many filters as the largest accumulator region of any band lets fit (the regions are the
    # geometry's: the reference computes them before, and apart from, its walk of the products).
    x_list, w_list = x.tolist(), w.tolist()
    regions = [
        reference_largest_region(
            x_list, w_list, **{key: kw[key] for key in ("stride", "padding", "band", "grid")}
        )
        for _, kw in walks
    ]
    group = banks * entries // max(regions)
    assert pe.prepared.summary["output_channel_group"] == group
    reference_sums = np.zeros((w.shape[0], geometry.out_height, geometry.out_width))
    for tile, kwargs in walks:
        counts, sums = reference_band(x_list, w_list, group_filters=group, **kwargs)
        work = pe.work(tile)
        assert work.cycles == counts["cycles"], f"tile {tile.index}"
        algorithmic = (
            w.shape[0] * x.shape[0] * 9 * (tile.out_row_stop - tile.out_row_start) * geometry.out_width
        )
        indexed = 0 if dense else 1
        assert work.actions == {
            "compute": counts["kept_products"],
            "gated_compute": 0,
            "skipped_compute": algorithmic - counts["kept_products"],
            "wasted_compute": counts["products"] - counts["kept_products"],
            "input_spad_read": counts["activation_reads"],
            "input_spad_metadata_read": indexed * counts["activation_reads"],
            "weight_spad_read": counts["weight_reads"],
            "weight_spad_metadata_read": indexed * counts["weight_reads"],
            "crossbar_transfer": counts["kept_products"],
            "psum_spad_update": counts["kept_products"],
            "halo_transfer": counts["halo_words"],
        }, f"tile {tile.index}"
        for (k, y, xx), value in sums.items():
            reference_sums[k, y, xx] += value
    # The values the reference accumulated, bank by bank and cycle by cycle, are the fast model's and numpy's.
    np.testing.assert_allclose(pe.prepared.sums, reference_sums, rtol=1e-12, atol=1e-9)
    expected = conv2d_reference(x, w, np.zeros(w.shape[0]), 1, 1)
    np.testing.assert_allclose(pe.prepared.sums, expected, rtol=1e-12, atol=1e-9)
    return pe


@pytest.mark.parametrize("arbitration", ["stall", "queue"])
@pytest.mark.parametrize("kind", ["cartesian_product", "cartesian_product_dense"])
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "r{}c{}f{}i{}a{}e{}".format(*g))
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_tiles_equal_the_cycle_stepped_reference_on_real_cuts(vgg16_trace, cut, grid, kind, arbitration):
    name, *where = cut
    check_against_reference(*real_cut(vgg16_trace.layer(name), *where), grid, kind, arbitration)


@pytest.mark.parametrize("arbitration", ["stall", "queue"])
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "r{}c{}f{}i{}a{}e{}".format(*g))
@pytest.mark.parametrize("layer", ["conv2_2", "conv3_1"])
def test_tiles_equal_the_reference_on_pruned_real_cuts(pruned_trace, layer, grid, arbitration):
    x, w, b = real_cut(pruned_trace.layer(layer), slice(8, 16), slice(5, 14), slice(12, 22), 5)
    assert 0.3 < np.count_nonzero(w) / w.size < 0.7  # the magnitude pruning really left zero weights
    check_against_reference(x, w, b, grid, "cartesian_product", arbitration)


def test_the_pe_array_runs_the_cartesian_product_only_for_its_kinds():
    sparse = PeArray(scnn_config(2, 2, 4, 4, 32, 32).pe_array).mechanism
    assert isinstance(sparse, CartesianProduct) and not isinstance(sparse, CartesianProductDense)
    assert sparse.kind() == "cartesian_product"
    dense = PeArray(scnn_config(2, 2, 4, 4, 32, 32, kind="cartesian_product_dense").pe_array).mechanism
    assert isinstance(dense, CartesianProductDense) and dense.kind() == "cartesian_product_dense"
    other = PeArray(scnn_config(2, 2, 4, 4, 32, 32, kind="dense").pe_array).mechanism
    assert isinstance(other, Dense) and not isinstance(other, CartesianProduct)
    assert PeArray(scnn_config(8, 8, 4, 4, 32, 32).pe_array).mac_lanes == 1024


def test_a_group_that_does_not_fit_the_accumulators_is_refused(vgg16_trace):
    x, w, b = real_cut(vgg16_trace.layer("conv3_1"), *CUTS[1][1:])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer_planar(geometry, global_buffer_bytes=1 << 20, word_bytes=2)
    pe = PeArray(scnn_config(1, 1, 4, 4, 2, 8, group=3).pe_array)
    with pytest.raises(SimulationError, match="output_channel_group is 3"):
        pe.prepare(x, geometry, tiling, w, b)
    pe = PeArray(scnn_config(1, 1, 4, 4, 2, 8).pe_array)
    with pytest.raises(SimulationError, match="raise them"):
        pe.prepare(x, geometry, tiling, w, b)


def test_a_fixed_group_size_is_used_and_smaller_groups_synchronise_more(vgg16_trace):
    x, w, b = real_cut(vgg16_trace.layer("conv3_1"), *CUTS[1][1:])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer_planar(geometry, global_buffer_bytes=1 << 20, word_bytes=2)
    cycles = {}
    for group in (1, 4):
        pe = PeArray(scnn_config(2, 2, 4, 4, 32, 32, group=group).pe_array)
        pe.prepare(x, geometry, tiling, w, b)
        assert pe.prepared.summary["output_channel_group"] == group
        assert pe.prepared.summary["groups"] == -(-w.shape[0] // group)
        cycles[group] = sum(pe.work(tile).cycles for tile in tiling.tiles)
    assert cycles[1] > cycles[4]


def test_sparse_issue_is_faster_than_dense_issue_and_both_compute_the_layer(pruned_trace):
    from sparsesim import load_hwconfig, simulate
    from sparsesim.config.overrides import with_parameter
    from tests.conftest import HWCONFIG_DIR

    hw = load_hwconfig(HWCONFIG_DIR / "scnn.yaml")
    sparse = simulate(hw, pruned_trace, layers=["conv3_1"])
    dense = simulate(
        with_parameter(hw, "pe_array.pe.mechanism.kind", "cartesian_product_dense"), pruned_trace, ["conv3_1"]
    )
    for report in (sparse, dense):
        assert report.totals["functional_check_passed"]
    s, d = sparse.layer("conv3_1"), dense.layer("conv3_1")
    assert s["cycles"] < d["cycles"] and s["energy_pj"] < d["energy_pj"]
    assert s["computes"]["actual"] == s["computes"]["effectual"]  # only nonzero pairs are kept
    assert (s["mechanism"]["kind"], d["mechanism"]["kind"]) == (
        "cartesian_product",
        "cartesian_product_dense",
    )
    summary = s["mechanism"]["summary"]
    assert summary["kept_products"] == s["computes"]["actual"]
    assert summary["products"] == summary["kept_products"] + summary["wasted_products"]
    assert 0 < summary["multiplier_utilization"] <= 1
    assert 0 <= summary["conflict_stall_fraction"] < 1
