"""Changing one parameter of a validated hardware config (``--set``, sweeps, tests' variants of a machine).

Pure config manipulation: the changed config goes through the same validation as a config file, so a
change can build no machine that a file could not describe.
"""

from __future__ import annotations

import copy
from typing import Any

from sparsesim.config.hwconfig import HwConfig, hwconfig_to_dict, parse_hwconfig
from sparsesim.errors import ConfigError

__all__ = ["with_parameter"]


def with_parameter(hw: HwConfig, dotted_path: str, value: Any) -> HwConfig:
    """A copy of the config ``hw`` with one parameter changed, validated like a config file.

    ``dotted_path`` names a parameter as ``sparsesim validate --explain`` lists it
    (``pe_array.pe.mechanism.kind``); ``value`` is given as YAML would read it. Changing a mechanism's
    ``kind`` gives the new mechanism's block at its defaults. Raises :class:`~sparsesim.errors.ConfigError`
    for a path that names no parameter, or a value the parameter does not allow (with every problem, as for
    a file).
    """
    data = copy.deepcopy(hwconfig_to_dict(hw))
    *blocks, key = dotted_path.split(".")
    node = data
    for block in blocks:
        if not isinstance(node, dict) or block not in node:
            raise ConfigError(f"--set {dotted_path}", [(dotted_path, f"no block {block!r} here")])
        node = node[block]
    if not isinstance(node, dict) or key not in node:
        raise ConfigError(
            f"--set {dotted_path}", [(dotted_path, "unknown parameter (see sparsesim validate --explain)")]
        )
    if key == "kind" and node.get("kind") != value:
        # Another mechanism: its own block, at its defaults (the old one's parameters are not its own).
        node.clear()
    node[key] = value
    return parse_hwconfig(data, source=f"{hw.name} with {dotted_path}={value!r}")
