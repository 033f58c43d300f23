"""Winograd F(2x2, 3x3) PEs (hwconfigs/winograd.yaml; sparsesim/mechanisms/winograd.py).

The PE array's tile cycles and actions equal the cycle-stepped reference on small real cuts of the shipped
trace (several row blocks, odd ones included, and channel blocks); the datapath reproduces numpy's
convolution; other layers fall back to the dense PEs; on the whole real network the machine does 2.25x fewer
multiplications than DaDianNao and its PEs are busy 2.25x fewer cycles where the lanes divide the channels;
on magnitude-pruned real weights skipping zero transformed weights saves far less than the pruning rate; and
the golden results hold.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sparsesim import load_hwconfig, simulate
from sparsesim.components.pe_array import PeArray
from sparsesim.config import hwconfig_to_dict, parse_hwconfig
from sparsesim.config.overrides import with_parameter
from sparsesim.errors import ConfigError, SimulationError
from sparsesim.mapping import ConvGeometry, tile_layer
from sparsesim.mechanisms import mechanism_class
from sparsesim.report import Report
from sparsesim.simulator import simulate_layer
from sparsesim.sparse.winograd import SKIP_MODES
from sparsesim.workload.ops import conv2d_reference
from sparsesim.workload.trace import Layer
from tests.conftest import HWCONFIG_DIR
from tests.real_cuts import pruned_weights
from tests.reference.winograd_reference import reference_tile

# (layer, channel slice, row slice, column slice, filters): zeros and nonzeros, odd sizes (partial tiles).
CUTS = [
    ("conv1_2", slice(0, 5), slice(20, 29), slice(30, 37), 5),
    ("conv3_1", slice(16, 22), slice(3, 12), slice(10, 18), 4),
    ("conv5_2", slice(100, 106), slice(0, 7), slice(0, 7), 3),
]

ARRAYS = [  # rows, columns, activation lanes, filter lanes
    (1, 2, 16, 2),
    (3, 2, 5, 1),
    (2, 1, 1, 3),
]

# Small buffers, so that the layers split into several row blocks (odd ones too) and, with a weight
# scratchpad of 17 words per filter lane, into channel blocks of one channel (U takes 16 words a kernel).
BUFFERS = {"row_blocks": (2 * 2 * 400, None), "channel_blocks": (2 * 2 * 100, 17)}


def winograd_hw(rows, columns, lanes, filter_lanes, spad_words, skip, weight_transform):
    return parse_hwconfig(
        {
            "name": "winograd-test",
            "pe_array": {
                "rows": rows,
                "columns": columns,
                "pe": {
                    "activation_lanes": lanes,
                    "filter_lanes": filter_lanes,
                    "weight_spad_bytes": spad_words * 2,
                    "input_spad_bytes": 2 * lanes,
                    "psum_spad_bytes": 2 * 16 * filter_lanes,
                    "mechanism": {"kind": "winograd", "skip": skip, "weight_transform": weight_transform},
                },
            },
        },
        source="test",
    )


def real_cut(trace, layer_name, channels, rows, cols, filters, pruning=0.0):
    """A small cut of a real layer; with ``pruning``, the whole layer's weights are magnitude-pruned to that
    fraction first (one-shot, in memory), then cut."""
    layer = trace.layer(layer_name)
    weights = pruned_weights(trace, layer_name, pruning) if pruning else layer.weights
    return (
        np.ascontiguousarray(layer.input[channels, rows, cols]),
        np.ascontiguousarray(weights[:filters, channels]),
        np.ascontiguousarray(layer.bias[:filters]),
    )


#: The reference cases: every setting of the mechanism (weight transform, skip mode, trained or 80 %-pruned
#: weights) in both tilings, 24 cases, each on one (array, cut) pair, dealt out so that any two values of any
#: two factors meet in some case (all 9 array x cut pairs among them). The full product, 216 cases, cost 9 s
#: of the suite's CPU and tried no pair of values that these leave out.
CASES = [
    (ARRAYS[i % 3], CUTS[i // 3 % 3], buffers, pruning, skip, transform)
    for i, (transform, skip, pruning, buffers) in enumerate(
        itertools.product(("offline", "on_chip"), SKIP_MODES, (0.0, 0.8), BUFFERS)
    )
]


def _case_id(case) -> str:
    array, cut, buffers, pruning, skip, transform = case
    weights = f"pruned{round(100 * pruning)}" if pruning else "trained"
    return "-".join(("r{}c{}l{}f{}".format(*array), cut[0], buffers, weights, skip, transform))


def test_the_reference_cases_put_every_two_values_of_any_two_factors_together():
    factors = [ARRAYS, CUTS, list(BUFFERS), [0.0, 0.8], list(SKIP_MODES), ["offline", "on_chip"]]
    for (i, first), (j, second) in itertools.combinations(enumerate(factors), 2):
        met = {(repr(case[i]), repr(case[j])) for case in CASES}
        assert len(met) == len(first) * len(second), (i, j)


@pytest.mark.parametrize(
    ("array", "cut", "buffers", "pruning", "skip", "weight_transform"),
    CASES,
    ids=[_case_id(case) for case in CASES],
)
def test_winograd_tiles_equal_the_cycle_stepped_reference(
    vgg16_trace, array, cut, buffers, pruning, skip, weight_transform
):
    x, w, b = real_cut(vgg16_trace, *cut, pruning=pruning)
    rows, columns, lanes, filter_lanes = array
    buffer_bytes, spad_per_lane = BUFFERS[buffers]
    spad_words = filter_lanes * (spad_per_lane or 16 * x.shape[0])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry,
        columns=columns,
        filter_lanes=filter_lanes,
        weight_spad_bytes=spad_words * 2,
        global_buffer_bytes=buffer_bytes,
        word_bytes=2,
    )
    assert tiling.n_row_blocks > 2
    assert (tiling.n_channel_blocks > 1) == (buffers == "channel_blocks")
    pe = PeArray(winograd_hw(rows, columns, lanes, filter_lanes, spad_words, skip, weight_transform).pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    totals: dict[str, int] = {}
    for tile in tiling.tiles:
        work = pe.work(tile)
        cycles, actions = reference_tile(x, w, tile, 1, rows, lanes, filter_lanes, skip, weight_transform)
        assert work.cycles == cycles, f"tile {tile.index}"
        assert work.actions == actions, f"tile {tile.index}"
        for key, n in actions.items():
            totals[key] = totals.get(key, 0) + n
    assert totals["compute"] + totals["skipped_compute"] == geometry.algorithmic_macs
    # The datapath's values are numpy's convolution + bias + ReLU.
    expected = np.maximum(conv2d_reference(x, w, b, 1, 1), 0.0)
    np.testing.assert_allclose(pe.output().values, expected, rtol=1e-12, atol=1e-9)


def test_the_reference_cases_have_odd_row_blocks_and_skipped_products(vgg16_trace):
    # Otherwise the test above would not exercise partial Winograd tiles or skipping.
    x, w, b = real_cut(vgg16_trace, *CUTS[1], pruning=0.8)
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    tiling = tile_layer(
        geometry, columns=2, filter_lanes=2, weight_spad_bytes=4096, global_buffer_bytes=2800, word_bytes=2
    )
    assert any((t.out_row_stop - t.out_row_start) % 2 for t in tiling.tiles)
    computes = {}
    for skip in SKIP_MODES:
        pe = PeArray(winograd_hw(1, 2, 16, 2, 2048, skip, "offline").pe_array)
        pe.prepare(x, geometry, tiling, w, b)
        computes[skip] = sum(pe.work(tile).actions["compute"] for tile in tiling.tiles)
    assert computes["none"] > computes["transformed_weights"] > computes["transformed_operands"]


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        (ConvGeometry(4, 9, 9, 3, 3, 3, 2, 1), "stride 2"),
        (ConvGeometry(4, 9, 9, 3, 1, 1, 1, 0), "1x1 kernels"),
        (ConvGeometry(4, 1, 1, 3, 1, 1, 1, 0), "1x1 kernels"),  # a linear layer, as the PEs see it
        (ConvGeometry(4, 3, 3, 3, 3, 3, 1, 0), "1x1 outputs"),  # one output: its 2x2 tile is 16 > 9 products
    ],
    ids=["strided", "1x1", "linear", "one_output"],
)
def test_other_layers_run_on_the_dense_pes(geometry, reason):
    rng = np.random.default_rng(7)  # synthetic operands: only the fallback's bookkeeping is tested here
    x = np.maximum(rng.standard_normal((geometry.channels, geometry.height, geometry.width)), 0.0)
    w = rng.standard_normal((geometry.filters, geometry.channels, geometry.kernel_r, geometry.kernel_s))
    tiling = tile_layer(
        geometry, columns=2, filter_lanes=2, weight_spad_bytes=4096, global_buffer_bytes=1 << 20, word_bytes=2
    )
    winograd = PeArray(winograd_hw(1, 2, 4, 2, 2048, "transformed_operands", "on_chip").pe_array)
    plan = winograd.prepare(x, geometry, tiling, w)
    dense_hw = with_parameter(
        winograd_hw(1, 2, 4, 2, 2048, "none", "on_chip"), "pe_array.pe.mechanism.kind", "dense"
    )
    dense = PeArray(dense_hw.pe_array)
    dense.prepare(x, geometry, tiling, w)
    for tile in tiling.tiles:
        fallback, expected = winograd.work(tile), dense.work(tile)
        assert fallback.cycles == expected.cycles
        assert {k: v for k, v in fallback.actions.items() if v} == {
            k: v for k, v in expected.actions.items() if v
        }
    assert plan.sized_weights is plan.operands.weights_kcrs
    summary = winograd.summary()
    assert summary["winograd"] is False and reason in summary["reason"]
    np.testing.assert_allclose(winograd.output().values, dense.output().values, rtol=1e-12, atol=1e-12)


def test_the_mapper_sizes_channel_blocks_for_the_transformed_kernels(vgg16_trace):
    x, w, b = real_cut(vgg16_trace, *CUTS[0])
    geometry = ConvGeometry(x.shape[0], x.shape[1], x.shape[2], w.shape[0], 3, 3, 1, 1)
    # 2 filter lanes in 90 words of weight scratchpad: 5 channels of 3x3 kernels fit, of 4x4 U only 2.
    sizes = dict(columns=2, filter_lanes=2, weight_spad_bytes=180, global_buffer_bytes=1 << 20, word_bytes=2)
    by_hand = tile_layer(geometry, **sizes)
    assert by_hand.channels_per_block == 5
    assert tile_layer(geometry, **sizes, spad_words_per_kernel=16).channels_per_block == 2
    hw = winograd_hw(1, 2, 16, 2, 90, "none", "offline")
    with pytest.raises(SimulationError, match="need 320 bytes of weight scratchpad"):
        PeArray(hw.pe_array).prepare(x, geometry, by_hand, w, b)
    # A run maps the layer through the mechanism's spad_words_per_kernel, and computes it.
    output = np.maximum(conv2d_reference(x, w, b, 1, 1), 0.0).astype(np.float32)
    entry = simulate_layer(hw, Layer("cut", "conv2d", x, w, b, output, stride=1, padding=1))
    assert entry["tiling"]["channels_per_block"] == 2
    assert entry["functional_check"]["passed"]
    # DRAM moves U, 16 words per kernel, uncompressed: what the report counts as the uncompressed weights too.
    traffic = entry["dram_traffic"]
    assert traffic["uncompressed_bytes"]["weights"] == traffic["bytes"]["weights"] == w.shape[0] * 5 * 16 * 2


def test_config_checks_the_accumulators_and_the_modes():
    data = hwconfig_to_dict(winograd_hw(1, 2, 16, 2, 2048, "none", "offline"))
    data["pe_array"]["pe"]["psum_spad_bytes"] = 62
    with pytest.raises(ConfigError, match="must hold 16 accumulators per filter lane"):
        parse_hwconfig(data, source="test")
    data["pe_array"]["pe"]["psum_spad_bytes"] = 64
    data["pe_array"]["pe"]["mechanism"]["skip"] = "zeros"
    with pytest.raises(ConfigError, match="skip"):
        parse_hwconfig(data, source="test")
    assert {"input_transform_add", "output_transform_add", "weight_transform_add"} <= set(
        mechanism_class("winograd").actions()
    )


def test_the_shipped_config_is_dadiannao_with_winograd_pes():
    winograd = hwconfig_to_dict(load_hwconfig(HWCONFIG_DIR / "winograd.yaml"))
    dadiannao = hwconfig_to_dict(load_hwconfig(HWCONFIG_DIR / "dadiannao.yaml"))
    mechanism = winograd["pe_array"]["pe"].pop("mechanism")
    del dadiannao["pe_array"]["pe"]["mechanism"]
    for key in ("name", "description"):
        del winograd[key], dadiannao[key]
    assert winograd == dadiannao
    assert (mechanism["kind"], mechanism["skip"], mechanism["weight_transform"]) == (
        "winograd",
        "none",
        "on_chip",
    )


# --- whole real layers --------------------------------------------------------------------------------------


TWO_LAYERS = ["conv1_1", "conv1_2"]


def _first_two_layers(report):
    """conv1_1 and conv1_2 of a whole-network report, with their totals as a run of those two would sum
    them (each layer is simulated on its own: the layers are those of a run of the two alone)."""
    layers = report.layers[: len(TWO_LAYERS)]
    assert [layer["name"] for layer in layers] == TWO_LAYERS
    return layers, Report.totals_of(layers, report.data["hwconfig"]["config"]["clock_hz"])


def test_dense_winograd_does_2_25x_fewer_multiplications_than_dadiannao(simulated):
    # The golden tier's whole-network runs, shared: their first two layers.
    (winograd, winograd_totals), (dadiannao, dadiannao_totals) = (
        _first_two_layers(simulated(name)) for name in ("winograd", "dadiannao")
    )
    assert winograd_totals["functional_check_passed"]
    for ours, theirs in zip(winograd, dadiannao, strict=True):
        assert ours["functional_check"]["exact"] and ours["functional_check"]["datapath"]["passed"]
        assert theirs["computes"]["actual"] == ours["computes"]["algorithmic"]
        assert theirs["computes"]["actual"] / ours["computes"]["actual"] == 2.25  # 112x160: even, full tiles
        summary = ours["mechanism"]["summary"]
        assert summary["winograd"] and summary["products"] == ours["computes"]["actual"]
    # conv1_2 has 64 channels: DaDianNao's 16 activation lanes divide them, and the PEs are busy 2.25x less.
    # (conv1_1's 3 channels leave 13 of DaDianNao's 16 lanes idle: 9 cycles per output, 36 per 2x2 tile; a
    # Winograd lane fills its 16 multipliers with the 16 positions of one channel: 3 cycles per tile.)
    busy = [
        [layer["components"]["pe_array"]["cycle_states"]["pe_array"]["busy_cycles"] for layer in layers]
        for layers in (dadiannao, winograd)
    ]
    assert busy[0][1] / busy[1][1] == 2.25
    assert busy[0][0] / busy[1][0] == 12.0
    assert winograd_totals["cycles"] < dadiannao_totals["cycles"]
    assert winograd_totals["energy_pj"] < dadiannao_totals["energy_pj"]
    # Effectual MACs (both operands nonzero) outnumber the products Winograd performs on conv1_1.
    assert winograd[0]["computes"]["actual"] < winograd[0]["computes"]["effectual"]


def test_offline_transformed_weights_cost_weight_traffic(vgg16_trace):
    # Layer by layer: two layers' weights alone would stay in the PEs (sparsesim.mapping.residency) and
    # move no weight at all.
    hw = load_hwconfig(HWCONFIG_DIR / "winograd.yaml")
    offline_hw = with_parameter(hw, "pe_array.pe.mechanism.weight_transform", "offline")
    layers = [vgg16_trace.layer(name) for name in TWO_LAYERS]
    offline = [simulate_layer(offline_hw, layer) for layer in layers]
    on_chip = [simulate_layer(hw, layer) for layer in layers]
    assert all(entry["dram_traffic"]["bytes"]["weights"] for entry in offline)
    for moved, kept in zip(offline, on_chip, strict=True):
        assert moved["dram_traffic"]["bytes"]["weights"] * 9 == kept["dram_traffic"]["bytes"]["weights"] * 16
        assert moved["computes"] == kept["computes"]
        assert moved["components"]["pe_array"]["actions"]["weight_transform_add"] == 0
        assert kept["components"]["pe_array"]["actions"]["weight_transform_add"] == 21 * np.prod(
            kept["weight_shape"][:2]
        )


def test_pruned_zeros_mostly_vanish_in_the_transformed_weights(pruned_trace):
    """conv2_2 and conv3_1 magnitude-pruned to 50 % (and re-run): skipping zero transformed weights saves
    far less than the half of the MACs that skipping zero spatial weights saves."""
    hw = with_parameter(
        load_hwconfig(HWCONFIG_DIR / "winograd.yaml"), "pe_array.pe.mechanism.skip", "transformed_weights"
    )
    report = simulate(hw, pruned_trace)
    assert report.totals["functional_check_passed"]
    for layer in report.layers:
        summary = layer["mechanism"]["summary"]
        assert summary["weight_density"] == pytest.approx(0.5, abs=1e-4)
        assert 0.6 < summary["transformed_weight_density"] < 0.8
        saved = 1 - summary["products"] / summary["dense_winograd_products"]
        assert 0.2 < saved < 0.4  # where direct convolution skipping zero weights saves 0.5
