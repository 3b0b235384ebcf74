"""Running Stack's programs as a user would, and finding and cleaning up what they left.

Every harness starts its daemons as `Daemon`s (stderr in a log file, a session of their
own) and runs `stackctl` through `run_stackctl`; the test process becomes a subreaper so
that the workers of a killed agent come back to it and are reaped at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.support.hog import hog_pids

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STACKCTL = (PYTHON, "-m", "stack.cli.main")
CONTROLLER = (PYTHON, "-m", "stack.controller.main")
AGENT = (PYTHON, "-m", "stack.agent.main")
PR_SET_CHILD_SUBREAPER = 36


def stack_env(**extra: str) -> dict[str, str]:
    """This test's environment for Stack's programs: this checkout first on the path, no
    STACK_CONTROLLER of the caller's shell."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("STACK_CONTROLLER", None)
    env.update(extra)
    return env


@dataclass
class Daemon:
    """One daemon subprocess with its stdout and stderr kept in a file."""

    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    env: Mapping[str, str] | None = None
    """Its environment; None: `stack_env()`."""

    def start(self) -> Daemon:
        handle = self.log.open("ab")
        env = dict(self.env) if self.env is not None else stack_env()
        self.proc = subprocess.Popen(
            self.argv, stdout=handle, stderr=handle, env=env, cwd=ROOT, start_new_session=True
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGCONT first, for a paused one); SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Result:
    """How a command ended: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def run_stackctl(
    argv: list[str], cwd: Path = ROOT, timeout: float = 60.0, check: bool = False
) -> Result:
    """Run a stackctl command line as a user would; with `check`, it must exit 0."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=stack_env(), cwd=cwd, timeout=timeout
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check:
        assert result.code == 0, f"{' '.join(argv)} failed: {result}"
    return result


def worker_processes(marker: str, uid: int | None = None) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains `marker` (and, with `uid`,
    that run as that user)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "uids"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if uid is not None and proc.info["uids"].real != uid:
                continue
            if marker in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def ended(proc: psutil.Process | int) -> bool:
    """Whether a process (or pid) has exited: gone, or a zombie not reaped yet. It can be
    reaped between two looks at it, which then is an exit too."""
    try:
        if isinstance(proc, int):
            proc = psutil.Process(proc)
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_descendants(spare: Iterable[int] = ()) -> None:
    """SIGKILL whatever this test process still has below it, and reap it; but the
    processes `spare` and theirs (another harness's daemons), and the hogs of `--hog`
    (they run for the whole session)."""
    spared = set(hog_pids())
    for pid in spare:
        with contextlib.suppress(psutil.NoSuchProcess):
            spared.add(pid)
            spared.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    for child in psutil.Process().children(recursive=True):
        if child.pid in spared:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    reap()


def reap() -> None:
    """Collect every exited child of this process (orphans come here: see become_subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def become_subreaper() -> None:
    """Orphans of killed agents re-parent to the test process, so teardown finds them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
