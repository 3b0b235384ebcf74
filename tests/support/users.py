"""A throwaway unprivileged user for tests that check what the root agent does for or
against another account: created with `useradd --system` under a random name, with its
own group and no home, and removed (with its group) when the test ends.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ROOT

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating a user and running as it needs root"
)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


@contextmanager
def throwaway_user() -> Iterator[User]:
    name = f"stk-{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@contextmanager
def shared_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory other users may walk into (pytest's tmp is root's own), removed
    afterwards."""
    made = Path(tempfile.mkdtemp(prefix=prefix))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def argv_as(user: User, *argv: str) -> list[str]:
    """`argv` run as `user` (its own group, no supplementary groups)."""
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv]


def run_as(
    user: User, *argv: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a command as `user` (its own group, no supplementary groups) and wait for it."""
    return subprocess.run(
        argv_as(user, *argv), capture_output=True, text=True, timeout=timeout, check=False,
        env=env,
    )  # fmt: skip


def _world_runnable(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    walk = all(os.stat(above).st_mode & stat.S_IXOTH for above in real.parents)
    return walk and bool(os.stat(real).st_mode & stat.S_IXOTH)


def user_python() -> str:
    """A Python another user can run, with this one's version: ours, unless it lives in a
    directory only root may enter (a pyenv in /root); then the system's, to which
    `user_env` adds our packages. Skips the test when there is none."""
    if _world_runnable(Path(sys.executable)):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if Path(candidate).exists() and _world_runnable(Path(candidate)):
            return candidate
    pytest.skip(f"no {version} that an unprivileged user may run")


def user_env(**extra: str) -> dict[str, str]:
    """The environment for `user_python`: this checkout and our packages on its path,
    no STACK_* variable of the test's environment."""
    paths = [str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
    return dict(env, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)), **extra)
