"""Sweeping one hardware parameter: the same trace on a config once per value (``sparsesim sweep``).

The API level, next to :mod:`sparsesim.simulator`: it builds the swept configs
(:func:`sparsesim.config.overrides.with_parameter`), simulates them reading each layer once
(:func:`sparsesim.simulator.simulate_configs`) and tabulates them (:func:`sparsesim.report.sweep.sweep_data`,
rendered by :func:`sparsesim.report.sweep.render_sweep`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparsesim.config.hwconfig import HwConfig
from sparsesim.config.overrides import with_parameter
from sparsesim.report.sweep import sweep_data
from sparsesim.simulator import simulate_configs

__all__ = ["sweep", "swept_configs"]


def swept_configs(hw: HwConfig, dotted_path: str, values: Sequence[Any]) -> list[HwConfig]:
    """``hw`` once per value of the parameter ``dotted_path``, each validated like a config file.

    Every config is built (and so every value checked) before anything is simulated: a bad value fails the
    sweep at once with :class:`~sparsesim.errors.ConfigError`.
    """
    return [with_parameter(hw, dotted_path, value) for value in values]


def sweep(
    hw: HwConfig, trace, dotted_path: str, values: Sequence[Any], layers: Sequence[str] | None = None
) -> dict:
    """Simulate ``trace`` (all its layers, or those named) on ``hw`` once per value of ``dotted_path``.

    Returns the JSON-able table of :func:`sparsesim.report.sweep.sweep_data`: per value, cycles, energy,
    speed-up and energy saving against the first value, effectual MACs, the worst layer's output error and
    whether the datapath was exact, with per-layer rows.
    """
    configs = swept_configs(hw, dotted_path, values)
    return sweep_data(dotted_path, list(values), simulate_configs(configs, trace, layers))
