"""Local access: without TLS, only the controller's user (and its operator group) acts.

A certificate-less controller serves a unix socket in its data dir and no TCP port;
the kernel's permission checks on that directory and socket are what keep every
other local user out. Each case makes the socket's directory world-readable first,
so that what refuses the other user is the controller's own doing.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import CONTROLLER, PYTHON, ROOT, Daemon, Result
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

pytestmark = needs_root

STACK = '[watchers.intruder]\ncmd = "sleep 3600"\nnumprocesses = 0\n'
REFUSED = "permission denied: the controller's socket {path} is only for the controller's user"


@pytest.fixture
def users() -> Iterator[tuple[User, User, User]]:
    """Three throwaway users: two strangers to each other, and one more."""
    with throwaway_user() as a, throwaway_user() as b, throwaway_user() as c:
        yield a, b, c


@pytest.fixture
def place() -> Iterator[Path]:
    with shared_dir("stk-local-") as made:
        yield made


def stackctl_as(user: User | None, address: str, *args: str, workdir: Path) -> Result:
    """stackctl ARGS against `address`, as `user` (None: as root, the test's own user)."""
    (workdir / "stack.toml").write_text(STACK)
    argv = ["-m", "stack.cli.main", "--controller", address, *args]
    if user is None:
        done = subprocess.run(
            [PYTHON, *argv], capture_output=True, text=True, env=user_env(), cwd=workdir
        )
    else:
        done = run_as(user, user_python(), *argv, env=user_env())
    return Result(done.returncode, done.stdout, done.stderr)


def controller(data_dir: Path, as_user: User | None = None, *options: str) -> Daemon:
    argv = ["-m", "stack.controller.main", "--data-dir", str(data_dir), *options]
    argv = [PYTHON, *argv] if as_user is None else argv_as(as_user, user_python(), *argv)
    runs = len(list(data_dir.parent.glob(f"{data_dir.name}.*.log")))
    log = data_dir.parent / f"{data_dir.name}.{runs + 1}.log"
    daemon = Daemon(argv, log, env=user_env())
    daemon.start()
    sock = data_dir / "controller.sock"
    wait_for(lambda: "serving on unix:" in daemon.output() or not daemon.alive(), 20, "serving")
    assert daemon.alive(), daemon.output()
    assert sock.exists()
    return daemon


def refused(result: Result, path: Path) -> bool:
    return result.code == 1 and result.err.startswith("stackctl: " + REFUSED.format(path=path))


def only(allowed: User | None, stranger: User, sock: Path, workdir: Path) -> None:
    """`stranger` may not apply, scale or read through `sock`; `allowed` may."""
    address = f"unix:{sock}"
    for result in acts(stranger, address, workdir):
        assert refused(result, sock), result
    assert [r.code for r in acts(allowed, address, workdir)] == [0, 0, 0]


def acts(user: User | None, address: str, workdir: Path) -> list[Result]:
    """apply, scale and status, as `user`."""
    return [
        stackctl_as(user, address, "apply", str(workdir / "stack.toml"), workdir=workdir),
        stackctl_as(user, address, "scale", "intruder", "1", workdir=workdir),
        stackctl_as(user, address, "status", workdir=workdir),
    ]


def test_another_user_cannot_apply_scale_or_read_a_roots_controller_and_root_can(
    place: Path, users: tuple[User, User, User]
) -> None:
    stranger, _, _ = users
    data = place / "controller"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as open as it gets: the controller must close it itself
    daemon = controller(data)
    try:
        sock = data / "controller.sock"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert "127.0.0.1:7450" not in daemon.output() and "serving on" in daemon.output()
        only(None, stranger, sock, place)
        shown = stackctl_as(None, f"unix:{sock}", "-o", "json", "status", workdir=place).json()
        assert [w["name"] for w in shown["watchers"]] == ["intruder"], "applied by root alone"
    finally:
        daemon.stop()
    assert not (data / "controller.sock").exists(), "its socket goes with the controller"


def test_a_controller_run_by_a_user_answers_that_user_only(
    place: Path, users: tuple[User, User, User]
) -> None:
    owner, stranger, _ = users
    data = place / "controller"
    data.mkdir()
    os.chown(data, owner.uid, owner.gid)
    daemon = controller(data, owner)
    try:
        sock = data / "controller.sock"
        assert sock.stat().st_uid == owner.uid
        only(owner, stranger, sock, place)
    finally:
        daemon.stop()


def test_the_socket_group_may_act_and_other_users_still_may_not(
    place: Path, users: tuple[User, User, User]
) -> None:
    stranger, operator, _ = users
    data = place / "controller"
    daemon = controller(data, None, "--socket-group", str(operator.gid))
    try:
        sock = data / "controller.sock"
        assert (stat.S_IMODE(data.stat().st_mode), data.stat().st_gid) == (0o750, operator.gid)
        assert (stat.S_IMODE(sock.stat().st_mode), sock.stat().st_gid) == (0o660, operator.gid)
        only(operator, stranger, sock, place)
    finally:
        daemon.stop()


def test_a_socket_left_by_a_killed_controller_is_replaced_and_a_live_one_is_not_taken(
    place: Path,
) -> None:
    data = place / "controller"
    first = controller(data)
    first.kill9()
    sock = data / "controller.sock"
    assert sock.exists(), "kill -9 leaves the socket behind"
    second = controller(data)
    try:
        clash = subprocess.run(
            [*CONTROLLER, "--data-dir", str(data)],
            capture_output=True, text=True, env=user_env(), cwd=ROOT, timeout=30,
        )  # fmt: skip
        assert (clash.returncode, clash.stderr) == (
            1,
            f"stack-controller: a controller already serves unix:{sock}\n",
        )
        assert second.alive()
        assert stackctl_as(None, f"unix:{sock}", "status", workdir=place).code == 0
    finally:
        second.stop()


def test_a_socket_dir_another_user_controls_is_refused(
    place: Path, users: tuple[User, User, User]
) -> None:
    stranger, _, _ = users
    theirs = place / "theirs"
    theirs.mkdir()
    os.chown(theirs, stranger.uid, stranger.gid)
    mine = theirs / "mine"
    mine.mkdir()
    proc = subprocess.run(
        [*CONTROLLER, "--data-dir", str(place / "data"),
         "--socket", str(mine / "controller.sock")],
        capture_output=True, text=True, env=user_env(), cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (
        1,
        f"stack-controller: {theirs} belongs to uid {stranger.uid}: it could move the "
        "controller's socket\n",
    )
    assert not (place / "data").exists(), "refused before its store was opened"
