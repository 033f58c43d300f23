"""The bounded systolic model equals the whole-layer one: closed forms and chunked streams, same numbers.

Each bounded piece (the closed-form write profile, the chunked demand stream, the closed-form count of
distinct ifmap words, the read counter that keeps only one epoch, the write buffer's step bound) is compared
with the straightforward whole-layer numpy version it replaced (``whole_layer.py``) or with plain Python,
on small synthetic shapes (unit tests only) drawn at random, small enough for the whole-layer arrays.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import sparsesim.systolic.array as array
import sparsesim.systolic.buffers as buffers
from sparsesim.systolic import SystolicArrayConfig, fold_plan, simulate_systolic, simulate_systolic_layer
from sparsesim.systolic.array import (
    FoldedWriteProfile,
    demand_stream,
    demand_stream_length,
    distinct_ifmap_addresses,
)
from sparsesim.systolic.buffers import EpochReadCounter, simulate_write_buffer, write_buffer_steps
from sparsesim.workload.topology import ConvShape
from tests.systolic import whole_layer

DATAFLOWS = ("ws", "os", "is")


def synthetic_layer(rng: random.Random, name: str = "synthetic") -> ConvShape:
    """A random small convolution (synthetic: for unit tests only), strides up to 4 (past the filter too)."""
    height, width = rng.randint(1, 14), rng.randint(1, 14)
    return ConvShape(
        name,
        height,
        width,
        rng.randint(1, height),
        rng.randint(1, width),
        rng.randint(1, 6),
        rng.randint(1, 20),
        rng.randint(1, 4),
    )


def synthetic_config(rng: random.Random, dataflow: str, sram_words: int = 65536) -> SystolicArrayConfig:
    rows, cols = rng.randint(1, 9), rng.randint(1, 9)
    return SystolicArrayConfig(rows, cols, sram_words, sram_words, sram_words, dataflow)


def cases(count: int, seed: int):
    rng = random.Random(seed)
    return [(synthetic_layer(rng), synthetic_config(rng, rng.choice(DATAFLOWS))) for _ in range(count)]


@pytest.mark.parametrize(("layer", "config"), cases(80, seed=1))
def test_closed_form_write_profile_equals_the_per_cycle_array(layer, config):
    plan = fold_plan(config, layer)
    cumulative = np.cumsum(whole_layer.writes_per_cycle(config, plan))
    profile = FoldedWriteProfile(config, plan)
    assert (profile.cycles, profile.total) == (len(cumulative), int(cumulative[-1]))
    written_by = [profile.written_by(cycle) for cycle in range(-1, profile.cycles + 2)]
    assert written_by == [0, 0] + cumulative.tolist() + [profile.total]
    cycle_of = [profile.cycle_of(word) for word in range(profile.total + 2)]
    assert cycle_of == np.searchsorted(cumulative, np.arange(profile.total + 2), side="right").tolist()


@pytest.mark.parametrize("chunk_words", [7, 64, 1 << 16])
@pytest.mark.parametrize(("layer", "config"), cases(40, seed=2))
def test_chunked_demand_stream_equals_the_whole_layer_stream(layer, config, chunk_words, monkeypatch):
    # Small chunks cut folds anywhere and span several; a small walk cache takes the arithmetic path too.
    monkeypatch.setattr(array, "_CHUNK_WORDS", chunk_words)
    monkeypatch.setattr(array, "_WALK_CACHE_WORDS", 0 if chunk_words == 64 else 1 << 18)
    for operand in ("ifmap", "filter"):
        chunks = list(demand_stream(config, layer, operand))
        assert all(len(chunk) <= chunk_words for chunk in chunks)
        got = np.concatenate(chunks)
        expected = whole_layer.demand_stream(config, layer, operand)
        assert got.tolist() == expected.tolist()
        assert demand_stream_length(config, layer, operand) == len(expected)


def test_closed_form_distinct_ifmap_words_equal_marking_them():
    rng = random.Random(3)
    for _ in range(3000):
        layer = synthetic_layer(rng)
        assert distinct_ifmap_addresses(layer) == whole_layer.distinct_ifmap_addresses(layer), layer


def python_epoch_reads(stream, capacity: int) -> int:
    """SCALE-Sim's read buffer in plain Python: a set that is emptied when it reaches ``capacity``."""
    epoch, reads = set(), 0
    for address in stream:
        if address not in epoch:
            epoch.add(address)
            reads += 1
            if capacity and len(epoch) == capacity:
                epoch = set()
    return reads


def random_stream(rng: random.Random, length: int, space: int) -> np.ndarray:
    """Addresses with locality and reuse, like a demand stream (synthetic: for unit tests only)."""
    base = np.cumsum(rng.choices([0, 1, 1, 2, 5], k=length)) % space
    jitter = np.array(rng.choices(range(-8, 9), k=length))
    return np.clip(base + jitter, 0, space - 1).astype(np.int64)


