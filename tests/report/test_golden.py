"""Golden results: every shipped (hwconfig, trace) pair, compared with the code CI uses.

Cycles and compute counts must be identical; energy equal to 1e-9 relative. If a change is intended,
regenerate with ``python -m tests.goldens`` (tests/goldens.py) and say why in the commit.

The whole-network runs come from the session's simulation cache (``simulated`` in tests/conftest.py): other
tests read layers of the same reports instead of simulating them again.
"""

from __future__ import annotations

import json

import pytest

from sparsesim.report.golden import compare_to_golden, golden_path, golden_summary
from tests.conftest import SHIPPED_HWCONFIGS
from tests.goldens import GOLDEN_DIR, REGENERATE


@pytest.mark.golden
@pytest.mark.parametrize("hw_name", SHIPPED_HWCONFIGS)
def test_shipped_pair_matches_its_golden_results(hw_name, simulated, vgg16_trace):
    report = simulated(hw_name)  # the whole shipped network
    assert [layer["name"] for layer in report.layers] == list(vgg16_trace.layer_names)
    assert report.totals["functional_check_passed"]
    path = golden_path(GOLDEN_DIR, report.data["hwconfig"]["name"], vgg16_trace.name)
    assert path.is_file(), f"no golden file {path}: run {REGENERATE} {hw_name}"
    problems = compare_to_golden(golden_summary(report), json.loads(path.read_text()))
    assert not problems, (
        "results differ from the golden ones:\n  "
        + "\n  ".join(problems)
        + f"\nIf the change is intended: {REGENERATE} {hw_name}"
    )


def test_comparison_reports_a_changed_cycle_count_and_an_energy_drift():
    golden = {
        "layers": {
            "a": {
                "cycles": 10,
                "computes": {"actual": 5},
                "energy_pj": 100.0,
                "component_energy_pj": {"dram": 60.0},
            }
        },
        "totals": {
            "cycles": 10,
            "computes": {"actual": 5},
            "energy_pj": 100.0,
            "component_energy_pj": {"dram": 60.0},
        },
    }
    same = json.loads(json.dumps(golden))
    assert compare_to_golden(same, golden) == []
    changed = json.loads(json.dumps(golden))
    changed["layers"]["a"]["cycles"] = 11
    changed["totals"]["energy_pj"] = 100.0 * (1 + 1e-8)
    problems = compare_to_golden(changed, golden)
    assert any("a: cycles 11 != golden 10" in p for p in problems)
    assert any("totals: energy_pj" in p for p in problems)
    within = json.loads(json.dumps(golden))
    within["totals"]["energy_pj"] = 100.0 * (1 + 1e-11)
    assert compare_to_golden(within, golden) == []
