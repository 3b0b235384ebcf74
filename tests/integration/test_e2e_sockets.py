"""Shared sockets: bound once by the agent, inherited by workers, kept across restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.cluster import Cluster
from tests.support.wait import wait_for
from tests.support.workers import asking, fetch, socket_stack


def test_four_workers_accept_on_one_port(cluster: Cluster) -> None:
    cluster.apply(socket_stack(cluster.tag, "--serve-fd", "$(circus.sockets.web)",
                               numprocesses=4))  # fmt: skip
    pids = set(cluster.wait_running("w", 4).values())
    port = cluster.socket_port()
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while seen != pids and time.monotonic() < deadline:
        seen.add(fetch(port))
    assert seen == pids


def test_connections_are_served_while_workers_restart(cluster: Cluster) -> None:
    cluster.apply(socket_stack(cluster.tag, "--serve-fd", "$(stack.sockets.web)",
                               numprocesses=4, graceful_timeout=5))  # fmt: skip
    before = set(cluster.wait_running("w", 4).values())
    port = cluster.socket_port()
    with asking(port, limit=20_000) as (answers, failures):
        assert cluster.stackctl("restart", "w", "--wait", "--timeout", "30").code == 0
        after = set(cluster.running_pids("w").values())
        wait_for(lambda: after & set(answers[-50:]), 10, "new workers to answer")
    assert failures == []
    assert before & set(answers) and after & set(answers)


def test_socket_activated_program_gets_listen_fds_and_its_own_listen_pid(
    cluster: Cluster, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    cluster.apply(socket_stack(cluster.tag, "--serve-listen", "--report", str(report),
                               numprocesses=2))  # fmt: skip
    pids = cluster.wait_running("w", 2)
    port = cluster.socket_port()
    for wid, pid in pids.items():
        info = json.loads(wait_for(lambda p=pid: _read(tmp_path / f"report.{p}"), 5, "report"))
        assert info == {
            "pid": pid, "listen_fds": "1", "listen_pid": str(pid), "listen_fdnames": "web",
            "wid": str(wid), "watcher": "w",
        }  # fmt: skip
    assert fetch(port) in pids.values()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
