"""Rolling changes on one host: batches of [update] max_parallel, and a halted rollout."""

from __future__ import annotations

from typing import Any

import psutil

from stack.v1 import types_pb2
from tests.support.cluster import Cluster
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def events_of(cluster: Cluster, watcher: str) -> list[dict[str, Any]]:
    result = cluster.stackctl("-o", "json", "events", "-n", "0", "--watcher", watcher, check=True)
    events: list[dict[str, Any]] = result.json()["events"]
    return events


def rollout_of(cluster: Cluster, watcher: str) -> str:
    return next(w.rollout for w in cluster.status().watchers if w.name == watcher)


def cmdline(pid: int) -> str:
    """The command line of `pid` ("" once it is gone: status may lag a replacement)."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return ""


def test_a_spec_change_replaces_processes_in_batches_each_up_before_the_next(
    cluster: Cluster,
) -> None:
    update = {"max_parallel": 2, "min_uptime": 0.8}
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=4, update=update))
    before = cluster.wait_running("w", 4)

    cluster.apply(watcher_toml("w", cluster.tag, "--lines", "1", numprocesses=4, update=update))

    def replaced() -> bool:
        now = cluster.running_pids("w")
        return len(now) == 4 and set(now.values()).isdisjoint(before.values())

    wait_for(replaced, 20, "every process of w to be replaced")
    wait_for(lambda: rollout_of(cluster, "w") == "", 10, "the rollout to end")
    for pid in cluster.running_pids("w").values():
        assert "--lines 1" in cmdline(pid)

    events = events_of(cluster, "w")
    start = max(i for i, e in enumerate(events) if e["kind"] == "rollout_started")
    after = events[start:]
    kinds = [e["kind"] for e in after]
    assert "rollout_done" in kinds
    batches = [e["message"] for e in after if e["kind"] == "rollout"]
    assert batches == [
        "w: rolling out: 0 of 4 replaced, replacing 1, 2",
        "w: rolling out: 2 of 4 replaced, replacing 3, 4",
    ]

    def first(kind: str, wid: int) -> float:
        return min(float(e["at"]) for e in after if e["kind"] == kind and e["wid"] == wid)

    # The second batch began only once the first had been up min_uptime.
    first_batch_up = max(first("spawn", 1), first("spawn", 2))
    for wid in (3, 4):
        assert first("stopped", wid) >= first_batch_up + update["min_uptime"]
        assert before[wid] != cluster.running_pids("w")[wid]


def test_a_new_version_that_crashes_halts_the_rollout_and_the_old_ones_keep_serving(
    cluster: Cluster,
) -> None:
    update = {"max_parallel": 1, "min_uptime": 1.0}
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=3, update=update))
    before = cluster.wait_running("w", 3)

    # It crashes at once, but its interpreter may take over a second to get there on a
    # loaded machine: with a shorter min_uptime worker 1 would count as up before it crashed.
    patient = dict(update, min_uptime=10.0)
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", numprocesses=3, update=patient))

    wait_for(lambda: rollout_of(cluster, "w").startswith("rollout halted"), 20, "a halt")
    halted = rollout_of(cluster, "w")
    assert "worker 1 on h1 failed" in halted and "exit code 3" in halted, halted
    # Worker 1 runs the old version again; 2 and 3 never stopped.
    running = cluster.wait_running("w", 3)
    assert running[2] == before[2] and running[3] == before[3]
    assert "--exit" not in cmdline(running[1])
    (watcher,) = [w for w in cluster.status().watchers if w.name == "w"]
    assert watcher.phase == types_pb2.WATCHER_PHASE_ACTIVE

    kinds = [e["kind"] for e in events_of(cluster, "w")]
    assert "rollout_halted" in kinds and "rollout_done" not in kinds
    text = cluster.stackctl("status", check=True).out
    assert "rollout halted" in text

    # A fixed file rolls on from there, and finishes.
    cluster.apply(watcher_toml("w", cluster.tag, "--lines", "2", numprocesses=3, update=update))

    def fixed() -> bool:
        now = cluster.running_pids("w")
        return len(now) == 3 and all("--lines 2" in cmdline(pid) for pid in now.values())

    wait_for(fixed, 20, "the fixed version everywhere")
    wait_for(lambda: rollout_of(cluster, "w") == "", 10, "the rollout to end")


def test_a_new_version_that_fails_its_health_check_halts_the_rollout(cluster: Cluster) -> None:
    check = {
        "type": "exec",
        "target": """sh -c 'test "$MODE" = good'""",
        "interval": 0.2,
        "retries": 2,
    }
    update = {"max_parallel": 1, "min_uptime": 0.5}

    def stack(mode: str) -> str:
        return watcher_toml(
            "w", cluster.tag, numprocesses=2, health=check, update=update, env={"MODE": mode}
        )

    cluster.apply(stack("good"))
    before = cluster.wait_running("w", 2)
    healthy = types_pb2.HEALTH_HEALTHY
    wait_for(lambda: all(p.health == healthy for p in cluster.processes("w")), 10, "health")

    cluster.apply(stack("bad"))
    wait_for(lambda: rollout_of(cluster, "w").startswith("rollout halted"), 20, "a halt")
    assert "worker 1 on h1 is unhealthy" in rollout_of(cluster, "w")
    running = cluster.wait_running("w", 2)
    assert running[2] == before[2]
    assert psutil.Process(running[1]).environ()["MODE"] == "good"


def test_restart_rolling_waits_for_the_whole_rollout(cluster: Cluster) -> None:
    update = {"max_parallel": 1, "min_uptime": 0.3}
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=3, update=update))
    before = cluster.wait_running("w", 3)

    result = cluster.stackctl("restart", "w", "--rolling", "--wait", "--timeout", "30")

    assert result.code == 0, result
    now = cluster.running_pids("w")
    assert len(now) == 3 and set(now.values()).isdisjoint(before.values())
    assert rollout_of(cluster, "w") == ""
    batches = [e["message"] for e in events_of(cluster, "w") if e["kind"] == "rollout"]
    assert batches[-3:] == [
        "w: rolling out: 0 of 3 replaced, replacing 1",
        "w: rolling out: 1 of 3 replaced, replacing 2",
        "w: rolling out: 2 of 3 replaced, replacing 3",
    ]


def test_restart_rolling_wait_fails_at_once_when_the_rollout_halts(cluster: Cluster) -> None:
    update = {"max_parallel": 1, "min_uptime": 5.0}
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2, update=update))
    cluster.wait_running("w", 2)
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "1", numprocesses=2, update=update))
    wait_for(lambda: rollout_of(cluster, "w").startswith("rollout halted"), 20, "a halt")

    result = cluster.stackctl("restart", "w", "--rolling", "--wait", "--timeout", "30")

    assert result.code == 1
    assert "rollout halted" in result.err
