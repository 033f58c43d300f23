"""Report contents on real layers: the contracts, the decompositions, determinism, renderings.

The contracts are checked on every layer of the whole network on every shipped config: the reports the
golden tier compares, simulated once per session (``simulated`` in tests/conftest.py). The checks of one
mechanism's effect, and the runs that must be fresh (determinism, one layer read for several configs), use
the two layers of ``LAYERS``."""

from __future__ import annotations

import csv
import io
import json

import pytest

from sparsesim import simulate
from sparsesim.config import mechanism_config_class
from sparsesim.files import write_atomic
from sparsesim.report import compare_reports
from tests.conftest import SHIPPED_HWCONFIGS

LAYERS = ["conv3_1", "conv5_2"]


@pytest.fixture(scope="module")
def reports(simulated):
    """Every shipped config's whole-network report."""
    return dict(zip(SHIPPED_HWCONFIGS, simulated.many(SHIPPED_HWCONFIGS), strict=True))


def test_functional_check_passes_on_every_config(reports):
    for report in reports.values():
        for layer in report.layers:
            assert layer["functional_check"]["passed"], layer["functional_check"]
            assert layer["functional_check"]["max_abs_error"] <= layer["functional_check"]["tolerance"]


def test_compute_counts_obey_the_vocabulary(reports):
    # On LAYERS: whole-network counts break the order on lossy machines (MoE, SnaPEA predictive and Diffy
    # skip effectual MACs) and on SIMD lanes padded past conv1_1's 3 channels (Scalpel SIMD).
    for name, report in reports.items():
        for layer in (report.layer(layer_name) for layer_name in LAYERS):
            c = layer["computes"]
            assert c["actual"] + c["skipped"] == c["algorithmic"]
            assert c["effectual"] <= c["charged"] <= c["actual"] <= c["algorithmic"]
            assert c["ineffectual"] == c["algorithmic"] - c["effectual"]
            if name == "cnvlutin":
                assert c["skipped"] > 0 and c["gated"] == 0
            if name == "eyeriss_v1":
                assert c["gated"] > 0 and c["skipped"] == 0 and c["actual"] == c["algorithmic"]
            if name == "dadiannao":
                assert c["gated"] == c["skipped"] == 0


def test_throughput_and_energy_decompositions_multiply_out(reports):
    for report in reports.values():
        for layer in report.layers:
            t = layer["throughput"]
            product = t["actual_per_cycle"] * t["effectual_per_actual"] / t["effectual_per_algorithmic"]
            assert product == pytest.approx(t["algorithmic_per_cycle"], rel=1e-12)
            e = layer["energy_efficiency"]
            product = e["charged_per_pj"] * e["effectual_per_charged"] / e["effectual_per_algorithmic"]
            assert product == pytest.approx(e["algorithmic_per_pj"], rel=1e-12)


def test_cycle_states_add_up_and_energy_shares_sum_to_one(reports):
    for report in reports.values():
        for layer in report.layers:
            for comp in layer["components"].values():
                for states in comp["cycle_states"].values():
                    assert min(states.values()) >= 0
                    assert sum(states.values()) == layer["cycles"]
            assert sum(c["energy_share"] for c in layer["components"].values()) == pytest.approx(1.0)
            assert sum(c["energy_pj"] for c in layer["components"].values()) == pytest.approx(
                layer["energy_pj"]
            )


def test_no_layer_beats_its_busiest_port_and_the_report_names_it(reports):
    """A port serves one transaction at a time, so no layer (nor the network) takes fewer cycles than any
    port is busy: the PE array's compute, a link's bytes over its bandwidth. Nor does it perform more MACs
    than its lanes can in its cycles. Checked on every layer of every shipped config; ``bound`` names the
    busiest port and every port's share."""
    for name, report in reports.items():
        for entry in [*report.layers, report.totals]:
            cycles, bound = entry["cycles"], entry["bound"]
            busy = {
                port: states["busy_cycles"]
                for comp in entry["components"].values()
                for port, states in comp["cycle_states"].items()
            }
            assert max(busy.values()) <= cycles, (name, entry.get("name"))
            assert (
                bound["by"] == max(busy, key=lambda port: busy[port])
                and bound["bound_cycles"] == busy[bound["by"]]
            )
            assert bound["share"] == busy[bound["by"]] / cycles
            assert bound["busy_shares"] == {port: n / cycles for port, n in busy.items()}
            if "mac_utilization" in entry["throughput"]:
                assert entry["throughput"]["mac_utilization"] <= 1.0, (name, entry.get("name"))


def test_no_layer_beats_its_lower_bound_nor_any_port_its_minimum(reports):
    """Whatever the mapping, every value crosses every link at least once and the PEs compute their tile:
    each port's busy cycles are at least its minimum, and each layer's cycles at least the largest minimum
    (the report's ``lower_bound``). Checked on every layer of every shipped config."""
    for name, report in reports.items():
        for entry in report.layers:
            lower = entry["lower_bound"]
            busy = {
                port: states["busy_cycles"]
                for comp in entry["components"].values()
                for port, states in comp["cycle_states"].items()
            }
            for port, minimum in lower["ports"].items():
                assert busy[port] >= minimum, (name, entry["name"], port, busy[port], minimum)
            assert lower["cycles"] == max(lower["ports"].values()) <= entry["cycles"]
            assert lower["gap"] == entry["cycles"] / lower["cycles"]
        totals = report.totals["lower_bound"]
        assert totals["cycles"] == sum(entry["lower_bound"]["cycles"] for entry in report.layers)
        assert totals["cycles"] <= report.totals["cycles"]


