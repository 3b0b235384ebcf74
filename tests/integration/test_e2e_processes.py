"""Process life cycle through stackctl, a real controller and a real agent."""

from __future__ import annotations

import os
import signal
import time

import psutil

from stack.v1 import types_pb2
from tests.support.cluster import Cluster
from tests.support.processes import ended, worker_processes
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def test_scale_up_and_down_with_wait_changes_the_running_count(cluster: Cluster) -> None:
    tag = cluster.tag
    cluster.apply(watcher_toml("w", tag, numprocesses=2))
    first = cluster.wait_running("w", 2)

    up = cluster.stackctl("scale", "w", "5", "--wait", "--timeout", "20")
    assert up.code == 0, up
    assert "2 -> 5" in up.out
    after_up = cluster.running_pids("w")
    assert sorted(after_up) == [1, 2, 3, 4, 5]
    assert {w: after_up[w] for w in first} == first, "scaling up must not touch running workers"

    down = cluster.stackctl("scale", "w", "-3", "--wait")
    assert down.code == 0, down
    assert cluster.running_pids("w") == {1: first[1], 2: first[2]}
    wait_for(lambda: len(worker_processes(tag)) == 2, 10, "surplus workers to exit")


def test_sigkilled_worker_is_respawned_with_the_same_wid(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    before = cluster.wait_running("w", 2)
    os.kill(before[1], signal.SIGKILL)

    def respawned() -> bool:
        now = cluster.running_pids("w")
        return len(now) == 2 and now[1] != before[1] and now[2] == before[2]

    wait_for(respawned, 10, "wid 1 to run again under a new pid")
    (proc,) = [p for p in cluster.processes("w") if p.wid == 1]
    assert proc.restarts == 1
    assert proc.last_exit.signal == signal.SIGKILL
    assert proc.last_exit.reason == types_pb2.EXIT_REASON_CRASHED


def test_stop_of_a_term_ignoring_worker_ends_in_sigkill_after_graceful_timeout(
    cluster: Cluster,
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--ignore-term", graceful_timeout=1.5))
    (pid,) = cluster.wait_running("w", 1).values()
    proc = psutil.Process(pid)
    started = time.monotonic()
    result = cluster.stackctl("stop", "w", "--wait", "--timeout", "20")
    took = time.monotonic() - started
    assert result.code == 0, result
    assert ended(proc)
    assert took >= 1.5, f"stopped after {took:.2f}s, before graceful_timeout"
    status = cluster.stackctl("-o", "json", "status", "w", check=True).json()
    (watcher,) = status["watchers"]
    assert watcher["active"] is False


def test_stop_leaves_no_orphan_or_zombie_grandchild(cluster: Cluster) -> None:
    tag = cluster.tag
    cluster.apply(watcher_toml("w", tag, "--grandchild", numprocesses=2, graceful_timeout=5))
    pids = cluster.wait_running("w", 2)

    def workers_and_grandchildren() -> list[psutil.Process] | None:
        family = [psutil.Process(pid) for pid in pids.values()]
        family += [child for worker in family[:] for child in worker.children()]
        return family if len(family) == 4 else None

    family = wait_for(workers_and_grandchildren, 10, "each worker to start its grandchild")
    assert cluster.stackctl("stop", "w", "--wait").code == 0

    def all_gone() -> bool:
        return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)

    wait_for(all_gone, 10, "workers and grandchildren to be gone")
    agent = psutil.Process(cluster.agent.pid)
    zombies = [c for c in agent.children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []
    assert worker_processes(tag) == []


def test_start_after_stop_runs_the_workers_again(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    cluster.wait_running("w", 2)
    assert cluster.stackctl("stop", "w", "--wait").code == 0
    assert cluster.running_pids("w") == {}
    assert cluster.stackctl("start", "w", "--wait").code == 0
    assert sorted(cluster.running_pids("w")) == [1, 2]


def test_restart_replaces_every_process(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    before = cluster.wait_running("w", 2)
    assert cluster.stackctl("restart", "w", "--wait").code == 0
    after = cluster.running_pids("w")
    assert sorted(after) == [1, 2]
    assert set(after.values()).isdisjoint(before.values())


def test_a_missing_command_is_a_spawn_error_in_status_and_events(cluster: Cluster) -> None:
    cluster.apply(
        '[watchers.ghost]\ncmd = "/nonexistent/program-xyz"\n'
        "[watchers.ghost.flapping]\nattempts = 2\nwindow = 5\nretry_in = 30\n"
    )

    def spawn_error() -> types_pb2.ProcessStatus | None:
        procs = cluster.processes("ghost")
        ok = procs and procs[0].last_exit.reason == types_pb2.EXIT_REASON_SPAWN_ERROR
        return procs[0] if ok else None

    proc = wait_for(spawn_error, 10, "a spawn error in status")
    assert "/nonexistent/program-xyz" in proc.last_exit.message
    text = cluster.stackctl("status", "ghost", "-o", "wide", check=True).out
    assert "spawn error" in text and "/nonexistent/program-xyz" in text
    events = cluster.stackctl("-o", "json", "events", "-n", "0", "--watcher", "ghost", check=True)
    kinds = {e["kind"] for e in events.json()["events"]}
    assert "spawn_error" in kinds
    assert cluster.agent.alive()


def test_signal_reaches_every_worker(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    cluster.wait_running("w", 2)
    assert cluster.stackctl("signal", "w", "KILL").code == 0

    def all_killed_and_respawned() -> bool:
        procs = cluster.processes("w")
        return len(procs) == 2 and all(
            p.restarts >= 1 and p.state == types_pb2.PROCESS_STATE_RUNNING for p in procs
        )

    wait_for(all_killed_and_respawned, 10, "both workers to be killed and respawned")


def test_get_masks_secret_environment_values_in_text_and_json(cluster: Cluster) -> None:
    env = {"DB_PASSWORD": "hunter2", "API_TOKEN": "t0k", "GREETING": "hello"}
    cluster.apply(watcher_toml("w", cluster.tag, env=env))
    text = cluster.stackctl("get", "w", check=True).out
    spec = cluster.stackctl("-o", "json", "get", "w", check=True).json()["spec"]
    assert "hunter2" not in text and "t0k" not in text and 'GREETING = "hello"' in text
    assert spec["env"] == {"DB_PASSWORD": "********", "API_TOKEN": "********", "GREETING": "hello"}
