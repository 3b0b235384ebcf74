"""Bench-only tools, installed by the bench scripts themselves on first use.

The comparisons need other process managers and servers (Circus, Supervisor,
gunicorn) and a load generator (wrk). None of them is a dependency of Stack, so
they never go into the project's `.venv`: each gets a virtualenv of its own under
`bench/.cache/` (ignored by git), pinned to the versions the figures were taken
with and re-created only when the pins change, so a second run starts at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"

# The releases the figures were taken with. Circus 0.19.0 installs and runs on
# Python 3.11 with the current pyzmq and tornado: no older release is needed.
CIRCUS = ("circus==0.19.0", "pyzmq==27.3.0", "tornado==6.6.1", "psutil==7.2.2")
SUPERVISOR = ("supervisor==4.3.0",)
GUNICORN = ("gunicorn==27.0.1",)


class InstallError(Exception):
    """A bench tool could not be installed; the message says which and why."""


def venv(name: str, requirements: Sequence[str]) -> Path:
    """The bin/ directory of virtualenv `name` holding exactly `requirements` (pip specifiers)."""
    home = CACHE / "venvs" / name
    stamp = home / ".bench-requirements"
    want = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == want:
        return home / "bin"
    shutil.rmtree(home, ignore_errors=True)
    print(f"bench: installing {' '.join(requirements)} into {home}", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(home)], f"virtualenv {name}")
    _run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", *requirements], name)
    stamp.write_text(want)
    return home / "bin"


def debian_tool(command: str, package: str) -> str:
    """The path of `command`; installs Debian's `package` with apt when it is missing (as root)."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise InstallError(f"{command} is missing: apt-get install {package} (as root)")
    print(f"bench: installing Debian's {package}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env)
    _run(["apt-get", "install", "-y", "-qq", package], f"apt-get install {package}", env)
    found = shutil.which(command)
    if not found:
        raise InstallError(f"{package} is installed but {command} is not on PATH")
    return found


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        reason = " | ".join(tail)
        raise InstallError(f"installing {what} failed (exit {proc.returncode}): {reason}")
