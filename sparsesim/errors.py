"""The exceptions sparsesim raises on bad input.

Every error a user can cause derives from :class:`SparsesimError`, so a caller can catch one type;
the CLI turns them into a one-screen message and exit code 2 instead of a traceback.
"""

from __future__ import annotations


class SparsesimError(Exception):
    """Base of every error sparsesim raises on purpose."""


class ConfigError(SparsesimError):
    """A hardware config is malformed: YAML syntax, unknown keys, wrong types or impossible values.

    ``problems`` holds every ``(dotted_path, message)`` found, so that one run reports them all; the message
    is one line for one problem, and otherwise lists the first ``SHOWN_PROBLEMS`` of them.
    """

    SHOWN_PROBLEMS = 50
    #: What kind of file the problems are in, for the message of several problems.
    WHAT = "hardware config"

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:  # one line: the file, where in it, what is wrong
            [(path, message)] = self.problems
            super().__init__(f"{source}: {path}: {message}" if path else f"{source}: {message}")
            return
        shown = self.problems[: self.SHOWN_PROBLEMS]
        lines = [f"{source}: {len(self.problems)} problem(s) in the {self.WHAT}:"]
        lines += [f"  {path or '<top level>'}: {message}" for path, message in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown):,} more")
        super().__init__("\n".join(lines))


class MappingError(ConfigError):
    """A mapping file is malformed, does not fit the layer it maps, or asks what the machine cannot do:
    each ``(path, message)`` names where in the file (``layers.conv3_1.mapping[0].factors``) and what is
    expected."""

    WHAT = "mapping"


class TraceError(SparsesimError):
    """A trace is malformed: bad manifest, wrong shapes or dtypes, non-finite values, checksum mismatch,
    truncated or pickled arrays. The message names the file and the array or manifest key."""


class SimulationError(SparsesimError):
    """A layer cannot be simulated on a hardware config (for example: no tile of it fits the buffers)."""
