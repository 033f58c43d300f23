"""The base of every hardware block: a dotted path, the actions it can count, and its ports.

Components only *count* actions during a run (``dram.read`` = one burst, ``global_buffer.read`` = one word,
...). Energy is computed afterwards from those counts and the config's table (see
:mod:`sparsesim.core.energy`), so a run never needs to be repeated to try another energy table.
"""

from __future__ import annotations

from sparsesim.core.port import Port


class Component:
    """A hardware block. Subclasses declare ``ACTIONS`` (the names of what they count) up front."""

    ACTIONS: tuple[str, ...] = ()

    def __init__(self, path: str):
        self.path = path
        self.actions: dict[str, int] = dict.fromkeys(self.ACTIONS, 0)
        self.ports: list[Port] = []

    def count(self, action: str, n: int) -> None:
        """Add ``n`` occurrences of ``action``; an undeclared action is a programming error."""
        if action not in self.actions:
            raise KeyError(f"{self.path} does not declare action {action!r}; declared: {self.ACTIONS}")
        self.actions[action] += int(n)

    def add_port(self, port: Port) -> Port:
        self.ports.append(port)
        return port
