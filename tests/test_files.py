"""Reading inputs within bounds (sparsesim.files): what a reader gets and what it is spared."""

import tracemalloc

import pytest

from sparsesim.files import InputFileError, read_input_bytes


def test_a_small_file_is_read_whole_without_a_buffer_of_the_limits_size(tmp_path):
    path = tmp_path / "small.json"
    path.write_bytes(b"{}\n")
    tracemalloc.start()
    try:
        assert read_input_bytes(path, 256 * 2**20, "manifest") == b"{}\n"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_a_file_over_the_limit_is_refused_with_its_size(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(101))
    with pytest.raises(
        InputFileError, match=r"big\.bin: the manifest is 101 bytes; at most 100 are accepted"
    ):
        read_input_bytes(path, 100, "manifest")
    assert read_input_bytes(path, 101, "manifest") == bytes(101)


def test_a_file_that_grows_while_it_is_read_is_refused(tmp_path, monkeypatch):
    import os

    path = tmp_path / "growing.bin"
    path.write_bytes(bytes(10))
    real_fstat = os.fstat

    def stale_fstat(fd):  # the file had 10 bytes when it was opened, and 3 MiB when it was read
        status = real_fstat(fd)
        path.write_bytes(bytes(3 * 2**20))
        return os.stat_result((*status[:6], 10, *status[7:]))

    monkeypatch.setattr("sparsesim.files.os.fstat", stale_fstat)
    with pytest.raises(InputFileError, match=r"growing\.bin: the input grew past 2,097,152 bytes"):
        read_input_bytes(path, 2 * 2**20, "input")
