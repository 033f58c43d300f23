"""Shared fixtures: the shipped real trace and hardware configs, and the session's simulation cache."""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import settings

from sparsesim.host import keep_freed_memory

# One BLAS thread per test process, set before numpy is first imported (pytest loads this file before any
# test module). The suite's matrix products are small: a second OpenBLAS thread buys them little and, on the
# 2-core machine shared with other jobs, its spin-waiting doubled the CPU time of the BLAS-heavy tests
# (SnaPEA's whole network: 28 s of CPU with the default threads, 14 s with one). The results do not depend
# on it: the golden tier passes either way. An explicit setting in the environment wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# glibc keeps the memory numpy frees (sparsesim/host.py): on the VMs CI runs on, giving it back and faulting
# it in again cost the suite 14 s of CPU.
keep_freed_memory()

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
def crop_trace(vgg16_trace, tmp_path_factory):
    """Two corners of the shipped VGG16 trace: conv1_1 on real pixels (dense input) and conv2_2 on its real
    ReLU activations (sparse input), small enough that a simulation takes a few milliseconds.

    The fuzz tier mutates it; the make-trace CLI tests derive from its conv1_1 (the command's plumbing on
    real data, without validating and reading the whole shipped trace that the function tests derive from).
    """
    from sparsesim.workload.trace import save_trace
    from tests.real_cuts import crop

    path = tmp_path_factory.mktemp("fuzz") / "vgg16_china_crop"
    layers = [
        crop(vgg16_trace.layer("conv1_1"), 3, 10, 12, 16, "conv1_1"),
        crop(vgg16_trace.layer("conv2_2"), 32, 8, 10, 16, "conv2_2"),
    ]
    provenance = {
        "derived_from": "traces/vgg16_china (real HED/VGG16 weights on china.jpg, CC BY 2.0)",
        "transform": "corners of conv1_1 and conv2_2 (first channels, rows, columns and filters); "
        "outputs recomputed from the cropped operands; for the fuzz tests",
    }
    save_trace(path, "vgg16_china_crop", provenance, layers)
    return path


@pytest.fixture(scope="session")
def pruned_trace(vgg16_trace, tmp_path_factory):
    """conv2_2 and conv3_1 of the shipped network, magnitude-pruned to 50 % and re-run (derived here)."""
    from sparsesim.workload.pruning import prune_trace

    out = tmp_path_factory.mktemp("pruned") / "vgg16_pruned50"
    return prune_trace(vgg16_trace, out, sparsity=0.5, layers=["conv2_2", "conv3_1"])


#: The (shipped config, layer) pairs whose working set tests/test_simulator.py bounds: the layers are conv1_2
#: (the largest activations), conv2_1, and conv4_2 (the largest weights with the most pixels); SnaPEA's
#: machines take conv5_1 instead of conv4_2 (the same weights, a quarter of the pixels; see test_simulator).
PEAK_MEMORY_LAYERS = {
    name: ("conv1_2", "conv2_1", "conv4_2")
    for name in ("cnvlutin", "cnvlutin_pruning", "dadiannao", "diffy", "moe", "predictivenet", "ucnn")
}
PEAK_MEMORY_LAYERS.update(
    {name: ("conv1_2", "conv2_1", "conv5_1") for name in ("snapea_exact", "snapea_predictive")}
)


def peak_bytes_of(function, *args):
    """``function(*args)``'s result and the most bytes it held at once above what was allocated before it
    (tracemalloc: every allocation, byte-exact and deterministic)."""
    gc.collect()
    tracemalloc.start()
    try:
        start_bytes = tracemalloc.get_traced_memory()[0]
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1] - start_bytes
    finally:
        tracemalloc.stop()


