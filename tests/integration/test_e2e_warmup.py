"""Watchers never wait for each other: one watcher's warm-up holds up only itself."""

from __future__ import annotations

import time

import psutil

from stack.v1 import types_pb2
from tests.support.cluster import Cluster
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_watcher_warming_up_does_not_delay_another_ones_scale_down(cluster: Cluster) -> None:
    # A has the higher priority: the agent reconciles it first, warm-up and all.
    cluster.apply(
        watcher_toml("a", cluster.tag, numprocesses=1, warmup_delay=5, priority=10)
        + watcher_toml("b", cluster.tag, numprocesses=4, graceful_timeout=5)
    )
    cluster.wait_running("a", 1, timeout=20)
    b_before = cluster.wait_running("b", 4)

    assert cluster.stackctl("scale", "a", "3", check=True).code == 0
    wait_for(lambda: len(cluster.processes("a")) >= 2, 10, "a to start its second worker")
    assert cluster.stackctl("scale", "b", "1", check=True).code == 0
    asked = time.monotonic()
    stopped = [pid for wid, pid in b_before.items() if wid != 1]
    wait_for(lambda: all(_gone(pid) for pid in stopped), 10, "b's 3 surplus workers to exit")
    took = time.monotonic() - asked

    states = {p.wid: p.state for p in cluster.processes("a")}
    assert took < 1.0, f"b's scale-down took {took:.2f}s while a warmed up"
    assert states[2] == types_pb2.PROCESS_STATE_STARTING, "a is still warming up"
    assert 3 not in states or states[3] == types_pb2.PROCESS_STATE_STARTING
    assert cluster.running_pids("b") == {1: b_before[1]}

    # a itself still spaces its starts by warmup_delay
    cluster.wait_running("a", 3, timeout=30)
    reply = cluster.stackctl("-o", "json", "events", "-n", "0", "--watcher", "a", check=True)
    spawns = {e["wid"]: e["at"] for e in reply.json()["events"] if e["kind"] == "spawn"}
    assert spawns[3] - spawns[2] >= 5 - 0.05
