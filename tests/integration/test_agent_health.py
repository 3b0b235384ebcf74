"""Health checks on the agent with real workers, sockets and check commands."""

from __future__ import annotations

import dataclasses
import os
import pwd
import stat
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from stack.agent.engine import Engine
from stack.spec.assignment import WatcherAssignment
from stack.spec.model import HealthSpec, SocketSpec
from stack.spec.observed import ProcessStatus
from stack.v1 import types_pb2
from tests.support.engine import PYTHON, assignment, python_cmd, run, settings, statuses, watcher
from tests.support.ports import reserve_port
from tests.support.wait import until

HEALTHY, STARTING, UNHEALTHY = (
    types_pb2.HEALTH_HEALTHY,
    types_pb2.HEALTH_STARTING,
    types_pb2.HEALTH_UNHEALTHY,
)

LISTENER = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
while True:
    conn, _ = server.accept()
    conn.close()
"""

# Takes 0.3 s to stop on SIGTERM, then exits 0.
SLOW_TO_STOP = """
import signal, sys, time
def stop(*args):
    time.sleep(0.3)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(300)
"""

# Serves GET on the inherited socket (fd 3): 503 while the file argv[1] exists, else 200.
HTTP_SERVER = """
import http.server, os, socket, sys
sick = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if os.path.exists(sick) else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.serve_forever()
"""


def fast_check(type: str, target: str, retries: int = 2, timeout: float = 1.0) -> HealthSpec:
    return HealthSpec(type=type, target=target, interval=0.1, timeout=timeout, retries=retries)


def status_of(engine: Engine, name: str, wid: int = 1) -> types_pb2.ProcessStatus:
    """The process's status; an empty one before the engine has created its slot."""
    return statuses(engine.observed(), name).get(wid, ProcessStatus(watcher=name, wid=wid))


async def status_when(
    engine: Engine,
    name: str,
    condition: Callable[[types_pb2.ProcessStatus], object],
    what: str,
    wid: int = 1,
) -> types_pb2.ProcessStatus:
    """Poll until the process's status meets `condition`; returns that status."""

    def found() -> types_pb2.ProcessStatus | None:
        status = status_of(engine, name, wid)
        return status if condition(status) else None

    status = await until(found, what=what)
    assert status is not None
    return status


