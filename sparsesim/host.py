"""Settings of the process that runs simulations: glibc keeps the memory numpy frees, for numpy to reuse.

Why. A layer's simulation allocates and frees numpy temporaries of a few MB thousands of times (im2col bands,
gathers, block sums). With glibc's default, adaptive thresholds, such blocks are mapped and unmapped, or
trimmed off the heap's top, over and over, and every reuse faults its pages in again. Where a page fault is
costly, as in a VM whose freed memory goes back to the host (the virtio balloon's free page reporting, on
the 2-core VM this was measured on), that dominates: a gather into fresh 2 MB blocks took 14 ns an element
with the defaults and 1.9 ns with the settings below, and the test suite 14 s (5 %) less CPU. Fixed
thresholds keep blocks below ``MMAP_THRESHOLD_BYTES`` on the heap and up to ``TRIM_THRESHOLD_BYTES`` of free
heap in the process; the price is resident memory held at its peak instead of shrinking between layers (the
suite's peak resident set: 856 MB against 800 MB).

Only a process that sparsesim owns sets them: the ``sparsesim`` command and the test session. Importing the
library changes nothing in the host process. Results do not depend on it: only where numpy's memory comes
from changes.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc's largest mmap threshold on 64-bit machines (``DEFAULT_MMAP_THRESHOLD_MAX``): blocks below it come
#: from the heap.
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Free memory at the heap's top kept in the process rather than given back.
TRIM_THRESHOLD_BYTES = 256 * 2**20
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds (see the module docstring). Returns whether they were set: False
    where the C library is not glibc (macOS, Windows, musl), which is then left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has mallopt but not these thresholds
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
