"""sparsesim: a cycle-level simulator of sparse DNN accelerators, driven by real tensors.

The public API is what the CLI, the tests and the benchmarks all call::

    from sparsesim import load_hwconfig, load_trace, simulate
    report = simulate(load_hwconfig("hwconfigs/cnvlutin.yaml"), load_trace("traces/vgg16_china"))
    print(report.render())
"""

__version__ = "0.1.0"

from sparsesim.errors import ConfigError, SimulationError, SparsesimError, TraceError  # noqa: E402


def __getattr__(name: str):
    # The API is imported lazily so that `import sparsesim` (and `sparsesim --help`) stays fast.
    if name == "simulate":
        from sparsesim.simulator import simulate

        return simulate
    if name == "load_hwconfig":
        from sparsesim.config import load_hwconfig

        return load_hwconfig
    if name == "load_trace":
        from sparsesim.workload.trace import load_trace

        return load_trace
    raise AttributeError(f"module 'sparsesim' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "SimulationError",
    "SparsesimError",
    "TraceError",
    "__version__",
    "load_hwconfig",
    "load_trace",
    "simulate",
]
