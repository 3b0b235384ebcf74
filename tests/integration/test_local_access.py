"""Local access: without TLS, only the controller's user (and its operator group) acts.

A certificate-less controller serves a unix socket in its data dir and no TCP port;
the kernel's permission checks on that directory and socket keep every other local
user out, and the controller checks each connection's peer credentials besides, so a
socket loosened by mistake still keeps them out. Each case makes the socket's
directory world-readable first, so that what refuses the other user is the
controller's own doing.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
BY_PEER = " and its operator group (the controller refused uid {uid})\n"
"""How the refusal line ends when the controller (not the kernel) refused the caller."""


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


def refused_by_peer_check(result: Result, path: Path, user: User) -> bool:
    """The one line stackctl prints when the controller refused `user`'s connection."""
    line = "stackctl: " + REFUSED.format(path=path) + BY_PEER.format(uid=user.uid)
    return (result.code, result.err) == (1, line)


def refusal_lines(daemon: Daemon) -> list[str]:
    return [line for line in daemon.output().splitlines() if "local socket: refused" in line]


@contextmanager
def loosened_controller(place: Path) -> Iterator[tuple[Daemon, Path]]:
    """A root's controller and its socket after an operator's mistake: the data dir
    0755 and the socket 0666."""
    data = place / "controller"
    daemon = controller(data)
    try:
        sock = data / "controller.sock"
        data.chmod(0o755)
        sock.chmod(0o666)
        yield daemon, sock
    finally:
        daemon.stop()


def test_a_loosened_socket_still_refuses_another_user_and_says_so(
    place: Path, users: tuple[User, User, User]
) -> None:
    stranger, _, _ = users
    with loosened_controller(place) as (daemon, sock):
        address = f"unix:{sock}"
        for result in acts(stranger, address, place):
            assert refused_by_peer_check(result, sock, stranger), result
        logged = wait_for(lambda: refusal_lines(daemon), 10, "the controller's refusal line")
        assert f"uid {stranger.uid} is not the controller's user" in logged[0], logged
        assert "refused pid " in logged[0], logged
        assert [r.code for r in acts(None, address, place)] == [0, 0, 0], "root may act"
        shown = stackctl_as(None, address, "-o", "json", "status", workdir=place).json()
        assert [w["name"] for w in shown["watchers"]] == ["intruder"], "applied by root alone"
        private = sock.parent / ".controller.sock.grpc"
        assert not private.stat().st_mode & 0o077, "gRPC's own socket is the controller's alone"


FLOOD = """
import socket, sys
told = 0
for _ in range(int(sys.argv[2])):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sys.argv[1])
        got = b""
        while not got.endswith(b"\\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            got += chunk
        told += got.startswith(b"stack-controller: denied: uid ")
print(told)
"""


def test_a_user_connecting_in_a_loop_cannot_flood_the_controllers_log(
    place: Path, users: tuple[User, User, User]
) -> None:
    stranger, _, _ = users
    with loosened_controller(place) as (daemon, sock):
        started = time.monotonic()
        flood = run_as(stranger, user_python(), "-c", FLOOD, str(sock), "500", timeout=120)
        elapsed = time.monotonic() - started
        assert (flood.returncode, flood.stdout) == (0, "500\n"), flood
        logged = refusal_lines(daemon)
        assert 1 <= len(logged) <= 5 + elapsed + 1, logged  # a burst of 5, then 1 a second

        def told_how_many_were_quiet() -> bool:
            run_as(stranger, user_python(), "-c", FLOOD, str(sock), "1")
            return any("more refused since the last such line" in line
                       for line in refusal_lines(daemon))  # fmt: skip

        wait_for(told_how_many_were_quiet, 20, "a line telling the refusals not logged")
        assert stackctl_as(None, f"unix:{sock}", "status", workdir=place).code == 0


def as_member(user: User, *groups: int) -> list[str]:
    """Run as `user` with `groups` as its process's supplementary groups."""
    listed = ",".join(str(g) for g in groups)
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", f"--groups={listed}", "--"]


def stackctl_as_member(user: User, group: int, address: str, *args: str) -> Result:
    argv = [*as_member(user, group), user_python(), "-m", "stack.cli.main",
            "--controller", address, *args]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=user_env(), timeout=30)
    return Result(done.returncode, done.stdout, done.stderr)


def test_a_member_of_the_socket_group_by_a_supplementary_group_may_act_until_removed(
    place: Path, users: tuple[User, User, User]
) -> None:
    member, owner_of_group, stranger = users
    group = owner_of_group.gid  # the operator group: another user's own group
    subprocess.run(["gpasswd", "-a", member.name, owner_of_group.name],
                   check=True, capture_output=True)  # fmt: skip
    data = place / "controller"
    daemon = controller(data, None, "--socket-group", str(group))
    try:
        sock = data / "controller.sock"
        address = f"unix:{sock}"
        assert stackctl_as_member(member, group, address, "status").code == 0
        assert stackctl_as_member(member, group, address, "scale", "x", "1").err == (
            "stackctl: unknown watcher 'x'\n"
        ), "it reached the controller as an admin"
        for result in acts(stranger, address, place):
            assert refused(result, sock), result
        # Out of the group, a process that still carries the gid (started before the
        # change) passes the kernel's check; the controller looks the account up anew.
        subprocess.run(["gpasswd", "-d", member.name, owner_of_group.name],
                       check=True, capture_output=True)  # fmt: skip
        result = stackctl_as_member(member, group, address, "status")
        assert refused_by_peer_check(result, sock, member), result
    finally:
        daemon.stop()


def test_one_user_holds_a_bounded_number_of_connections(place: Path) -> None:
    data = place / "controller"
    daemon = controller(data)
    sock = data / "controller.sock"
    held: list[socket.socket] = []
    try:
        for _ in range(64):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(sock))
            held.append(conn)
        address = f"unix:{sock}"

        def refused_as_busy() -> Result | None:
            result = stackctl_as(None, address, "status", workdir=place)
            return result if result.code == 1 else None

        busy = wait_for(refused_as_busy, 20, "the 65th connection to be refused")
        assert busy.err == (
            f"stackctl: the controller at {address} refused the connection: uid 0 holds 64 "
            "connections already (at most 64)\n"
        ), busy
        for conn in held:
            conn.close()
        held.clear()
        wait_for(lambda: stackctl_as(None, address, "status", workdir=place).code == 0, 20,
                 "the connections to be given back")  # fmt: skip
    finally:
        for conn in held:
            conn.close()
        daemon.stop()