@pytest.mark.parametrize("path", ["scattered stamps", "sorted stamps", "sorted runs"])
def test_each_read_counter_path_equals_a_python_set(path, monkeypatch):
    monkeypatch.setattr(buffers, "_PIECE_MIN", 16)  # small pieces: epochs end inside and across them
    if path == "sorted stamps":
        monkeypatch.setattr(buffers, "_SCATTERED_SPACE", 0)
    rng = random.Random(4)
    for _ in range(100):
        space = rng.randint(1, 3000)
        stream = random_stream(rng, rng.randint(0, 2000), space)
        capacity = rng.choice([0, 1, 2, 3, 50, 100, 400, 5000])
        counter = EpochReadCounter(capacity, None if path == "sorted runs" else space)
        assert counter._stamped == (path != "sorted runs")
        cut = rng.randint(0, len(stream))
        counter.feed(stream[:cut])
        counter.feed(stream[cut:])
        assert counter.dram_reads == python_epoch_reads(stream.tolist(), capacity)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_ordered_dram_reads_equal_the_whole_layer_count_on_small_srams(dataflow, monkeypatch):
    monkeypatch.setattr(array, "_CHUNK_WORDS", 100)
    rng = random.Random(5)
    for index in range(40):
        layer = synthetic_layer(rng)
        # 150 to 600 words: epochs of 50 to 300 addresses, so the counts depend on the demand order.
        config = synthetic_config(rng, dataflow, sram_words=rng.choice([150, 230, 400, 600]))
        for operand in ("ifmap", "filter"):
            expected = whole_layer.dram_reads_in_order(config, layer, operand)
            assert array._dram_reads_in_order(config, layer, operand) == expected, (index, operand)
        result = simulate_systolic_layer(config, layer)
        distinct = {"ifmap": distinct_ifmap_addresses(layer), "filter": layer.window_size * layer.num_filters}
        for operand in ("ifmap", "filter"):
            expected = whole_layer.dram_reads_in_order(config, layer, operand)
            capacity = buffers.read_epoch_capacity(config.ifmap_sram_bytes)
            if distinct[operand] < capacity:
                expected = distinct[operand]
            assert getattr(result, f"{operand}_dram_reads") == expected


def test_ws_filters_are_read_from_dram_once_whatever_the_sram():
    # Each filter word is demanded exactly once in ws, so the closed form k * n is the ordered count.
    rng = random.Random(6)
    for _ in range(60):
        layer = synthetic_layer(rng)
        config = synthetic_config(rng, "ws", sram_words=rng.choice([100, 150, 230]))
        once = layer.window_size * layer.num_filters
        assert whole_layer.dram_reads_in_order(config, layer, "filter") == once
        assert simulate_systolic_layer(config, layer).filter_dram_reads == once
        assert array.layer_work(config, layer).ordered_reads["filter"] == 0


def test_write_buffer_steps_bound_the_steps_taken():
    # simulate_write_buffer raises SimulationError past max_steps: the bound must never be reached.
    rng = random.Random(7)
    for _ in range(1000):
        length, kind = rng.randint(1, 400), rng.random()
        if kind < 0.3:
            profile = [rng.randint(0, 60) for _ in range(length)]
        elif kind < 0.6:
            profile = [rng.choice([0, 0, 0, rng.randint(1, 400)]) for _ in range(length)]
        else:  # folds of trapezoids, as the array writes them
            height, width, gap = rng.randint(1, 40), rng.randint(1, 30), rng.randint(0, 20)
            fold = np.concatenate([np.zeros(gap, dtype=int), np.convolve(np.ones(height), np.ones(width))])
            profile = np.tile(fold, rng.randint(1, 8)).astype(int).tolist()
        sram_words, line_words = rng.randint(2, 800), rng.randint(1, 100)
        steps = write_buffer_steps(sum(profile), sram_words, line_words)
        simulate_write_buffer(np.array(profile), sram_words, line_words, max_steps=steps)


def test_write_buffer_guard_stops_a_run_past_its_steps():
    from sparsesim.errors import SimulationError

    with pytest.raises(SimulationError, match="more than 3 steps"):
        simulate_write_buffer(np.full(100, 4), 20, 4, max_steps=3)


def test_layers_of_one_shape_are_simulated_once_with_their_own_names():
    rng = random.Random(8)
    config = synthetic_config(rng, "os", sram_words=230)
    shapes = [synthetic_layer(rng, f"shape{index}") for index in range(3)]
    layers = [
        ConvShape(f"copy{index}_{shape.name}", *[getattr(shape, f) for f in array.ConvShape.__slots__[1:9]])
        for index in range(4)
        for shape in shapes
    ]
    report = simulate_systolic(config, layers)
    assert [result.layer for result in report.layers] == [layer.name for layer in layers]
    assert [result.to_dict() for result in report.layers] == [
        simulate_systolic_layer(config, layer).to_dict() for layer in layers
    ]


def test_skewed_walk_is_exact_for_large_blocks():
    # Blocks up to 2**20 a side: the arithmetic inversion (square roots corrected in integers) is exact.
    rng = random.Random(9)
    for _ in range(200):
        h, w = rng.randint(1, 1 << 20), rng.randint(1, 4096)
        element = np.array(sorted(rng.sample(range(h * w), min(50, h * w))), dtype=np.int64)
        i, j = array._walk("skewed", h, w, element)
        t = i + j
        assert ((0 <= i) & (i < h) & (0 <= j) & (j < w)).all()
        before = np.array([array._skew_before(h, w, int(cycle)) for cycle in t])
        lanes_before = j - np.maximum(0, t - h + 1)
        assert (before + lanes_before == element).all()


def test_trapezoid_counts_match_their_definition():
    for h in range(1, 9):
        for w in range(1, 9):
            counts = [min(t + 1, h, w, h + w - 1 - t) for t in range(h + w - 1)]
            assert [array._skew_before(h, w, t) for t in range(-1, h + w + 1)] == [0, 0] + list(
                np.cumsum(counts)
            ) + [h * w]
            assert math.fsum(counts) == h * w
