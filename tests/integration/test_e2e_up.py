"""The demo: `stackctl up` runs a controller, an agent and the example stack in the foreground.

It runs as an ordinary user (created by the test, with a home of its own), exactly
as the README says, without --controller: `stackctl` without options then finds the
controller's local socket in that user's home, and no other user can use it. The test
counts only that user's processes: a demo running beside it is none of its business.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import reserve_port
from tests.support.processes import ROOT, worker_processes
from tests.support.users import (
    User,
    argv_as,
    needs_root,
    run_as,
    shared_dir,
    throwaway_user,
    user_env,
    user_python,
)
from tests.support.wait import wait_for


@pytest.fixture
def home() -> Iterator[Path]:
    with shared_dir("stk-up-") as made:
        yield made


@needs_root
def test_up_serves_the_example_and_ctrl_c_stops_everything(home: Path) -> None:
    with throwaway_user() as user, throwaway_user() as stranger:
        _up_as(user, stranger, home)


def _up_as(user: User, stranger: User, home: Path) -> None:
    # The demo prints the URL its stack file names, so the port is chosen beforehand.
    with reserve_port() as port:
        _up_on(user, stranger, home, port)


def _up_on(user: User, stranger: User, home: Path, port: int) -> None:
    os.chown(home, user.uid, user.gid)
    text = (ROOT / "examples" / "webapp.toml").read_text().replace("8080", str(port))
    stack_file = home / "webapp.toml"
    stack_file.write_text(text)
    env = user_env(HOME=str(home))
    python = user_python()
    up = subprocess.Popen(
        argv_as(user, python, "-m", "stack.cli.main", "up", str(stack_file),
                "--data-dir", str(home / "state")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert up.stdout is not None
    seen: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"

        def printed_url() -> bool:
            line = up.stdout.readline()  # type: ignore[union-attr]
            seen.append(line)
            return url in line or not line

        wait_for(printed_url, 60, "the demo to print its URL")
        assert any(url in line for line in seen), "".join(seen)
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = reply.read().decode()
        assert re.search(r"hello from worker \d+ \(pid \d+\)", body), body
        assert len(worker_processes("examples.app", uid=user.uid)) == 4
        socket = home / ".local" / "state" / "stack" / "controller" / "controller.sock"
        assert f"controller at unix:{socket}" in "".join(seen) + _rest_of_banner(up)
        status = run_as(user, python, "-m", "stack.cli.main", "status", env=env)
        assert status.returncode == 0 and "webapp" in status.stdout, status
        intruder = run_as(
            stranger, python, "-m", "stack.cli.main", "scale", "webapp", "0",
            env=dict(env, STACK_CONTROLLER=f"unix:{socket}"),
        )  # fmt: skip
        assert intruder.returncode == 1 and "permission denied" in intruder.stderr, intruder
        assert len(worker_processes("examples.app", uid=user.uid)) == 4
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
    assert code == 0, "".join(seen) + up.stdout.read()
    assert worker_processes("examples.app", uid=user.uid) == []
    assert worker_processes("examples.ticker", uid=user.uid) == []


def _rest_of_banner(up: subprocess.Popen[str]) -> str:
    """The lines `up` prints after the URL, up to its `controller at ...` line."""
    lines = []
    while up.stdout is not None and (line := up.stdout.readline()):
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            break
    return "".join(lines)
