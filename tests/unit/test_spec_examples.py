"""The shipped examples: webapp.toml is a valid stack and examples.app really serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.spec.dump import dump_stack
from stack.spec.load import load_stack, load_stack_file

ROOT = Path(__file__).resolve().parents[2]


def test_webapp_example_loads_as_the_issue_describes() -> None:
    stack = load_stack_file(ROOT / "examples" / "webapp.toml")
    assert sorted(stack.watchers) == ["ticker", "webapp"]
    web = stack.sockets["web"]
    assert (web.host, web.port, web.family) == ("127.0.0.1", 8080, "AF_INET")
    webapp = stack.watchers["webapp"]
    assert webapp.cmd == "python3 -m examples.app --fd $(circus.sockets.web)"
    assert (webapp.numprocesses, webapp.graceful_timeout) == (4, 10.0)
    assert dict(webapp.env) == {"GREETING": "hello"}
    assert (webapp.flapping.attempts, webapp.flapping.window) == (3, 2.0)
    assert [s.name for s in stack.sockets_of(webapp)] == ["web"]
    assert stack.watchers["ticker"].numprocesses == 1
    assert load_stack(dump_stack(stack)) == stack


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on a free loopback port, non-blocking like the agent's."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    with sock:
        yield sock


def _get(sock: socket.socket, path: str = "/") -> tuple[int, str]:
    port = sock.getsockname()[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    return process.returncode, out


def test_app_serves_on_an_inherited_fd_and_exits_0_on_sigterm(listener: socket.socket) -> None:
    fd = listener.fileno()
    env = dict(os.environ, STACK_WID="2", GREETING="hi")
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.app", "--fd", str(fd)],
        cwd=ROOT, env=env, pass_fds=[fd], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _get(listener) == (200, f"hi from worker 2 (pid {process.pid})\n")
        assert _get(listener, "/nope")[0] == 404
    finally:
        code, out = _stop(process)
    assert code == 0
    assert '"GET / HTTP/1.1" 200' in out and '"GET /nope HTTP/1.1" 404' in out


def test_app_finds_its_socket_through_listen_fds(listener: socket.socket) -> None:
    fd = listener.fileno()
    env = {k: v for k, v in os.environ.items() if k != "GREETING"}
    env["STACK_WID"] = "1"
    env["LISTEN_FDS"] = "1"
    # LISTEN_PID must be the app's own pid, and the socket fd 3: a tiny exec step
    # moves the socket to fd 3, sets LISTEN_PID to its pid and execs the app.
    exec_step = (
        f"import os, sys; os.dup2({fd}, 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
        "os.execv(sys.executable, [sys.executable, '-m', 'examples.app'])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", exec_step], cwd=ROOT, env=env, pass_fds=[fd],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _get(listener) == (200, f"hello from worker 1 (pid {process.pid})\n")
    finally:
        code, _ = _stop(process)
    assert code == 0


def test_ticker_prints_timestamped_lines_and_exits_0_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.ticker", "--interval", "0.05"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
    finally:
        code, rest = _stop(process)
    assert code == 0
    assert " tick 1 from pid " in first and " tick 2 from pid " in second
    assert first[:4].isdigit() and first[10] == "T"
    assert "tick stopped after" in rest
