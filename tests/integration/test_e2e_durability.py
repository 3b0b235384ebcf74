"""Static stability and durability: losing a daemon never loses state or restarts workers."""

from __future__ import annotations

from tests.support.cluster import Cluster
from tests.support.processes import worker_processes
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def test_controller_kill9_and_restart_keeps_desired_state_and_workers(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    cluster.wait_running("w", 2)
    assert cluster.stackctl("scale", "w", "3", "--wait").code == 0  # acknowledged change
    pids = cluster.running_pids("w")

    cluster.controller.kill9()
    # Workers keep running while the controller is gone.
    assert {p.pid for p in worker_processes(cluster.tag)} == set(pids.values())
    cluster.start_controller()
    wait_for(lambda: cluster.agent_state() == "ready", 15, "the agent to reconnect")

    (watcher,) = cluster.status().watchers
    assert watcher.numprocesses == 3
    wait_for(lambda: cluster.running_pids("w") == pids, 10, "the same workers to be reported")
    assert {p.pid for p in worker_processes(cluster.tag)} == set(pids.values())


def test_agent_restart_with_the_controller_down_keeps_the_workers_without_duplicates(
    cluster: Cluster,
) -> None:
    tag = cluster.tag
    cluster.apply(watcher_toml("w", tag, numprocesses=3))
    pids = cluster.wait_running("w", 3)
    cluster.agent.kill9()
    cluster.controller.kill9()

    cluster.start_agent(wait_connected=False)

    # The new agent adopts its previous life's workers: no new one, none stopped.
    wait_for(lambda: "adopted 3 of 3 workers" in cluster.agent.output(), 20, "the adoption")
    assert {p.pid for p in worker_processes(tag)} == set(pids.values())
    cluster.start_controller()
    wait_for(lambda: cluster.running_pids("w") == pids, 15, "the same workers to be reported")
    assert len(worker_processes(tag)) == 3
