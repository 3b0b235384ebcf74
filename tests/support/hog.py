"""Busy-looping processes, one per core, so the suite can be run on a machine as busy as a CI
runner next to other jobs (`./run test --hog`).

A test whose margin only holds on an idle machine fails under the hog; that is the point.
The hogs are bounded every way a run can end: the session stops them at its end (Ctrl-C
and failures included); each one dies with the process that started it (the kernel's
parent-death signal, and a check of its parent on every round, for the moment between
fork and prctl); and each gives up after `limit` seconds whatever happens.

Run as a program (`python -m tests.support.hog PARENT_PID SECONDS`) it is one hog.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1
DEFAULT_LIMIT = 3 * 3600.0
"""A hog ends after this many seconds on its own (longer than any suite run)."""
_hogging: set[int] = set()


def hog_pids() -> frozenset[int]:
    """The hogs this process runs now: what a test's clean-up of its own children spares."""
    return frozenset(_hogging)


def cores() -> int:
    """The CPUs this process may run on (what the tests compete for)."""
    return len(os.sched_getaffinity(0))


@dataclass
class Hog:
    """`count` busy processes (default: one per core) while the block runs."""

    count: int = field(default_factory=cores)
    limit: float = DEFAULT_LIMIT
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> Hog:
        argv = [sys.executable, "-m", "tests.support.hog", str(os.getpid()), str(self.limit)]
        for _ in range(self.count):
            proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True
            )
            self.procs.append(proc)
            _hogging.add(proc.pid)
        return self

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self.procs:
            proc.wait(10)
            _hogging.discard(proc.pid)
        self.procs.clear()

    def __enter__(self) -> Hog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spin(parent: int, limit: float) -> None:
    """Burn one CPU until `parent` is gone or `limit` seconds passed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    end = time.monotonic() + limit
    while os.getppid() == parent and time.monotonic() < end:
        for _ in range(200_000):
            pass


if __name__ == "__main__":
    spin(int(sys.argv[1]), float(sys.argv[2]))
