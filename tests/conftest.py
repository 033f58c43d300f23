"""Shared fixtures: the shipped real trace and hardware configs, and the session's simulation cache."""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import settings

# One BLAS thread per test process, set before numpy is first imported (pytest loads this file before any
# test module). The suite's matrix products are small: a second OpenBLAS thread buys them little and, on the
# 2-core machine shared with other jobs, its spin-waiting doubled the CPU time of the BLAS-heavy tests
# (SnaPEA's whole network: 28 s of CPU with the default threads, 14 s with one). The results do not depend
# on it: the golden tier passes either way. An explicit setting in the environment wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

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


class SimulationCache:
    """Each (hardware config, trace, layers) simulated once per test session, its report shared.

    ``simulated(hw)`` is ``sparsesim.simulate(hw, trace, layers)`` memoised: ``hw`` is a shipped config's name
    or a config object (two configs with equal fields are one key), ``trace`` defaults to the shipped trace,
    ``layers`` to all of the trace's layers. The whole network on a shipped config is what the golden tier
    runs: tests that check a few layers of a shipped config take them from that report (its layers are the
    network's, simulated once) rather than simulating them again. Every call returns a fresh copy, so a test
    may change what it gets without changing what the next test sees. ``simulated.many`` simulates the
    configs not yet cached with one ``simulate_configs`` pass (each layer read once for all of them).
    """

    def __init__(self, default_trace):
        self._default_trace = default_trace
        self._reports: dict = {}
        self.runs: Counter = Counter()  # key -> simulations (one each, unless the cache is bypassed)

    @staticmethod
    def _hwconfig(hw):
        if isinstance(hw, str):
            from sparsesim import load_hwconfig

            return load_hwconfig(HWCONFIG_DIR / f"{hw}.yaml")
        return hw

    @staticmethod
    def _key(hw, trace, layers):
        # repr of the frozen config dataclass: every field, so equal configs share one entry.
        where = os.path.realpath(os.fspath(trace.path))
        selected = None if layers is None else tuple(layers)
        return (repr(hw), where, trace.name, tuple(trace.layer_names), selected)

    def many(self, hws: Sequence, trace=None, layers: Sequence[str] | None = None) -> list:
        from sparsesim.report import Report
        from sparsesim.simulator import simulate_configs

        trace = self._default_trace if trace is None else trace
        configs = [self._hwconfig(hw) for hw in hws]
        keys = [self._key(hw, trace, layers) for hw in configs]
        missing = {key: hw for key, hw in zip(keys, configs, strict=True) if key not in self._reports}
        if missing:
            reports = simulate_configs(list(missing.values()), trace, layers)
            for key, report in zip(missing, reports, strict=True):
                self._reports[key] = report
                self.runs[key] += 1
        return [Report(copy.deepcopy(self._reports[key].data)) for key in keys]

    def __call__(self, hw, trace=None, layers: Sequence[str] | None = None):
        return self.many([hw], trace, layers)[0]


@pytest.fixture(scope="session")
def simulated(vgg16_trace) -> SimulationCache:
    """The session's :class:`SimulationCache`: ``simulated("cnvlutin")`` is the whole shipped network on
    cnvlutin, simulated once whichever test asks first."""
    return SimulationCache(vgg16_trace)