class SimulationCache:
    """Each (hardware config, trace, layers) simulated once per test session, its report shared.

    ``simulated(hw)`` is ``sparsesim.simulate(hw, trace, layers)`` memoised: ``hw`` is a shipped config's name
    or a config object (two configs with equal fields are one key), ``trace`` defaults to the shipped trace,
    ``layers`` to all of the trace's layers. The whole network on a shipped config is what the golden tier
    runs: tests that check a few layers of a shipped config take them from that report (its layers are the
    network's, simulated once) rather than simulating them again. Every call returns a fresh copy, so a test
    may change what it gets without changing what the next test sees. ``simulated.many`` simulates the
    configs not yet cached with one ``simulate_configs`` pass (each layer read once for all of them).

    While it simulates the shipped network on a shipped config, the layers of :data:`PEAK_MEMORY_LAYERS` are
    simulated under tracemalloc, each on its own (:func:`peak_bytes_of`, as a test would measure them), and
    their peaks kept: ``simulated.peak_bytes(name, layer)`` gives them to tests/test_simulator.py, so the
    working-set bounds are measured on the golden tier's own runs instead of simulating those layers again.
    """

    def __init__(self, default_trace):
        self._default_trace = default_trace
        self._reports: dict = {}
        self.runs: Counter = Counter()  # key -> simulations (one each, unless the cache is bypassed)
        self._peaks: dict[tuple[str, str], int] = {}  # (shipped config, layer) -> peak bytes
        self._shipped_reprs: dict[str, str] = {}  # shipped config name -> repr of its config

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
            with self._measuring_peaks(trace is self._default_trace and layers is None):
                reports = simulate_configs(list(missing.values()), trace, layers)
            for key, report in zip(missing, reports, strict=True):
                self._reports[key] = report
                self.runs[key] += 1
        return [Report(copy.deepcopy(self._reports[key].data)) for key in keys]

    def __call__(self, hw, trace=None, layers: Sequence[str] | None = None):
        return self.many([hw], trace, layers)[0]

    def _is_shipped(self, hw) -> bool:
        if hw.name not in PEAK_MEMORY_LAYERS:
            return False
        if hw.name not in self._shipped_reprs:
            self._shipped_reprs[hw.name] = repr(self._hwconfig(hw.name))
        return repr(hw) == self._shipped_reprs[hw.name]

    @contextlib.contextmanager
    def _measuring_peaks(self, whole_shipped_network: bool):
        """While ``simulate_configs`` runs the shipped network, the layers of :data:`PEAK_MEMORY_LAYERS` are
        measured under tracemalloc: the peak of their mapping (``_mapped_run``: the search, every simulated
        mapping) and of their report (``_layer_report``: the datapath output, the functional check), each
        from its own start; the larger is the layer's. (The whole run may hold the next layer's mapped run
        beside a layer's, when its output may stay in the buffer: ``benchmarks/bench_memory.py`` measures
        whole runs.)"""
        import sparsesim.simulator as simulator

        if not whole_shipped_network:
            yield
            return
        mapped_run, layer_report = simulator._mapped_run, simulator._layer_report

        def measure(function, hw, layer, *args):
            if layer.name not in PEAK_MEMORY_LAYERS.get(hw.name, ()) or not self._is_shipped(hw):
                return function(hw, layer, *args)
            if function is mapped_run:  # measured as a first run of the layer would be
                simulator._OWN_EFFECTUAL_MACS.pop(layer, None)
            result, peak = peak_bytes_of(function, hw, layer, *args)
            key = (hw.name, layer.name)
            self._peaks[key] = max(self._peaks.get(key, 0), peak)
            return result

        simulator._mapped_run = lambda *args: measure(mapped_run, *args)
        simulator._layer_report = lambda *args: measure(layer_report, *args)
        try:
            yield
        finally:
            simulator._mapped_run, simulator._layer_report = mapped_run, layer_report

    def peak_bytes(self, hw_name: str, layer_name: str) -> int:
        """The peak bytes of ``simulate_layer`` on ``layer_name`` of the shipped network on the shipped
        config ``hw_name``, measured in that config's whole-network run (run now if no test has asked)."""
        assert layer_name in PEAK_MEMORY_LAYERS[hw_name]
        key = (hw_name, layer_name)
        if key not in self._peaks:
            self(hw_name)
        if key not in self._peaks:  # cached from another load of the same trace: measure the layer alone
            import sparsesim.simulator as simulator

            layer = self._default_trace.layer(layer_name)
            simulator._OWN_EFFECTUAL_MACS.pop(layer, None)
            _, self._peaks[key] = peak_bytes_of(simulator.simulate_layer, self._hwconfig(hw_name), layer)
        return self._peaks[key]


@pytest.fixture(scope="session")
def simulated(vgg16_trace) -> SimulationCache:
    """The session's :class:`SimulationCache`: ``simulated("cnvlutin")`` is the whole shipped network on
    cnvlutin, simulated once whichever test asks first."""
    return SimulationCache(vgg16_trace)
