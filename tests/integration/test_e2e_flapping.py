"""Flapping detection as Circus does it: flapping, retry, fatal, and reset."""

from __future__ import annotations

from stack.v1 import types_pb2
from tests.integration.cluster import Cluster, wait_for, watcher_toml

FLAPS = {"attempts": 2, "window": 5, "retry_in": 1, "max_retry": 1}


def watcher_phase(cluster: Cluster, name: str) -> int:
    (watcher,) = [w for w in cluster.status().watchers if w.name == name]
    return watcher.phase


def test_crashing_worker_goes_flapping_then_retries_then_fatal(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", flapping=FLAPS))

    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FLAPPING, 10,
             "the watcher to flap")  # fmt: skip
    text = cluster.stackctl("status", "w", check=True).out
    assert "flapping, retry" in text  # "retry in 1s", or "retrying now" on a slow machine
    (proc,) = cluster.processes("w")
    assert proc.last_exit.code == 3

    wait_for(lambda: watcher_phase(cluster, "w") == types_pb2.WATCHER_PHASE_FATAL, 15,
             "the watcher to give up after max_retry")  # fmt: skip
    assert "fatal" in cluster.stackctl("status", "w", check=True).out
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
