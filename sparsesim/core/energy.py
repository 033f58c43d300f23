"""Energy = sum over actions of count x pJ per action, computed after the run (Accelergy's model).

The table is the hwconfig's ``energy_pj`` section: ``{component: {action: pJ}}``. A counted action with no
entry in the table is an error, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Mapping

from sparsesim.errors import SimulationError


def action_energy_pj(
    component: str, actions: Mapping[str, int], table: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Energy of each action of one component, in pJ (0.0 for actions that never happened)."""
    entries = table.get(component)
    if entries is None:
        raise SimulationError(f"energy table has no entry for component {component!r}")
    energy = {}
    for action, count in actions.items():
        if action not in entries:
            raise SimulationError(
                f"energy table has no entry energy_pj.{component}.{action}; "
                f"it has: {', '.join(sorted(entries))}"
            )
        energy[action] = float(count) * float(entries[action])
    return energy
