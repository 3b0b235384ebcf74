"""Watchers never wait for each other: one watcher's warm-up, graceful stop or health
checks hold up only itself."""

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


WARMUP = 8


def _scale_down(cluster: Cluster, name: str, count: int, pids: dict[int, int]) -> float:
    """`stackctl scale NAME COUNT`, then the seconds until every worker above COUNT is gone."""
    assert cluster.stackctl("scale", name, str(count), check=True).code == 0
    asked = time.monotonic()
    stopped = [pid for wid, pid in pids.items() if wid > count]
    wait_for(lambda: all(_gone(pid) for pid in stopped), 30, f"{name}'s surplus workers to exit")
    return time.monotonic() - asked


def test_a_watcher_warming_up_does_not_delay_another_ones_scale_down(cluster: Cluster) -> None:
    # A has the higher priority: the agent reconciles it first, warm-up and all. Its
    # warm-up outlasts a stackctl run and b's scale-down on a loaded machine.
    cluster.apply(
        watcher_toml("a", cluster.tag, numprocesses=1, warmup_delay=WARMUP, priority=10)
        + watcher_toml("b", cluster.tag, numprocesses=4, graceful_timeout=5)
    )
    cluster.wait_running("a", 1, timeout=30)
    b_before = cluster.wait_running("b", 4)
    # What a scale-down of b takes here and now with a idle (seconds on a loaded machine).
    alone = _scale_down(cluster, "b", 3, b_before)

    assert cluster.stackctl("scale", "a", "3", check=True).code == 0
    wait_for(lambda: len(cluster.processes("a")) >= 2, 30, "a to start its second worker")
    took = _scale_down(cluster, "b", 1, b_before)

    states = {p.wid: p.state for p in cluster.processes("a")}
    # a's warm-up adds less than 1 s to it.
    assert took < alone + 1.0, f"b's scale-down took {took:.2f}s while a warmed up ({alone:.2f}s)"
    assert states[2] == types_pb2.PROCESS_STATE_STARTING, "a is still warming up"
    assert 3 not in states or states[3] == types_pb2.PROCESS_STATE_STARTING
    # (the controller hears of the exits with the agent's next report)
    wait_for(lambda: cluster.running_pids("b") == {1: b_before[1]}, 30, "b's one worker left")

    # a itself still spaces its starts by warmup_delay
    def spawns() -> dict[int, float]:
        reply = cluster.stackctl("-o", "json", "events", "-n", "0", "--watcher", "a", check=True)
        return {e["wid"]: e["at"] for e in reply.json()["events"] if e["kind"] == "spawn"}

    spawned = wait_for(lambda: (found := spawns()) and 3 in found and found, 30, "a's third")
    assert spawned[3] - spawned[2] >= WARMUP - 0.05


HANGING_CHECK = "sleep 300.31"
"""A health check that outlasts the test: found among processes by its command line."""


def _hanging_checks() -> list[int]:
    return [
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if proc.info["cmdline"] == HANGING_CHECK.split()
    ]


def test_other_watchers_stopping_gracefully_or_health_checking_do_not_delay_a_scale_down(
    cluster: Cluster,
) -> None:
    # Both have a higher priority than b: the agent reconciles them first. `slow`'s
    # workers ignore SIGTERM, so stopping it waits out its graceful_timeout; `checked`'s
    # exec health check hangs until its own timeout.
    slow = watcher_toml(
        "slow", cluster.tag, "--ignore-term", numprocesses=2, graceful_timeout=40, priority=10
    )
    check = {"type": "exec", "target": HANGING_CHECK, "interval": 0.5, "timeout": 120,
             "retries": 100}  # fmt: skip
    b = watcher_toml("b", cluster.tag, numprocesses=4, graceful_timeout=5)
    cluster.apply(slow + watcher_toml("checked", cluster.tag, priority=10) + b)
    slow_pids = cluster.wait_running("slow", 2)
    checked_pids = cluster.wait_running("checked", 1)
    b_before = cluster.wait_running("b", 4)
    alone = _scale_down(cluster, "b", 3, b_before)

    cluster.apply(slow + watcher_toml("checked", cluster.tag, priority=10, health=check) + b)
    wait_for(_hanging_checks, 30, "checked's health check to hang")
    assert cluster.stackctl("stop", "slow", check=True).code == 0
    stopping = types_pb2.PROCESS_STATE_STOPPING
    wait_for(lambda: {p.state for p in cluster.processes("slow")} == {stopping}, 30, "a stop")
    took = _scale_down(cluster, "b", 1, b_before)

    # The stop and the check went on all along, and added less than 1 s to b's scale-down.
    assert not any(_gone(pid) for pid in slow_pids.values()), "slow's stop is not over"
    assert _hanging_checks(), "checked's health check still hangs"
    assert cluster.running_pids("checked") == checked_pids, "adding a check restarts nothing"
    assert took < alone + 1.0, f"b's scale-down took {took:.2f}s, {alone:.2f}s alone"
    wait_for(lambda: cluster.running_pids("b") == {1: b_before[1]}, 30, "b's one worker left")
