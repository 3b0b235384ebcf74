"""Flapping per worker slot: flapping, retry, fatal and reset, and bursts that are not."""

from __future__ import annotations

import json
import os
import signal

from stack.v1 import types_pb2
from tests.support.cluster import Cluster
from tests.support.processes import PYTHON
from tests.support.wait import wait_for
from tests.support.workers import WORKER, watcher_toml

FLAPS = {"attempts": 2, "window": 5, "retry_in": 1, "max_retry": 1}


def watcher_phase(cluster: Cluster, name: str) -> int:
    (watcher,) = [w for w in cluster.status().watchers if w.name == name]
    return watcher.phase


def test_a_crashing_worker_flaps_and_status_counts_down_to_its_retry(cluster: Cluster) -> None:
    # A retry far away: the flapping state lasts while stackctl, however slow to start on
    # a loaded machine, comes up and reads it.
    flaps = dict(FLAPS, retry_in=600)
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", flapping=flaps))
    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FLAPPING, 30,
             "the watcher to flap")  # fmt: skip
    text = cluster.stackctl("status", "w", check=True).out
    assert "flapping, retry in 9m" in text or "flapping, retry in 10m" in text, text
    (proc,) = cluster.processes("w")
    assert proc.last_exit.code == 3


def test_a_flapping_worker_retries_then_goes_fatal(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", flapping=FLAPS))
    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FLAPPING, 30,
             "the watcher to flap")  # fmt: skip
    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FATAL, 30,
             "the watcher to give up after max_retry")  # fmt: skip
    assert "fatal: still flapping after 1 retry" in cluster.stackctl("status", "w", check=True).out
    events = cluster.stackctl(
        "-o", "json", "events", "-n", "0", "--watcher", "w", check=True
    ).json()
    kinds = [e["kind"] for e in events["events"]]
    assert kinds.index("flapping") < kinds.index("retry") < kinds.index("fatal")


def test_reset_clears_a_fatal_watcher(cluster: Cluster) -> None:
    flaps = dict(FLAPS, max_retry=0)
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", flapping=flaps))
    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FATAL, 15,
             "the watcher to be fatal")  # fmt: skip
    # Fix the program (a spec change), then reset: it runs again.
    cluster.apply(watcher_toml("w", cluster.tag, flapping=flaps))
    assert cluster.stackctl("reset", "w").code == 0
    cluster.wait_running("w", 1)
    assert watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_ACTIVE


NEVER_TWICE = {"attempts": 2, "window": 1, "retry_in": 30, "max_retry": 0}
"""Flapping that a watcher-wide count would trip at the first burst, and give up at once."""


def _events(cluster: Cluster, watcher: str) -> list[dict[str, object]]:
    reply = cluster.stackctl("-o", "json", "events", "-n", "0", "--watcher", watcher, check=True)
    events: list[dict[str, object]] = reply.json()["events"]
    return events


def _all_replaced(cluster: Cluster, before: dict[int, int]) -> dict[int, int] | None:
    after = cluster.running_pids("w")
    fresh = len(after) == len(before) and not set(after.values()) & set(before.values())
    return after if fresh else None


def test_a_signal_that_kills_every_worker_restarts_each_and_never_flaps(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=4, flapping=NEVER_TWICE))
    before = cluster.wait_running("w", 4)

    assert cluster.stackctl("signal", "w", "HUP", check=True).code == 0  # worker.py dies on HUP

    after = wait_for(lambda: _all_replaced(cluster, before), 15, "all 4 workers restarted")
    assert sorted(after) == [1, 2, 3, 4]
    assert watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_ACTIVE
    assert all(p.restarts == 1 for p in cluster.processes("w"))
    kinds = [e["kind"] for e in _events(cluster, "w")]
    assert kinds.count("exit") == 4
    assert "flapping" not in kinds and "fatal" not in kinds


def test_three_of_four_workers_killed_within_a_second_are_restarted(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=4, flapping=NEVER_TWICE))
    before = cluster.wait_running("w", 4)

    for wid in (1, 2, 3):  # what an OOM killer does
        os.kill(before[wid], signal.SIGKILL)

    def restarted() -> dict[int, int] | None:
        after = cluster.running_pids("w")
        fresh = len(after) == 4 and all(after[wid] != before[wid] for wid in (1, 2, 3))
        return after if fresh else None

    after = wait_for(restarted, 15, "the 3 killed workers restarted")
    assert after[4] == before[4]  # the survivor was never touched
    assert watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_ACTIVE
    kinds = [e["kind"] for e in _events(cluster, "w")]
    assert "flapping" not in kinds and "fatal" not in kinds


def test_a_crash_loop_of_every_worker_still_flaps_and_goes_fatal(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", numprocesses=3, flapping=FLAPS))
    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FLAPPING, 10,
             "the watcher to flap")  # fmt: skip
    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FATAL, 20,
             "the watcher to give up after max_retry")  # fmt: skip
    processes = cluster.processes("w")
    assert [p.state for p in processes] == [types_pb2.PROCESS_STATE_FATAL] * 3
    text = cluster.stackctl("status", "w", check=True).out
    assert "fatal: still flapping after 1 retry" in text  # max_retry = 1
    events = _events(cluster, "w")
    for wid in (1, 2, 3):
        kinds = [e["kind"] for e in events if e["wid"] == wid]
        assert kinds.index("flapping") < kinds.index("retry") < kinds.index("fatal")


def test_one_worker_in_a_crash_loop_gives_up_alone_while_the_others_serve(
    cluster: Cluster,
) -> None:
    cmd = f"test $(circus.wid) != 2 || exit 3; exec {PYTHON} {WORKER} --tag {cluster.tag}"
    cluster.apply(
        f"[watchers.w]\ncmd = {json.dumps(cmd)}\nshell = true\nnumprocesses = 3\n"
        "[watchers.w.flapping]\nattempts = 2\nwindow = 5\nretry_in = 1\nmax_retry = 1\n"
    )

    def worker_2_fatal() -> bool:
        states = {p.wid: p.state for p in cluster.processes("w")}
        return states.get(2) == types_pb2.PROCESS_STATE_FATAL

    wait_for(worker_2_fatal, 20, "worker 2 to give up")
    healthy = {p.wid: p for p in cluster.processes("w") if p.wid != 2}
    assert all(p.state == types_pb2.PROCESS_STATE_RUNNING for p in healthy.values())
    assert all(p.restarts == 0 for p in healthy.values())
    (watcher,) = cluster.status("w").watchers
    assert watcher.phase == types_pb2.WATCHER_PHASE_ACTIVE
    assert watcher.message == "worker 2: fatal: still flapping after 1 retry"
    assert (
        "worker 2: fatal: still flapping after 1 retry"
        in cluster.stackctl("status", "w", check=True).out
    )


def test_a_command_that_never_starts_gives_up_after_max_retry_attempts(cluster: Cluster) -> None:
    cluster.apply(  # max_retry is 5 by default; flapping set so that it never trips first
        '[watchers.ghost]\ncmd = "/nonexistent/program-xyz"\n'
        "[watchers.ghost.flapping]\nattempts = 100\nwindow = 1\n"
    )
    wait_for(lambda: watcher_phase(cluster, "ghost") == types_pb2.WATCHER_PHASE_FATAL, 15,
             "the watcher to give up")  # fmt: skip
    text = cluster.stackctl("status", "ghost", check=True).out
    assert "fatal: could not start after 5 attempts" in text
    kinds = [e["kind"] for e in _events(cluster, "ghost")]
    assert kinds.count("spawn_error") == 5
