"""`sparsesim formats` on a tiny synthetic trace (named as such), checked against a hand calculation."""

from __future__ import annotations

import re

import numpy as np
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.workload.trace import Layer, save_trace

# A 1x4x4 input with three nonzeros, at flat positions 1, 8 and 15 (C order).
SYNTHETIC_INPUT = np.array([[[0, 5, 0, 0], [0, 0, 0, 0], [3, 0, 0, 0], [0, 0, 0, 1]]], dtype=np.float32)


def write_synthetic_trace(path):
    weights = np.ones((1, 1, 1, 1), dtype=np.float32)
    bias = np.zeros(1, dtype=np.float32)
    layer = Layer("synthetic", "conv2d", SYNTHETIC_INPUT, weights, bias, SYNTHETIC_INPUT.copy(), 1, 0, "relu")
    save_trace(path, "synthetic_formats", {"note": "synthetic tensors for a unit test"}, [layer])


def sizes_of(output: str, tensor: str) -> dict[str, tuple[int, int, int]]:
    block = output.split(f"synthetic {tensor}")[1].split("\nsynthetic ")[0]
    sizes = {}
    for line in block.splitlines():
        match = re.match(r"^(\w+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+[\d.]+$", line)
        if match:
            sizes[match[1]] = tuple(int(match[i].replace(",", "")) for i in (2, 3, 4))
    return sizes


def test_formats_command_matches_a_hand_calculation(tmp_path):
    write_synthetic_trace(tmp_path / "trace")
    result = CliRunner().invoke(main, ["formats", str(tmp_path / "trace")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sizes = sizes_of(result.output, "input")
    # (payload bits, metadata bits, total) for 16 positions, 3 nonzero 16-bit values:
    assert sizes["U"] == (16 * 16, 0, 256)  # every value stored
    assert sizes["B"] == (3 * 16, 16, 64)  # one mask bit per position
    # 5-bit runs before each value: 1 zero before the 5, 6 before the 3, 6 before the 1; the last value
    # ends the fiber, so no terminal run is needed.
    assert sizes["RLE"] == (3 * 16, 3 * 5, 63)
    # Flat coordinates: a 5-bit count (0..16) then a 4-bit coordinate per value.
    assert sizes["CP"] == (3 * 16, 5 + 3 * 4, 65)
    # Elias-gamma of run + 1: gamma(2) is 3 bits, gamma(7) 5 bits, twice.
    assert sizes["RLE_gamma"] == (3 * 16, 3 + 5 + 5, 61)
    assert "best: RLE_gamma" in result.output


def test_formats_sizes_the_float32_outputs_of_a_real_layer_as_the_words_the_machine_stores():
    from tests.conftest import TRACE_DIR

    result = CliRunner().invoke(main, ["formats", str(TRACE_DIR), "--layer", "conv5_3"])
    assert result.exit_code == 0, result.output
    assert "conv5_3 output 512x7x10, density 0.270" in result.output


def test_stored_words_round_saturate_and_keep_zeros():
    from sparsesim.sparse.formats import stored_words

    values = np.array([0.0, 29.916996, -1e6, 1e30, 1e-9, -0.0], dtype=np.float32)
    words = stored_words(values)
    assert words.dtype == np.float16
    assert words.tolist() == [0.0, float(np.float16(29.916996)), -65504.0, 65504.0, 0.0, -0.0]
