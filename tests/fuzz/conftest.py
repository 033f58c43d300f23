"""The fuzz tier's outcome tally (its small trace cut from the shipped real one, ``crop_trace``, is in
tests/conftest.py: the make-trace CLI tests run on it too)."""

from __future__ import annotations

import collections

#: (family, outcome) -> inputs tried; printed in the summary at the end of the run. "hwconfig run": the
#: simulations of the mutated configs that validated.
TALLY: collections.Counter[tuple[str, str]] = collections.Counter()


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section("fuzz tier: inputs per family and outcome")
    families = sorted({family for family, _ in TALLY})
    outcomes = sorted({outcome for _, outcome in TALLY})
    terminalreporter.write_line("family".ljust(14) + "".join(o.rjust(18) for o in outcomes))
    for family in families:
        counts = "".join(str(TALLY[family, o]).rjust(18) for o in outcomes)
        terminalreporter.write_line(family.ljust(14) + counts)
