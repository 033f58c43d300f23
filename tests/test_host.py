"""The process settings of sparsesim/host.py: with them, a freed block of a few MB stays in the process."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest

from sparsesim.host import MMAP_THRESHOLD_BYTES, keep_freed_memory


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


def _glibc_mallinfo2():
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    return libc.mallinfo2


def test_a_freed_block_of_a_few_mb_is_kept_for_reuse_not_given_back():
    mallinfo2 = _glibc_mallinfo2()
    if mallinfo2 is None:
        pytest.skip("glibc >= 2.33 only (mallinfo2)")
    assert keep_freed_memory()  # tests/conftest.py has set them already; setting them again changes nothing
    block_bytes = 8 * 2**20
    assert block_bytes < MMAP_THRESHOLD_BYTES
    before = mallinfo2()
    block = np.ones(block_bytes // 8)
    during = mallinfo2()
    # Taken from the heap, not mapped on its own (glibc's default maps blocks of 128 KiB and more at first).
    assert during.hblkhd == before.hblkhd and during.uordblks >= before.uordblks + block_bytes
    del block
    after = mallinfo2()
    # Freed into the heap and kept there (the default trims the heap's top beyond 128 KiB to 64 MiB).
    assert after.arena >= before.arena and after.fordblks >= block_bytes
