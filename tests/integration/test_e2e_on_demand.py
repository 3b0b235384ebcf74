"""on_demand and stdin_socket with real workers and sockets: a watcher that starts at its
first connection and serves it, one scaled to no worker that keeps its socket bound while
clients queue, one that rests again once its workers are over, and a socket as fd 0."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.spec.observed import ON_DEMAND_REST
from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import PYTHON
from tests.support.wait import wait_for
from tests.support.workers import WORKER, read_pid, watcher_toml

SERVE = ("--serve-fd", "$(circus.sockets.web)")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One stack for these tests: each applies a file of its own watcher alone."""
    with running_cluster(tmp_path_factory.mktemp("demand") / "stack") as running:
        yield running


def _stack(cluster: Cluster, name: str, path: Path, *flags: str, **options: object) -> str:
    """Socket `web` at `path` and watcher `name` alone (each test has its own, so that
    none starts from what the one before left)."""
    head = f'[sockets.web]\npath = "{path}"\n\n'
    return head + watcher_toml(name, cluster.tag, *flags, **options)


@contextlib.contextmanager
def _connected(path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(30)
        conn.connect(str(path))
        yield conn


def _served_by(path: Path, pids: set[int]) -> set[int]:
    """The pids that answer connections to `path`, asked until all of `pids` did (each
    connection goes to whichever worker accepts first) or a thousand times."""
    served: set[int] = set()
    for _ in range(1000):
        with _connected(path) as conn:
            served.add(read_pid(conn))
        if served >= pids:
            break
    return served


def _at_rest(cluster: Cluster, name: str) -> bool:
    (watcher,) = cluster.status(name).watchers
    return watcher.running == 0 and watcher.message.startswith(ON_DEMAND_REST)


def test_on_demand_starts_its_workers_at_the_first_connection_and_serves_it(
    shared: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "web.sock"
    shared.apply(
        _stack(shared, "first", path, *SERVE, sockets=["web"], on_demand=True, numprocesses=2)
    )
    wait_for(lambda: _at_rest(shared, "first") and path.exists(), 20, "the watcher to rest, bound")
    (watcher,) = shared.status("first").watchers
    assert watcher.message == f"{ON_DEMAND_REST} to web"
    assert [(p.wid, p.pid, p.state) for p in watcher.processes] == [(1, 0, 7), (2, 0, 7)]
    status = shared.stackctl("status", "first", check=True).out
    assert "0/2 running, active, on demand: waiting for a connection to web" in status
    assert not shared.events("spawn")
    with _connected(path) as conn:
        pid = read_pid(conn)
    pids = shared.wait_running("first", 2)
    assert pid in pids.values()
    wait_for(
        lambda: (
            [e.message for e in shared.events("on_demand")]
            == ["a connection to web: starting 2 workers"]
        ),
        10,
        "one on_demand event saying what the connection started",
    )
    assert not _at_rest(shared, "first")


def test_with_no_worker_the_socket_stays_bound_and_clients_queue(
    shared: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "web.sock"
    shared.apply(
        _stack(shared, "zero", path, *SERVE, sockets=["web"], on_demand=True, numprocesses=0)
    )
    wait_for(path.exists, 20, "the socket of a watcher with no worker to be bound")
    with _connected(path) as conn:  # queued: nobody accepts yet
        (watcher,) = shared.status("zero").watchers
        assert (watcher.numprocesses, watcher.running, list(watcher.processes)) == (0, 0, [])
        shared.stackctl("scale", "zero", "1", check=True)
        pid = read_pid(conn)  # the worker started for it took the queued connection
    assert shared.wait_running("zero", 1) == {1: pid}


@pytest.mark.parametrize(
    ("name", "options"),
    [("idle", {"respawn": False}), ("expected", {"autorestart": "unexpected"})],
)
def test_workers_that_end_and_stay_down_rest_until_the_next_connection(
    shared: Cluster, tmp_path: Path, name: str, options: dict[str, object]
) -> None:
    path = tmp_path / "web.sock"
    shared.apply(
        _stack(shared, name, path, *SERVE, "--serve-count", "1", sockets=["web"], on_demand=True,
               **options)
    )  # fmt: skip
    wait_for(lambda: _at_rest(shared, name) and path.exists(), 20, "the watcher to rest, bound")
    with _connected(path) as conn:
        first = read_pid(conn)
    wait_for(lambda: _at_rest(shared, name), 20, "the watcher to rest once its worker exited")
    (watcher,) = shared.status(name).watchers
    (process,) = watcher.processes
    assert process.pid == 0 and process.last_exit.code == 0
    with _connected(path) as conn:
        second = read_pid(conn)
    assert second != first
    # The agent ships its events a moment after the fact: wait for the second wake-up.
    wait_for(
        lambda: len([e for e in shared.events("on_demand") if e.watcher == name]) == 2,
        10,
        "an on_demand event for each connection that woke the watcher",
    )


def test_stdin_socket_is_each_workers_fd_0(shared: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "fcgi.sock"
    shared.apply(
        _stack(shared, "fcgi", path, "--serve-fd", "0", stdin_socket="web", numprocesses=2)
    )
    pids = shared.wait_running("fcgi", 2)
    wait_for(path.exists, 20, "the stdin socket to be bound")
    assert _served_by(path, set(pids.values())) == set(pids.values())


def test_the_before_start_hook_of_an_on_demand_watcher_runs_at_its_first_connection(
    shared: Cluster, tmp_path: Path
) -> None:
    path, mark = tmp_path / "web.sock", tmp_path / "started"
    shared.apply(
        _stack(shared, "hooked", path, *SERVE, sockets=["web"], on_demand=True,
               hooks={"before_start": f"touch {mark}"})
    )  # fmt: skip
    wait_for(lambda: _at_rest(shared, "hooked") and path.exists(), 20, "the watcher to rest")
    assert not mark.exists()
    with _connected(path) as conn:
        pid = read_pid(conn)
    assert mark.exists()
    assert pid in shared.wait_running("hooked", 1).values()


def test_a_change_keeps_it_resting_a_connection_starts_the_new_version_a_start_rests(
    shared: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "web.sock"
    text = _stack(shared, "changed", path, *SERVE, sockets=["web"], on_demand=True)
    shared.apply(text)
    wait_for(lambda: _at_rest(shared, "changed") and path.exists(), 20, "the watcher to rest")
    shared.apply(text.replace("--serve-fd", "--tick 5 --serve-fd"))  # replaces its workers
    shared.stackctl("restart", "changed", check=True)
    wait_for(lambda: _at_rest(shared, "changed"), 20, "the watcher to rest after the change")
    (watcher,) = shared.status("changed").watchers
    assert not watcher.rollout
    assert not [e for e in shared.events("spawn") if e.watcher == "changed"]
    with _connected(path) as conn:
        pid = read_pid(conn)
    assert pid in shared.wait_running("changed", 1).values()
    assert "--tick 5" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    shared.stackctl("stop", "changed", check=True)
    shared.stackctl("start", "changed", check=True)
    wait_for(lambda: _at_rest(shared, "changed"), 20, "a start to wait for a connection again")


def test_a_supervisor_fcgi_program_gets_its_socket_as_fd_0(shared: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "php.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[fcgi-program:php]\ncommand={PYTHON} {WORKER} --tag {shared.tag} --serve-fd 0\n"
        f"socket=unix://{path}\nnumprocs=2\nprocess_name=php-%(process_num)d\n"
        "numprocs_start=1\n"
    )
    shared.stackctl("apply", "--yes", str(conf), check=True)
    pids = set(shared.wait_running("php", 2).values())
    assert _served_by(path, pids) == pids
