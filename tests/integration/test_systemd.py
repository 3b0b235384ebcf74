"""The daemons as systemd services: READY/STATUS/STOPPING on $NOTIFY_SOCKET, and the units.

The daemons run as real subprocesses with NOTIFY_SOCKET pointing at a datagram socket
this test binds, the way systemd does for `Type=notify`. The socket asks the kernel for
the sender's credentials, so the tests also check that the notifications come from the
main process (systemd's default NotifyAccess=main drops anything else). The unit files
are checked with the real `systemd-analyze verify`.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from stack.agent import persist
from stack.v1 import admin_pb2, admin_pb2_grpc
from tests.support.engine import assignment, python_cmd, watcher
from tests.support.harness import channel as channel_to
from tests.support.processes import AGENT, CONTROLLER, ROOT, stack_env
from tests.support.wait import wait_for

UNITS = ROOT / "deploy" / "systemd"
SLOW_TO_STOP = python_cmd(
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.0), sys.exit(0)))\n"
    "time.sleep(300)\n"
)
"""A worker that takes a second to stop, so that stopping it cannot go unnoticed."""
CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Notification:
    pid: int
    """The sending process, as the kernel reports it."""
    lines: tuple[str, ...]


@dataclass
class NotifyListener:
    """A unix datagram socket standing in for systemd's notification socket."""

    env_value: str
    """What goes into NOTIFY_SOCKET (a path, or "@name" for an abstract socket)."""
    sock: socket.socket
    received: list[Notification] = field(default_factory=list)

    def next(self, deadline: float) -> Notification:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(CREDENTIALS.size))
        pid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = CREDENTIALS.unpack(payload[: CREDENTIALS.size])[0]
        note = Notification(pid, tuple(data.decode().splitlines()))
        self.received.append(note)
        return note

    def wait_for(self, line: str, timeout: float = 15.0, contains: bool = False) -> Notification:
        """The first notification with `line` (or a line containing it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                note = self.next(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"no {line!r} within {timeout}s; received {self.received!r}"
                ) from None
            if any((line in got) if contains else (got == line) for got in note.lines):
                return note


def _listener(sock: socket.socket, address: str, env_value: str) -> Iterator[NotifyListener]:
    with sock:
        sock.bind(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        yield NotifyListener(env_value, sock)


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[NotifyListener]:
    """A listener on a filesystem path, as systemd uses."""
    path = str(tmp_path / "notify")
    yield from _listener(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), path, path)


@pytest.fixture
def notify_abstract() -> Iterator[NotifyListener]:
    """A listener on an abstract socket, written "@name" in NOTIFY_SOCKET."""
    name = f"stack-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield from _listener(sock, "\0" + name, "@" + name)


def _spawn(argv: list[str], log: Path, notify: NotifyListener | None) -> subprocess.Popen[bytes]:
    env = stack_env()
    env.pop("NOTIFY_SOCKET", None)
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.env_value
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=handle, env=env, cwd=ROOT, start_new_session=True
        )


def _address(tmp_path: Path) -> str:
    """The local socket of the controller of `tmp_path` (whether it runs or not)."""
    return f"unix:{tmp_path / 'controller' / 'controller.sock'}"


def _controller(tmp_path: Path, notify: NotifyListener | None) -> subprocess.Popen[bytes]:
    argv = [*CONTROLLER,
            "--data-dir", str(tmp_path / "controller")]  # fmt: skip
    return _spawn(argv, tmp_path / "controller.log", notify)


def _agent(tmp_path: Path, notify: NotifyListener | None) -> subprocess.Popen[bytes]:
    argv = [*AGENT, "--controller", _address(tmp_path),
            "--host-id", "h1", "--data-dir", str(tmp_path / "agent")]  # fmt: skip
    return _spawn(argv, tmp_path / "agent.log", notify)


@contextlib.contextmanager
def _stopped_at_exit(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, log.read_text()


def _workers(name: str) -> dict[int, psutil.Process]:
    """Live processes whose STACK_WATCHER is `name`."""
    found = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if (
                proc.status() != psutil.STATUS_ZOMBIE
                and proc.environ().get("STACK_WATCHER") == name
            ):
                found[proc.pid] = proc
    return found


def _count_of(name: str, count: int) -> dict[int, psutil.Process]:
    """The workers of `name` when there are exactly `count`, else nothing."""
    found = _workers(name)
    return found if len(found) == count else {}


def _kill_workers(name: str) -> None:
    for pid in _workers(name):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # Workers of a killed agent re-parent to this (subreaper) test process: reap them.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


# ---- readiness -------------------------------------------------------------


def test_controller_is_ready_only_once_it_answers_grpc_and_says_stopping_on_sigterm(
    tmp_path: Path, notify_path: NotifyListener
) -> None:
    controller = _controller(tmp_path, notify_path)
    address = _address(tmp_path)
    with _stopped_at_exit(controller):
        ready = notify_path.wait_for("READY=1")
        assert ready.pid == controller.pid, "sent by the main process (NotifyAccess=main)"
        assert f"STATUS=serving on {address} (mode 600, peers checked)" in ready.lines
        with channel_to(address) as channel:
            # No retry: READY means the server listens already.
            admin_pb2_grpc.AdminServiceStub(channel).Status(admin_pb2.StatusRequest(), timeout=5)
        controller.send_signal(signal.SIGTERM)
        assert notify_path.wait_for("STOPPING=1").pid == controller.pid
        assert controller.wait(20) == 0


def test_agent_is_ready_without_a_reachable_controller_and_reports_when_it_connects(
    tmp_path: Path, notify_abstract: NotifyListener
) -> None:
    agent = _agent(tmp_path, notify_abstract)  # nothing listens there yet
    with _stopped_at_exit(agent):
        ready = notify_abstract.wait_for("READY=1")
        assert ready.pid == agent.pid
        assert any("not connected" in line for line in ready.lines), ready
        controller = _controller(tmp_path, None)
        with _stopped_at_exit(controller):
            connected = notify_abstract.wait_for(
                f"connected to controller {_address(tmp_path)}", timeout=20, contains=True
            )
            assert connected.pid == agent.pid
            agent.send_signal(signal.SIGTERM)
            assert notify_abstract.wait_for("STOPPING=1").pid == agent.pid
            assert agent.wait(20) == 0
            _stop(controller, tmp_path / "controller.log")


def test_agent_is_ready_once_it_adopted_its_predecessors_workers(
    tmp_path: Path, notify_path: NotifyListener
) -> None:
    """The adoption happens before READY=1, and workers do not inherit NOTIFY_SOCKET."""
    name = f"sd-{uuid.uuid4().hex[:8]}"
    cmd, args = SLOW_TO_STOP
    persist.save_assignment(
        tmp_path / "agent",
        assignment(watcher(name, cmd, [1, 2], args=args, graceful_timeout=10, copy_env=True)),
    )
    try:
        first = _agent(tmp_path, None)
        with _stopped_at_exit(first):
            old = wait_for(lambda: _count_of(name, 2), what="2 first workers")
            wait_for(
                lambda: len(persist.load_state(tmp_path / "agent").workers) == 2,
                what="worker records persisted",
            )
            first.kill()  # a crash: the workers stay behind
            first.wait(10)
        assert set(_workers(name)) == set(old)

        second = _agent(tmp_path, notify_path)
        with _stopped_at_exit(second):
            notify_path.wait_for("READY=1")
            text = (tmp_path / "agent.log").read_text()
            assert "adopted 2 of 2 workers" in text, "adopted before READY=1"
            assert set(_workers(name)) == set(old), "the same workers, none added"
            for proc in old.values():
                assert "NOTIFY_SOCKET" not in proc.environ()
            _stop(second, tmp_path / "agent.log")
    finally:
        _kill_workers(name)


def test_a_reload_says_reloading_then_ready_again_from_the_same_process(
    tmp_path: Path, notify_abstract: NotifyListener
) -> None:
    name = f"sd-{uuid.uuid4().hex[:8]}"
    persist.save_assignment(tmp_path / "agent", assignment(watcher(name, "sleep 300", [1])))
    agent = _agent(tmp_path, notify_abstract)
    try:
        with _stopped_at_exit(agent):
            notify_abstract.wait_for("READY=1")
            (worker,) = wait_for(lambda: _count_of(name, 1), what="the worker")
            agent.send_signal(signal.SIGHUP)
            reloading = notify_abstract.wait_for("RELOADING=1", timeout=30)
            assert reloading.pid == agent.pid
            assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.lines)
            ready = notify_abstract.wait_for("READY=1", timeout=30)
            assert ready.pid == agent.pid, "the new image is the same main process"
            assert set(_workers(name)) == {worker}
            assert "NOTIFY_SOCKET" not in _workers(name)[worker].environ()
            agent.send_signal(signal.SIGTERM)
            assert notify_abstract.wait_for("STOPPING=1").pid == agent.pid
            assert agent.wait(20) == 0
    finally:
        _kill_workers(name)


# ---- the unit files --------------------------------------------------------

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def _verify(text: str, name: str, where: Path) -> str:
    """What `systemd-analyze verify` says about a unit (empty when it is clean).

    The shipped ExecStart points at /usr/local/bin, where nothing is installed on a
    test machine; the copy checked points at this interpreter's scripts instead.
    """
    scripts = Path(sys.executable).parent
    where.mkdir(parents=True, exist_ok=True)
    unit = where / name
    unit.write_text(text.replace("ExecStart=/usr/local/bin/", f"ExecStart={scripts}/"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SYSTEMD_LOG_COLOR="0"),
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not output:
        output = f"exit status {result.returncode}"
    return output


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("unit", "script"),
    [("stack-agent.service", "stack-agent"), ("stack-controller.service", "stack-controller")],
)
def test_unit_file_passes_systemd_analyze_verify(unit: str, script: str, tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / script).exists():
        pytest.skip(f"{script} is not installed next to {sys.executable}")
    text = (UNITS / unit).read_text()
    assert f"ExecStart=/usr/local/bin/{script} " in text
    assert _verify(text, unit, tmp_path) == ""


@needs_systemd_analyze
def test_verify_reports_a_misspelt_key_and_a_bad_value(tmp_path: Path) -> None:
    """The check above can fail: unknown keys and bad values only warn, with status 0."""
    if not (Path(sys.executable).parent / "stack-agent").exists():
        pytest.skip(f"stack-agent is not installed next to {sys.executable}")
    text = (UNITS / "stack-agent.service").read_text()
    broken = text.replace("\nKillMode=process\n", "\nKillMode=gently\nRestartSecs=2\n")
    assert broken != text
    said = _verify(broken, "stack-agent.service", tmp_path)
    assert "kill mode" in said.lower()
    assert "Unknown key 'RestartSecs'" in said


@pytest.mark.parametrize("unit", ["stack-agent.service", "stack-controller.service"])
def test_units_are_notify_services_that_always_restart(unit: str) -> None:
    service = _unit(unit)["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "always"
    assert 0 < float(service["RestartSec"]) <= 10
    assert service["ExecStart"].startswith("/usr/local/bin/")
    assert service["StateDirectory"] == unit.removesuffix(".service")
    assert f"--data-dir %S/{service['StateDirectory']}" in service["ExecStart"]


def test_agent_unit_leaves_the_workers_to_the_agent_and_reloads_in_place() -> None:
    service = _unit("stack-agent.service")["Service"]
    # systemd signals the agent alone: it stops its workers itself on SIGTERM, and a crashed
    # agent's workers keep running for the next one to adopt.
    assert service["KillMode"] == "process"
    # Longer than Circus's default graceful_timeout (30 s) with room to spare.
    assert float(service["TimeoutStopSec"]) >= 60
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "--flags-file /etc/stack/agent.flags" in service["ExecStart"]
    assert float(service["RestartSec"]) <= 2