def test_the_table_says_what_bounds_each_layer(reports):
    lines = reports["cnvlutin"].render().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("what bounds each layer"))
    header = lines[start + 4].split()
    assert (
        header[:5] == ["layer", "cycles", "lower", "bound", "gap"]
        and "pe_array" in header
        and "dram" in header
    )
    rows = {line.split()[0]: line.split() for line in lines[start + 6 : start + 6 + 13]}
    # The network's weights stay in the PEs (DaDianNao's synapse buffers) and the mapper streams each layer
    # through its PEs: every layer is bound by its PEs, conv5_2 too, which used to wait for its weights
    # from DRAM for 93 % of its cycles (issue 11).
    assert {row[4] for row in rows.values()} == {"pe_array"}
    assert all(1.0 <= float(row[3].removesuffix("x")) < 1.2 for row in rows.values())


def test_gating_saves_energy_but_no_cycles_and_skipping_saves_both(vgg16_trace, hwconfigs, reports):
    import dataclasses

    eyeriss = hwconfigs["eyeriss_v1"]
    dense = dataclasses.replace(
        eyeriss,
        pe_array=dataclasses.replace(
            eyeriss.pe_array,
            pe=dataclasses.replace(eyeriss.pe_array.pe, mechanism=mechanism_config_class("dense")()),
        ),
    )
    dense_report = simulate(dense, vgg16_trace, layers=LAYERS)
    gated_layers = [reports["eyeriss_v1"].layer(name) for name in LAYERS]
    for gated, ungated in zip(gated_layers, dense_report.layers, strict=True):
        assert gated["cycles"] == ungated["cycles"]
        assert gated["energy_pj"] < ungated["energy_pj"]
    comparison = compare_reports(reports["cnvlutin"], reports["dadiannao"])
    for name in LAYERS:
        assert comparison["layers"][name]["speedup"] > 1.0
        assert comparison["layers"][name]["energy_ratio"] < 1.0


def test_same_inputs_give_byte_identical_json_and_csv(vgg16_trace, hwconfigs, simulated):
    first = simulated("cnvlutin", layers=LAYERS)
    again = simulate(hwconfigs["cnvlutin"], vgg16_trace, layers=LAYERS)
    assert again.to_json() == first.to_json()
    assert again.to_csv() == first.to_csv()


def test_several_configs_over_one_read_of_each_layer_give_the_same_reports(hwconfigs, simulated):
    from sparsesim import load_trace
    from sparsesim.simulator import simulate_configs
    from tests.conftest import TRACE_DIR

    names = ["cnvlutin", "dadiannao"]
    lazy = load_trace(TRACE_DIR, layers=LAYERS)  # layers read from disk when used, once for both configs
    together = simulate_configs([hwconfigs[name] for name in names], lazy)
    one_at_a_time = [simulated(name, layers=LAYERS) for name in names]  # each simulated alone
    assert [report.to_json() for report in together] == [report.to_json() for report in one_at_a_time]


def test_an_unknown_layer_fails_before_any_simulation(vgg16_trace, hwconfigs, monkeypatch):
    import sparsesim.simulator
    from sparsesim.errors import TraceError

    def never(*args, **kwargs):
        raise AssertionError("simulated a layer before checking every name")

    monkeypatch.setattr(sparsesim.simulator, "simulate_layer", never)
    with pytest.raises(TraceError, match=r"no layer named 'conv9'.*known layers: conv1_1"):
        simulate(hwconfigs["cnvlutin"], vgg16_trace, layers=["conv5_3", "conv9"])


def test_json_and_csv_renderings_are_complete(reports, vgg16_trace, tmp_path):
    report = reports["cnvlutin"]
    names = list(vgg16_trace.layer_names)
    data = json.loads(report.to_json())
    assert data["schema_version"] == 7
    assert all(layer["tiling"]["mapped_by"] == "mapper" and layer["mapping"] for layer in data["layers"])
    assert [layer["name"] for layer in data["layers"]] == names
    assert all(
        layer["mechanism"] == {"kind": "zero_skip_activations", "summary": None} for layer in data["layers"]
    )
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [row["layer"] for row in rows] == [*names, "TOTAL"]
    assert int(rows[-1]["cycles"]) == sum(layer["cycles"] for layer in report.layers)
    target = tmp_path / "sub" / "report.json"
    write_atomic(target, report.to_json())
    assert target.read_text() == report.to_json()
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]  # no temporary file left behind


def test_table_shows_components_decompositions_and_the_baseline(reports):
    text = reports["cnvlutin"].render(reports["dadiannao"])
    for needle in (
        "conv3_1",
        "total",
        "speed-up",
        "dram",
        "global_buffer.read",
        "noc",
        "pe_array",
        "eq. 3.4",
        "eq. 3.9",
        "pass on every layer",
    ):
        assert needle in text
