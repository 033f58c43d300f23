"""Shared fixtures: the shipped real trace and hardware configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so the tests (and CI) pass or fail on the code alone.
# For fresh random draws (hunting new counterexamples): `python -m pytest --hypothesis-profile=explore`.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")

ROOT = Path(__file__).resolve().parent.parent
TRACE_DIR = ROOT / "traces" / "vgg16_china"
HWCONFIG_DIR = ROOT / "hwconfigs"
#: Every shipped hardware config: a config added to hwconfigs/ is in every shipped-config test (goldens,
#: functional checks, fuzzing) with no edit here.
SHIPPED_HWCONFIGS = tuple(path.stem for path in sorted(HWCONFIG_DIR.glob("*.yaml")))


@pytest.fixture(scope="session")
def vgg16_trace():
    from sparsesim import load_trace

    return load_trace(TRACE_DIR, keep_in_memory=True)


@pytest.fixture(scope="session")
def hwconfigs():
    from sparsesim import load_hwconfig

    return {name: load_hwconfig(HWCONFIG_DIR / f"{name}.yaml") for name in SHIPPED_HWCONFIGS}


@pytest.fixture(scope="session")
def pruned_trace(vgg16_trace, tmp_path_factory):
    """conv2_2 and conv3_1 of the shipped network, magnitude-pruned to 50 % and re-run (derived here)."""
    from sparsesim.workload.pruning import prune_trace

    out = tmp_path_factory.mktemp("pruned") / "vgg16_pruned50"
    return prune_trace(vgg16_trace, out, sparsity=0.5, layers=["conv2_2", "conv3_1"])