class Events:
    """Everything the engine reported so far (take_events drains it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[types_pb2.Event] = []

    def of(self, kind: str) -> list[types_pb2.Event]:
        self.seen.extend(self.engine.take_events())
        return [e for e in self.seen if e.kind == kind]


def test_tcp_check_on_a_listening_worker_goes_from_starting_to_healthy(tmp_path: Path) -> None:
    with reserve_port() as port:  # the worker binds it, the check is told it beforehand
        _listening_worker_goes_healthy(tmp_path, port)


def _listening_worker_goes_healthy(tmp_path: Path, port: int) -> None:
    cmd, args = python_cmd(LISTENER)
    # Checks fail until the new interpreter listens, which takes seconds on a loaded
    # machine: it may fail for 30 s (300 checks 0.1 s apart) before it is unhealthy.
    check = fast_check("tcp", str(port), retries=300)
    spec = watcher("tcp", cmd, [1], args=(*args, str(port)), health=check)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(spec))
            first = await until(lambda: status_of(engine, "tcp").pid, what="a worker")
            assert status_of(engine, "tcp").health == STARTING
            await until(lambda: status_of(engine, "tcp").health == HEALTHY, what="healthy")
            status = status_of(engine, "tcp")
            assert status.pid == first and status.restarts == 0

    run(scenario())


def test_tcp_check_on_a_port_nobody_listens_on_restarts_the_worker_as_unhealthy(
    tmp_path: Path,
) -> None:
    with reserve_port() as port:  # held: nobody listens on it while the test runs
        _deaf_worker_restarted(tmp_path, port)


def _deaf_worker_restarted(tmp_path: Path, port: int) -> None:
    cmd, args = python_cmd(SLOW_TO_STOP)
    spec = watcher("deaf", cmd, [1], args=args, health=fast_check("tcp", str(port), retries=3))

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(spec))
            first = await until(lambda: status_of(engine, "deaf").pid, what="a worker")
            failing = await status_when(engine, "deaf", lambda s: s.health_message, "a failure")
            assert failing.health == STARTING
            assert failing.health_message == f"tcp 127.0.0.1:{port}: connection refused"
            await until(lambda: events.of("unhealthy"), what="an unhealthy event")
            stopping = status_of(engine, "deaf")
            assert stopping.state == types_pb2.PROCESS_STATE_STOPPING
            assert stopping.health == UNHEALTHY
            assert stopping.health_message == failing.health_message
            await until(lambda: status_of(engine, "deaf").restarts == 1, what="a restart")
            status = status_of(engine, "deaf")
            assert status.pid != first
            assert status.last_exit.reason == types_pb2.EXIT_REASON_UNHEALTHY
            assert status.last_exit.message == f"tcp 127.0.0.1:{port}: connection refused"

    run(scenario())


def test_http_check_turning_503_makes_the_worker_unhealthy_and_it_is_restarted(
    tmp_path: Path,
) -> None:
    sick = tmp_path / "sick"
    cmd, args = python_cmd(HTTP_SERVER)
    spec = watcher(
        "web",
        cmd,
        [1],
        args=(*args, str(sick)),
        sockets=["web"],
        health=fast_check("http", "/health", retries=2),
    )

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(spec, sockets=(SocketSpec(name="web", port=0),)))
            healthy = await status_when(engine, "web", lambda s: s.health == HEALTHY, "healthy")
            sick.touch()
            unhealthy = await until(lambda: events.of("unhealthy"), what="an unhealthy event")
            sick.unlink()
            assert unhealthy[0].wid == 1
            assert unhealthy[0].message == f"pid {healthy.pid}: http /health: status 503"
            assert unhealthy[0].severity == types_pb2.SEVERITY_WARNING
            back = await status_when(
                engine, "web", lambda s: s.health == HEALTHY and s.restarts, "a healthy replacement"
            )
            assert back.pid != healthy.pid
            assert not psutil.pid_exists(healthy.pid)
            assert back.restarts == 1
            assert back.state == types_pb2.PROCESS_STATE_RUNNING
            assert back.last_exit.reason == types_pb2.EXIT_REASON_UNHEALTHY
            assert back.last_exit.message == "http /health: status 503"
            assert back.health_message == ""  # the new process has not failed yet

    run(scenario())


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def write_check(tmp_path: Path) -> Path:
    """./check records the environment it got and passes while the file `ok` exists."""
    script = tmp_path / "check"
    script.write_text('#!/bin/sh\necho "$STACK_WID $STACK_PID" > seen\ntest -e ok\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_exec_check_passes_on_exit_0_sees_the_worker_env_and_fails_on_exit_1(
    tmp_path: Path,
) -> None:
    write_check(tmp_path)
    (tmp_path / "ok").touch()
    spec = watcher(
        "job", "sleep 300", [4], working_dir=str(tmp_path), health=fast_check("exec", "./check")
    )

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(spec))
            healthy = await status_when(engine, "job", lambda s: s.health == HEALTHY, "healthy", 4)
            assert (tmp_path / "seen").read_text().split() == ["4", str(healthy.pid)]
            (tmp_path / "ok").unlink()
            await until(lambda: events.of("unhealthy"), what="an unhealthy event")
            restarted = await status_when(
                engine, "job", lambda s: s.restarts == 1 and s.pid, "a restart", 4
            )
            assert restarted.pid != healthy.pid
            assert restarted.last_exit.reason == types_pb2.EXIT_REASON_UNHEALTHY
            assert restarted.last_exit.message == "exec ./check: exit 1"

    run(scenario())


def test_exec_check_that_hangs_is_killed_at_its_timeout_and_counts_as_a_failure(
    tmp_path: Path,
) -> None:
    # The hanging part is a grandchild in the check's process group: the group is killed.
    marker = f"health-hang-{time.monotonic_ns()}"
    check = f"sh -c '{PYTHON} -c \"import time; time.sleep(30)\" {marker}; true'"
    spec = watcher(
        "slow", "sleep 300", [1], health=fast_check("exec", check, retries=100, timeout=0.2)
    )

    def hanging_checks() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = proc.info["cmdline"] or []
            if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        return found

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(spec))
            first = await until(hanging_checks, what="a running check")
            failed = await status_when(engine, "slow", lambda s: s.health_message, "a failure")
            assert failed.health_message == f"exec {check}: timed out after 0.2s"
            assert failed.health == STARTING
            assert failed.restarts == 0
            await until(lambda: all(gone(p) for p in first), what="the first check killed")
            await until(hanging_checks, what="the next check")
        # Leaving the engine cancels the check in flight: its command is killed too.
        await until(lambda: not hanging_checks(), what="no check left running")

    run(scenario())


def test_health_is_unspecified_without_a_check_and_a_stopped_worker_is_not_checked(
    tmp_path: Path,
) -> None:
    plain = watcher("plain", "sleep 300", [1])
    checked = watcher("checked", "sleep 300", [1], health=fast_check("exec", "true"))

    def stopped(wa: WatcherAssignment) -> WatcherAssignment:
        return dataclasses.replace(wa, active=False)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(plain, checked))
            await until(lambda: status_of(engine, "checked").health == HEALTHY, what="healthy")
            assert status_of(engine, "plain").health == types_pb2.HEALTH_UNSPECIFIED
            engine.apply(assignment(plain, stopped(checked), generation=2))
            await until(
                lambda: status_of(engine, "checked").state == types_pb2.PROCESS_STATE_STOPPED,
                what="stopped",
            )
            assert status_of(engine, "checked").health == types_pb2.HEALTH_UNSPECIFIED
            assert not engine.watchers["checked"].tasks()  # no check, no stop left

    run(scenario())


def test_adding_a_check_to_a_running_watcher_checks_it_without_restarting_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", "sleep 300", [1])))
            first = await status_when(engine, "w", lambda s: s.pid, "a worker")
            assert first.health == types_pb2.HEALTH_UNSPECIFIED
            checked = watcher("w", "sleep 300", [1], health=fast_check("exec", "false", retries=50))
            engine.apply(assignment(checked, generation=2))
            failing = await status_when(engine, "w", lambda s: s.health_message, "a check")
            assert failing.pid == first.pid and failing.health == STARTING
            assert failing.health_message == "exec false: exit 1"
            fixed = watcher("w", "sleep 300", [1], health=fast_check("exec", "true"))
            engine.apply(assignment(fixed, generation=3))
            healthy = await status_when(engine, "w", lambda s: s.health == HEALTHY, "healthy")
            assert healthy.pid == first.pid and healthy.restarts == 0
            assert healthy.health_message == ""  # the new check started over

    run(scenario())


@pytest.mark.skipif(os.geteuid() != 0, reason="running a worker as another user needs root")
def test_an_exec_check_runs_as_the_user_of_the_worker_it_checks(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    check = f"sh -c 'test \"$(id -u)\" = {nobody.pw_uid}'"
    spec = watcher("job", "sleep 300", [1], uid="nobody", health=fast_check("exec", check))

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(spec))
            healthy = await status_when(engine, "job", lambda s: s.health == HEALTHY, "healthy", 1)
            assert psutil.Process(healthy.pid).uids().real == nobody.pw_uid

    run(scenario())
