"""Run one ``sparsesim`` command in a forked child with a time and a memory bound, and judge its outcome.

The child is forked from the test process after sparsesim is imported, so an example costs its own work,
not an interpreter start. The child's address space is capped (``RLIMIT_AS``: what the parent had at the
fork plus ``memory_mib``), and an alarm ends it after ``timeout_s``; its stdout and stderr go to files.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

from sparsesim.cli import main


@dataclass(frozen=True)
class Outcome:
    """What one command did: its exit status (None if a signal ended it), its output and its cost."""

    args: tuple[str, ...]
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float

    @property
    def timed_out(self) -> bool:
        return self.signal == signal.SIGALRM

    def describe(self) -> str:
        tail = self.stderr[-2000:]
        return (
            f"sparsesim {' '.join(self.args)}\n  exit {self.exit_code}, signal {self.signal}, "
            f"{self.seconds:.2f} s, peak RSS {self.peak_rss_mib:.0f} MiB\n  stderr: {tail}"
        )


def _virtual_memory_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


def _child(args: list[str], out_fd: int, err_fd: int, timeout_s: int, memory_mib: int) -> None:
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    sys.stdout = os.fdopen(1, "w", closefd=False)
    sys.stderr = os.fdopen(2, "w", closefd=False)
    limit = _virtual_memory_bytes() + memory_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(timeout_s)
    code = 0
    try:
        main(args, prog_name="sparsesim", standalone_mode=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # what the interpreter would print and exit with
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_cli(args: list[str], timeout_s: int = 30, memory_mib: int = 1536) -> Outcome:
    """Run ``sparsesim ARGS`` in a forked child bounded by ``timeout_s`` and ``memory_mib``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                _child(args, out.fileno(), err.fileno(), timeout_s, memory_mib)
            finally:
                os._exit(70)
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return Outcome(
            args=tuple(args),
            exit_code=os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
            signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            seconds=seconds,
            peak_rss_mib=usage.ru_maxrss / 1024,
        )
