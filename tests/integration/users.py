"""A throwaway unprivileged user for tests that check what the root agent does for or
against another account: created with `useradd --system` under a random name, with its
own group and no home, and removed (with its group) when the test ends.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

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


def run_as(user: User, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as `user` (its own group, no supplementary groups) and wait for it."""
    return subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
