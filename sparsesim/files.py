"""Reading inputs so that no file can hang or flood a run, and writing results so that nothing is lost.

**Reading.** Every input sparsesim reads (hardware configs, SCALE-Sim ``.cfg`` files and topologies, trace
manifests and layers) goes through :func:`read_input_bytes` / :func:`read_input_text`: the file must be a
*regular* file (a FIFO would block forever, a device such as ``/dev/zero`` never ends) no larger than a
limit its reader documents, and is read with one bounded read. Symbolic links are followed: inputs are often
linked into place from a shared store, and what matters is what the link reaches — a regular file within
the limit (a trace's files must still match the manifest's checksums).

**Writing.** A reader of a result sees the old file or the whole new one, never a part: results are written
to a temporary file in the same folder and renamed over the target (:func:`write_atomic`,
:func:`write_atomic_all`). A temporary file left behind by a writer that was killed is removed by the next
write of the same target. :func:`check_writable` lets a command refuse an output path before it spends a
long simulation on results it could not write.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sparsesim.errors import SparsesimError

try:  # POSIX: a writer holds a lock on its temporary file, so that a leftover is known to be abandoned.
    import fcntl
except ImportError:  # pragma: no cover - Windows: leftovers are not cleaned up
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "InputFileError",
    "OutputFileError",
    "check_writable",
    "read_input_bytes",
    "read_input_text",
    "write_atomic",
    "write_atomic_all",
]


class InputFileError(SparsesimError):
    """An input file cannot be used: missing, unreadable, not a regular file, too large, or not UTF-8.

    The message names the file; readers re-raise it as their own error type (``ConfigError``,
    ``TraceError``) with ``reason``, the message without the file name.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class OutputFileError(SparsesimError):
    """A result cannot be written where the user asked: the message names the path and why."""


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def read_input_bytes(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refused with :class:`InputFileError` unless it is one.

    ``what`` names the file's role in messages ("hardware config", "trace manifest"...). The file is opened
    without blocking (a FIFO with no writer would block ``open`` forever), checked with ``fstat`` on the
    open descriptor (no race between the check and the read), and read with at most ``max_bytes + 1`` bytes
    requested, so a file that grows while it is read is refused too. Each read asks for at most 16 MiB,
    and no more than what ``fstat`` says is left plus one byte, so that a small file never costs a buffer
    of the limit's size.
    """
    name = os.fsdecode(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise InputFileError(name, f"cannot read the {what}: {error.strerror or error}") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        kind = _kind_of(status.st_mode)
        raise InputFileError(name, f"the {what} must be a regular file, but this is {kind}")
    with os.fdopen(fd, "rb", buffering=0) as handle:
        size = status.st_size
        if size > max_bytes:
            raise InputFileError(name, f"the {what} is {size:,} bytes; at most {max_bytes:,} are accepted")
        chunks, left, expected = [], max_bytes + 1, size
        try:
            while left > 0:
                # what fstat says is left, plus one byte to see the end; past it (the file grew), big reads
                chunk = handle.read(min(left, expected + 1 if expected >= 0 else 1 << 24, 1 << 24))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
                expected -= len(chunk)
        except OSError as error:
            raise InputFileError(name, f"cannot read the {what}: {error.strerror or error}") from None
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise InputFileError(name, f"the {what} grew past {max_bytes:,} bytes while it was read")
    return data


def read_input_text(path: str | os.PathLike, max_bytes: int, what: str = "file") -> str:
    """:func:`read_input_bytes`, decoded as UTF-8 (:class:`InputFileError` if it is not)."""
    data = read_input_bytes(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(
            os.fsdecode(path), f"the {what} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


def check_writable(path: str | os.PathLike) -> None:
    """Refuse with :class:`OutputFileError`, before any work, an output path that could not be written.

    The target must not be a directory; its nearest existing ancestor must be a directory this process can
    create files in (missing folders below it are created when the result is written).
    """
    target = Path(path)
    if target.is_dir():
        raise OutputFileError(f"{path}: cannot write the result there: it is a directory")
    parent = target.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: makedirs would fail on it
            raise OutputFileError(f"{path}: cannot write the result: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputFileError(f"{path}: cannot write the result: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFileError(f"{path}: cannot write the result: no permission to write in {parent}")


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_abandoned(target: Path) -> None:
    """Delete temporary files of earlier writes of ``target`` whose writer is gone (killed mid-write).

    A live writer holds an exclusive lock on its temporary file; a file we can lock has no writer left.
    """
    if fcntl is None:  # pragma: no cover
        return
    prefix = _temporary_prefix(target)
    try:
        candidates = [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.suffix == ".tmp"]
    except OSError:
        return
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            candidate.unlink(missing_ok=True)
        except OSError:
            continue  # locked: another writer is at work
        finally:
            os.close(fd)


def _write_temporary(target: Path, payload: bytes) -> tuple[int, str]:
    """Write ``payload`` to a locked temporary file beside ``target``; returns its (open fd, path)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.chmod(tmp, 0o644)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def write_atomic_all(outputs: Mapping[str | os.PathLike, str | bytes]) -> None:
    """Write every ``{path: data}`` atomically, all or none: every temporary file is written first, then
    each is renamed over its target with :func:`os.replace` (atomic on POSIX and Windows).

    Text is UTF-8 encoded; missing parent folders are created. On any error while the temporary files are
    written, they are removed, no target changes, and :class:`OutputFileError` names the path and why.
    """
    staged: list[tuple[int, str, Path]] = []
    try:
        for path, data in outputs.items():
            target = Path(path)
            payload = data.encode("utf-8") if isinstance(data, str) else data
            try:
                fd, tmp = _write_temporary(target, payload)
            except OSError as error:
                raise OutputFileError(f"{path}: cannot write the result: {error.strerror or error}") from None
            staged.append((fd, tmp, target))
        for _, tmp, target in staged:
            try:
                os.replace(tmp, target)
            except OSError as error:
                reason = error.strerror or error
                raise OutputFileError(f"{target}: cannot write the result: {reason}") from None
    finally:
        for fd, tmp, _ in staged:
            os.close(fd)  # releases the lock
            Path(tmp).unlink(missing_ok=True)  # only left if something failed before its rename


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic_all`)."""
    write_atomic_all({path: data})
