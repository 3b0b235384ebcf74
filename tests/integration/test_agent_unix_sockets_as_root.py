"""Unix sockets under a directory another user controls (issue 16, item 2).

The attack: a stack file binds `path` under the directory of the worker's user, who
turns a directory on that path into a symlink to a root service's directory. Before,
the agent then unlinked the root service's socket (`replace`), bound its own there for
the worker, and on close deleted whatever stood at that name, a regular root file
included. The root agent's pool is driven directly here, against a real listening
"root service" and a racer running as the user.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.agent.sockets import SocketPool
from stack.spec.model import SocketSpec
from tests.support.users import User, needs_root
from tests.support.wait import wait_for

pytestmark = needs_root


@pytest.fixture
def place(user: User) -> Iterator[Path]:
    """`home/` is the user's; `service/` is root's (0755) with a listening root socket
    `svc.sock` and a regular root file `data`."""
    base = Path(tempfile.mkdtemp(prefix="stack-sockets-"))
    service = socket.socket(socket.AF_UNIX)
    try:
        base.chmod(0o755)
        _their_dir(user, base / "home")
        (base / "service").mkdir(mode=0o755)
        service.bind(str(base / "service" / "svc.sock"))
        service.listen()
        (base / "service" / "data").write_bytes(b"root's data")
        yield base
    finally:
        service.close()
        shutil.rmtree(base)


def _inodes(folder: Path) -> dict[str, int]:
    return {path.name: path.lstat().st_ino for path in folder.iterdir()}


def _serves(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def _their_dir(user: User, path: Path) -> Path:
    path.mkdir()
    os.chown(path, user.uid, user.gid)
    return path


def _link_as(user: User, link: Path, target: Path) -> None:
    link.symlink_to(target)
    os.chown(link, user.uid, user.gid, follow_symlinks=False)


def test_a_symlinked_parent_redirects_neither_the_replace_nor_the_bind(
    user: User, place: Path
) -> None:
    before = _inodes(place / "service")
    _link_as(user, place / "home" / "run", place / "service")
    pool = SocketPool()
    try:
        spec = SocketSpec(name="web", path=str(place / "home" / "run" / "svc.sock"), replace=True)
        (bound,) = pool.sync([spec])
        assert bound.sock is None
        assert bound.error == (
            f"socket web: cannot bind {spec.path}: {place / 'home' / 'run'}: is a symlink in a"
            " directory that other users can write; not followed"
        )
    finally:
        pool.close()
    assert _inodes(place / "service") == before
    assert _serves(place / "service" / "svc.sock")


def test_closing_unlinks_only_the_socket_the_agent_bound(user: User, place: Path) -> None:
    run = _their_dir(user, place / "home" / "run")
    pool = SocketPool()
    try:
        pool.sync([SocketSpec(name="web", path=str(run / "svc.sock"))])
        bound = pool.get("web")
        assert bound is not None and bound.sock is not None, bound
        assert _serves(run / "svc.sock")
        # The user moves the directory away and points its name at the root service's.
        run.rename(place / "home" / "moved")
        _link_as(user, run, place / "service")
        before = _inodes(place / "service")
        pool.close()
        assert _inodes(place / "service") == before
        assert not (place / "home" / "moved" / "svc.sock").exists(), "its own socket is gone"
    finally:
        pool.close()
    assert _serves(place / "service" / "svc.sock")


def test_a_socket_the_user_swapped_in_at_the_same_name_is_not_unlinked(
    user: User, place: Path
) -> None:
    run = _their_dir(user, place / "home" / "run")
    pool = SocketPool()
    try:
        pool.sync([SocketSpec(name="web", path=str(run / "svc.sock"))])
        (run / "svc.sock").unlink()
        (run / "svc.sock").write_bytes(b"the user's file")
    finally:
        pool.close()
    assert (run / "svc.sock").read_bytes() == b"the user's file"


def test_a_socket_under_a_directory_the_user_may_swap_is_bound_in_the_checked_one(
    user: User, place: Path
) -> None:
    """`home/run` could be swapped between a check and a bind by name: the bind goes
    through the directory the agent opened, and clients still reach it by its path."""
    run = _their_dir(user, place / "home" / "run")
    pool = SocketPool()
    try:
        pool.sync([SocketSpec(name="web", path=str(run / "svc.sock"), umask=0o177)])
        bound = pool.get("web")
        assert bound is not None and bound.sock is not None and bound.place is not None
        assert bound.address == str(run / "svc.sock")
        assert bound.sock.getsockname() == f"/proc/self/fd/{bound.place.dir_fd}/svc.sock"
        assert stat.S_IMODE((run / "svc.sock").lstat().st_mode) == 0o600
        assert _serves(run / "svc.sock")
    finally:
        pool.close()
    assert not (run / "svc.sock").exists()


def test_binding_and_closing_while_the_user_flips_the_directory_never_touch_roots(
    user: User, place: Path
) -> None:
    """A racer running as the user flips `home/run` between a real directory and a
    symlink to the root service's directory, as fast as it can, while the agent binds
    with `replace` and closes, at least 300 times and until it has seen both (at least
    20 binds and 20 refusals)."""
    home = place / "home"
    before = _inodes(place / "service")
    racer = subprocess.Popen(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--",
         "/usr/bin/python3", "-c", _FLIPPER, str(home), str(place / "service")],
    )  # fmt: skip
    try:
        wait_for(lambda: (home / "flipping").exists(), 10, "the racer to start")
        outcomes = {"bound": 0, "refused": 0}
        deadline = time.monotonic() + 30
        rounds = 0
        while rounds < 300 or min(outcomes.values()) < 20:
            assert time.monotonic() < deadline, f"the racer made no progress: {outcomes}"
            rounds += 1
            pool = SocketPool()
            spec = SocketSpec(name="web", path=str(home / "run" / "svc.sock"), replace=True)
            pool.sync([spec])
            bound = pool.get("web")
            assert bound is not None
            outcomes["bound" if bound.sock is not None else "refused"] += 1
            pool.close()
            assert _inodes(place / "service") == before, f"round {rounds}: {outcomes}"
    finally:
        racer.kill()
        racer.wait()
    assert _serves(place / "service" / "svc.sock")


_FLIPPER = """
import os, sys
home, target = sys.argv[1], sys.argv[2]
os.chdir(home)
os.mkdir("real")
open("flipping", "w").close()
while True:
    for step in (
        lambda: os.rename("real", "run"),
        lambda: os.rename("run", "real"),
        lambda: os.symlink(target, "run"),
        lambda: os.unlink("run"),
    ):
        try:
            step()
        except OSError:
            pass
"""
