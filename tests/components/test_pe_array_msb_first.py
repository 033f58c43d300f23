"""PE array with PredictiveNet's MSB-first prediction: tile cycles and MAC counts equal the cycle-stepped
reference on small real cuts, and whole-layer runs keep the exact variant lossless and measure the
predictive one's mispredictions and error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sparsesim import load_hwconfig, simulate
from sparsesim.accelerator import geometry_of
from sparsesim.components.pe_array import PeArray
from sparsesim.config import mechanism_config_class
from sparsesim.mapping import LayerMapping, Loops
from sparsesim.mapping.directives import MappingFile, to_directives
from sparsesim.mechanisms.datapath import im2col, two_unit_lane_cycles
from sparsesim.simulator import simulate_layer
from sparsesim.sparse.deltas import to_fixed_point
from tests.components.test_pe_array_reference import cut_geometry_and_tiling, pe_config, small_real_cut
from tests.conftest import HWCONFIG_DIR
from tests.reference.msb_first_reference import reference_layer, reference_msb_first_tile_cycles

CUTS = [
    ("conv3_1", slice(16, 24), slice(3, 9), slice(10, 17), 6),
    ("conv5_2", slice(100, 110), slice(0, 7), slice(0, 10), 5),
    ("conv1_1", slice(0, 3), slice(40, 46), slice(60, 67), 6),  # mean-subtracted photo: negative inputs
]


def msb_first_config(rows, columns, decision, skip_zero_activations, msb_bits):
    return pe_config(
        rows,
        columns,
        1,
        1,
        4096,
        "msb_first",
        decision=decision,
        skip_zero_activations=skip_zero_activations,
        msb_bits=msb_bits,
    )


@pytest.mark.parametrize("msb_bits", [4, 8])
@pytest.mark.parametrize("decision", ["predictive", "exact"])
@pytest.mark.parametrize("skip_zero_activations", [False, True], ids=["all_activations", "skip_zeros"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("cut", CUTS, ids=[c[0] for c in CUTS])
def test_msb_first_tile_cycles_equal_the_cycle_stepped_reference(
    vgg16_trace, cut, rows, skip_zero_activations, decision, msb_bits
):
    x, w, b = small_real_cut(vgg16_trace, *cut)
    hw = msb_first_config(rows, 2, decision, skip_zero_activations, msb_bits)
    geometry, tiling = cut_geometry_and_tiling(x, w, 4096)
    assert len(tiling.tiles) > 2 and tiling.n_channel_blocks == 1
    pe = PeArray(hw.pe_array)
    pe.prepare(x, geometry, tiling, w, b)
    ints, frac_bits = to_fixed_point(x, bits=16)
    msb, lsb, terminated, outputs, mispredicted = reference_layer(
        im2col(ints, geometry, 0, geometry.out_height).astype(np.int64),
        w.reshape(w.shape[0], -1),
        b,
        frac_bits,
        msb_bits,
        decision=decision,
        skip_zeros=skip_zero_activations,
    )
    termination = pe.prepared.detail
    np.testing.assert_array_equal(termination.msb_macs, np.array(msb))
    np.testing.assert_array_equal(termination.lsb_macs, np.array(lsb))
    np.testing.assert_array_equal(termination.terminated, np.array(terminated))
    np.testing.assert_array_equal(termination.mispredicted, np.array(mispredicted))
    for tile in tiling.tiles:
        windows = list(range(tile.out_row_start * geometry.out_width, tile.out_row_stop * geometry.out_width))
        filters = range(tile.filter_start, tile.filter_stop)
        expected = reference_msb_first_tile_cycles(msb, lsb, filters, windows, rows)
        work = pe.work(tile)
        assert work.cycles == expected, f"tile {tile.index}"
        tile_msb = sum(msb[k][p] for k in filters for p in windows)
        tile_lsb = sum(lsb[k][p] for k in filters for p in windows)
        assert (work.actions["msb_compute"], work.actions["lsb_compute"]) == (tile_msb, tile_lsb)
        assert work.actions["compute"] == 0 and work.actions["input_spad_metadata_read"] == 0
    np.testing.assert_allclose(termination.output, np.array(outputs), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("msb_cycles", "lsb_cycles", "rows", "expected"),
    [
        ([[3, 3, 3]], [[3, 3, 3]], 1, 12),  # every LSB pass kept: the MSB passes plus the last LSB pass
        ([[3, 3, 3]], [[0, 0, 0]], 1, 9),  # every LSB pass skipped: the MSB passes alone
        ([[3, 3, 3]], [[3, 0, 0]], 1, 9),  # the first LSB pass hides under the next MSB passes
        ([[1, 5]], [[1, 0]], 1, 6),
        ([[2, 2], [4, 1]], [[2, 2], [0, 1]], 1, 6),  # two filters: the slowest lane ends the tile
        ([[3, 3, 3]], [[3, 3, 3]], 2, 9),  # lane 0: windows 0, 2 (3 + 3 + 3); lane 1: window 1 (3 + 3)
    ],
)
def test_two_unit_lane_cycles_table(msb_cycles, lsb_cycles, rows, expected):
    """Hand-worked lanes of an MSB and an LSB unit (synthetic cycle counts)."""
    got = two_unit_lane_cycles(np.array(msb_cycles), np.array(lsb_cycles), rows)
    assert got == expected
    filters, windows = range(len(msb_cycles)), list(range(len(msb_cycles[0])))
    assert reference_msb_first_tile_cycles(msb_cycles, lsb_cycles, filters, windows, rows) == expected


def _with_mechanism(hw, mechanism):
    pe = dataclasses.replace(hw.pe_array.pe, mechanism=mechanism)
    return dataclasses.replace(hw, pe_array=dataclasses.replace(hw.pe_array, pe=pe))


def _large_buffer(hw):
    return dataclasses.replace(hw, global_buffer=dataclasses.replace(hw.global_buffer, capacity_bytes=2**26))


def _with_msb_first(hw, **fields):
    """``hw`` (an msb_first machine) with some parameters of its mechanism block changed."""
    return _with_mechanism(hw, dataclasses.replace(hw.pe_array.pe.mechanism, **fields))


def test_exact_variant_is_lossless_and_the_predictive_one_reports_its_error(vgg16_trace, simulated):
    hw = load_hwconfig(HWCONFIG_DIR / "predictivenet.yaml")
    layers = ["conv1_1", "conv3_1", "conv5_2"]
    network = simulated("predictivenet")  # the shipped config's whole-network run, shared
    predictive = [network.layer(name) for name in layers]
    assert hw.pe_array.pe.mechanism.kind == "msb_first"
    assert hw.pe_array.pe.mechanism.decision == "predictive"
    exact = simulate(_with_msb_first(hw, decision="exact"), vgg16_trace, layers=layers)
    everything = simulate(
        _with_msb_first(hw, decision="predictive", threshold=-1e30), vgg16_trace, layers=layers
    )
    dense_hw = _with_mechanism(hw, mechanism_config_class("dense")())
    dense = simulate(dense_hw, vgg16_trace, layers=layers)
    for p, e, a, d in zip(predictive, exact.layers, everything.layers, dense.layers, strict=True):
        # Exact: no misprediction, sound even on conv1_1's negative inputs, and its only loss is the 16-bit
        # rounding of the activations (the same as when every LSB pass is computed).
        assert e["mechanism"]["kind"] == p["mechanism"]["kind"] == "msb_first"
        e_summary, p_summary = e["mechanism"]["summary"], p["mechanism"]["summary"]
        assert e_summary["sound"] and e_summary["mispredicted_outputs"] == 0
        assert e["computes"]["early_terminated"] > 0 and e["functional_check"]["passed"]
        assert e["functional_check"]["lossy_error"] == a["functional_check"]["lossy_error"]
        assert a["computes"]["early_terminated"] == 0
        # Predictive: skips more, mispredicts some, and the error it adds is measured.
        assert p["functional_check"]["passed"] and p_summary["mispredicted_outputs"] > 0
        assert p["computes"]["early_terminated"] > e["computes"]["early_terminated"]
        error = p["functional_check"]["lossy_error"]["relative_rms_error"]
        assert error > e["functional_check"]["lossy_error"]["relative_rms_error"]
        # Every MAC of a nonzero weight is issued (its MSB pass): those are the actual computes, and the
        # early-terminated MACs are among them; the MSB unit sets the PEs' pace (busy as dense PEs, within
        # the last LSB pass of each lane: compared over one row block per layer, in a buffer that holds
        # it; the buffer changes no PE's work).
        layer = vgg16_trace.layer(p["name"])
        zero_weight_macs = int((layer.weights == 0).sum()) * layer.output[0].size
        for run in (p, e):
            assert run["computes"]["actual"] == run["computes"]["charged"]
            assert run["computes"]["actual"] == d["computes"]["algorithmic"] - zero_weight_macs
            assert run["computes"]["actual"] + run["computes"]["skipped"] == run["computes"]["algorithmic"]
            geometry = geometry_of(layer)
            k, c = run["tiling"]["filters_per_group"], run["tiling"]["channels_per_block"]
            whole_rows = LayerMapping(
                dram=Loops((-(-geometry.filters // k), -(-geometry.channels // c), 1), "KPC"),
                pe_tile=(k, c, geometry.out_height),
            )
            one_row_block = MappingFile(
                "test", None, {layer.name: ("mapping", to_directives(whole_rows, geometry))}, {}
            )
            busy, dense_busy = (
                simulate_layer(_large_buffer(machine), layer, mapping_file=one_row_block)["components"][
                    "pe_array"
                ]["cycle_states"]["pe_array"]["busy_cycles"]
                for machine in (hw if run is p else _with_msb_first(hw, decision="exact"), dense_hw)
            )
            # A lane walks ceil(windows / rows) outputs; its LSB unit finishes at most one output's pass
            # after the MSB unit (conv5_2's 70 windows: 5 per lane, 7/6 of dense; the layers' cycles hid
            # this while they were bound by DRAM).
            per_lane = -(-geometry.out_height * geometry.out_width // hw.pe_array.rows)
            assert dense_busy <= busy <= dense_busy * (per_lane + 1) / per_lane
            # Each LSB pass re-reads its operands (energy is reported, whichever way it goes).
            actions = run["components"]["pe_array"]["actions"]
            assert actions["weight_spad_read"] == actions["msb_compute"] + actions["lsb_compute"]
    # The predictive variant's arithmetic costs less than dense MACs: most LSB passes are skipped.
    for p, d in zip(predictive[1:], dense.layers[1:], strict=True):
        energy = p["components"]["pe_array"]["action_energy_pj"]
        assert (
            energy["msb_compute"] + energy["lsb_compute"]
            < d["components"]["pe_array"]["action_energy_pj"]["compute"]
        )
