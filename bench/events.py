"""Admin writes under a flood of agent events: the event history stays off their path.

Run: .venv/bin/python bench/events.py [--agents 10] [--writes 60]

A real controller (SQLite store) on 127.0.0.1, and simulated agents speaking the real
protocol (tests/support/fake_agent.py), in a process of their own, that send batches
of 100 events as fast as gRPC takes them. Measured, in the same run:
(a) Scale calls (one store commit each) with no agent connected: the baseline; and with
    a process beside that keeps one core busy, as the flooding process does (a 2-core
    machine shares its CPU between the flood, the controller and the client);
(b) the same during the flood, with the default per-agent rate (100 a second, bursts of
    1,000): the excess is counted and dropped;
(c) the same during the flood against a controller whose agents may send 1,000,000 a
    second: every event enters the history, and the store writer runs at its cap.
Prints the median and p95 of each, the events the controller received a second (kept or
counted as dropped), and its CPU during the flood. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.v1 import admin_pb2, agent_pb2, types_pb2
from tests.support.cluster import Cluster
from tests.support.fake_agent import FakeAgent

BATCH = 100


def scales(cluster: Cluster, count: int) -> list[float]:
    """Seconds each of `count` Scale calls took (the count alternates 0 and 1)."""
    admin = cluster.admin()
    took = []
    for n in range(count):
        started = time.perf_counter()
        admin.Scale(admin_pb2.ScaleRequest(watcher="w", count=n % 2), timeout=30)
        took.append(time.perf_counter() - started)
    return took


def run_flood(address: str, agents: int) -> None:
    """In the flooding process: `agents` simulated agents send events until stdin closes."""
    stop = threading.Event()
    with ExitStack() as stack:
        fakes = [
            stack.enter_context(FakeAgent(address, hello=agent_pb2.Hello(host_id=f"sim{n}")))
            for n in range(agents)
        ]

        def pump(agent: FakeAgent) -> None:
            events = [types_pb2.Event(kind="noise", message=f"event {n}") for n in range(BATCH)]
            while not stop.is_set():
                if agent.backlog() < 20:
                    agent.events(events)
                else:
                    time.sleep(0.0005)  # gRPC's flow control sets the pace

        threads = [threading.Thread(target=pump, args=(fake,), daemon=True) for fake in fakes]
        for thread in threads:
            thread.start()
        sys.stdin.read()
        stop.set()
        for thread in threads:
            thread.join(5)


@contextmanager
def flood(cluster: Cluster, agents: int) -> Iterator[None]:
    """A process of its own (so the measuring client keeps its CPU) floods the controller."""
    argv = [sys.executable, __file__, "--flood", cluster.address, "--agents", str(agents)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    try:
        time.sleep(1.0)  # the flood under way
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


@contextmanager
def busy_core() -> Iterator[None]:
    """A process that keeps one core busy until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait(10)


def last_seq(cluster: Cluster) -> int:
    reply = cluster.admin().Events(admin_pb2.EventsRequest(lines=1), timeout=30)
    return max((event.seq for event in reply), default=0)


def dropped(cluster: Cluster) -> int:
    """Events the controller counted and dropped (its events_dropped summaries)."""
    events = cluster.admin().Events(admin_pb2.EventsRequest(), timeout=30)
    return sum(
        int(e.message.split(": ")[1].split()[0]) for e in events if e.kind == "events_dropped"
    )


def show(name: str, took: list[float]) -> None:
    ordered = sorted(took)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"{name:<58} median {statistics.median(took) * 1000:6.1f} ms, p95 {p95 * 1000:6.1f} ms")


def measured(cluster: Cluster, agents: int, writes: int) -> tuple[list[float], float, float]:
    """Scale latencies during a flood, events received a second over the flood (from the
    flooding process's start to its end), and the controller's CPU % during the Scales."""
    assert cluster.controller.proc is not None
    process = psutil.Process(cluster.controller.proc.pid)
    before = last_seq(cluster) + dropped(cluster)
    began = time.perf_counter()
    with flood(cluster, agents):
        process.cpu_percent()
        took = scales(cluster, writes)
        cpu = process.cpu_percent()
    lasted = time.perf_counter() - began
    time.sleep(2.0)  # the drop summaries come once the agents are quiet for a second
    received = last_seq(cluster) + dropped(cluster) - before - writes
    return took, received / lasted, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--writes", type=int, default=60)
    parser.add_argument("--flood", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        run_flood(args.flood, args.agents)
        return
    with tempfile.TemporaryDirectory() as tmp:
        capped = Cluster(Path(tmp) / "capped")
        uncapped = Cluster(Path(tmp) / "uncapped")
        uncapped.controller.argv += ["--agent-event-rate", "1000000"]
        try:
            for cluster in (capped, uncapped):
                cluster.start_controller()
                cluster.apply('[watchers.w]\ncmd = "sleep 3600"\nnumprocesses = 0\n')
            scales(capped, 5)  # warm up
            show("(a) Scale, no agent", scales(capped, args.writes))
            with busy_core():
                show("(a) Scale, no agent, one core kept busy beside", scales(capped, args.writes))
            took, rate, cpu = measured(capped, args.agents, args.writes)
            show(f"(b) Scale, {args.agents} agents flooding, default rate cap", took)
            print(f"    events received {rate:,.0f}/s, controller CPU {cpu:.0f}%")
            scales(uncapped, 5)
            show("(a') Scale, no agent (second controller)", scales(uncapped, args.writes))
            took, rate, cpu = measured(uncapped, args.agents, args.writes)
            show(f"(c) Scale, {args.agents} agents flooding, no rate cap", took)
            print(f"    events received {rate:,.0f}/s, controller CPU {cpu:.0f}%")
            kept = len(list(uncapped.admin().Events(admin_pb2.EventsRequest(), timeout=30)))
            print(f"    events kept by (c): {kept:,}")
        finally:
            capped.close()
            uncapped.close()


if __name__ == "__main__":
    main()
