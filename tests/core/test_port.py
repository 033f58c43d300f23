"""Timing of transfers through ports: bandwidth-bound, latency-bound, paths, queueing."""

from __future__ import annotations

import math

import pytest
import simpy

from sparsesim.core import Hop, Port, transfer


def run_transfers(env, *transfers):
    done = {}

    def proc(name, hops, start):
        yield env.timeout(start)
        duration = yield from transfer(env, hops)
        done[name] = (env.now, duration)

    for name, hops, start in transfers:
        env.process(proc(name, hops, start))
    env.run()
    return done


@pytest.mark.parametrize(
    ("n_bytes", "bandwidth", "latency", "expected"),
    [
        (6400, 64.0, 10, 10 + 100),  # bandwidth-bound: 100 busy cycles dominate
        (64, 64.0, 100, 100 + 1),  # latency-bound: one busy cycle after 100 of latency
        (65, 64.0, 0, 2),  # a partial last beat still takes a whole cycle
        (10, 2.5, 3, 3 + 4),  # fractional bandwidth
    ],
)
def test_single_port_transfer_takes_latency_plus_ceil_bytes_over_bandwidth(
    n_bytes, bandwidth, latency, expected
):
    env = simpy.Environment()
    port = Port(env, "link", bandwidth, latency, rank=0)
    done = run_transfers(env, ("t", [Hop(port, port.cycles_for(n_bytes))], 0))
    assert done["t"] == (expected, expected)
    assert port.busy_cycles == math.ceil(n_bytes / bandwidth)
    assert port.stall_cycles == expected - port.busy_cycles


def test_path_is_cut_through_and_limited_by_its_slowest_port():
    env = simpy.Environment()
    fast = Port(env, "fast", 64.0, 5, rank=0)
    slow = Port(env, "slow", 16.0, 2, rank=1)
    done = run_transfers(env, ("t", [Hop(fast, fast.cycles_for(1024)), Hop(slow, slow.cycles_for(1024))], 0))
    assert done["t"][1] == 5 + 2 + 1024 // 16
    assert fast.busy_cycles == 16 and slow.busy_cycles == 64
    # The fast port is held for the whole transfer: what it did not spend moving data is stall.
    assert fast.stall_cycles == done["t"][1] - 16


def test_second_transaction_queues_behind_the_first_in_fifo_order():
    env = simpy.Environment()
    port = Port(env, "link", 10.0, 0, rank=0)
    done = run_transfers(
        env, ("a", [Hop(port, port.cycles_for(100))], 0), ("b", [Hop(port, port.cycles_for(50))], 1)
    )
    assert done["a"] == (10, 10)
    assert done["b"] == (15, 5)


def test_empty_transfer_takes_no_time_and_books_nothing():
    env = simpy.Environment()
    port = Port(env, "link", 10.0, 7, rank=0)
    done = run_transfers(env, ("t", [Hop(port, port.cycles_for(0))], 0))
    assert done["t"] == (0, 0)
    assert port.transactions == 0


def test_ports_acquired_in_rank_order_cannot_deadlock():
    env = simpy.Environment()
    a = Port(env, "a", 1.0, 0, rank=0)
    b = Port(env, "b", 1.0, 0, rank=1)
    # Listed in opposite orders: both still complete, one after the other.
    done = run_transfers(
        env,
        ("x", [Hop(a, a.cycles_for(4)), Hop(b, b.cycles_for(4))], 0),
        ("y", [Hop(b, b.cycles_for(4)), Hop(a, a.cycles_for(4))], 0),
    )
    assert sorted(t for t, _ in done.values()) == [4, 8]


@pytest.mark.parametrize("bandwidth", [0.0, -1.0])
def test_port_rejects_non_positive_bandwidth(bandwidth):
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        Port(simpy.Environment(), "link", bandwidth, 0, rank=0)
