"""Notice every child exit at once: SIGCHLD plus a waitpid(-1, WNOHANG) loop.

The agent makes itself a child subreaper, so workers' orphaned grandchildren are
re-parented to it and reaped here too (an unknown pid is just reaped). There is no
polling interval: the exit of a worker is dispatched in the same event-loop turn as
the signal, which is what makes respawn latency a few milliseconds.

No orphans: once a worker is reaped, its descendants that left its process group (a
`setsid` grandchild) are the agent's children. A sweep, run on the event loop right
after, SIGKILLs every child of the agent that is not a watched worker (unless spared,
e.g. while a graceful stop still waits for it); this loop then reaps them. Workers are
watched synchronously right after Popen returns, on the loop, so a sweep never sees a
worker before it is watched.

Workers adopted from a crashed agent are not children of this one: `follow` watches
each through a pidfd, readable the moment it exits. Its wait status is passed on when
it can still be read from /proc (an unreaped zombie), else None.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Callable
from typing import Protocol

from stack.agent.adoption import children_of, exit_status

log = logging.getLogger(__name__)


class Followed(Protocol):
    """A process followed through a pidfd: its identity."""

    @property
    def pid(self) -> int: ...
    @property
    def start_ticks(self) -> int: ...


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER, 1) through libc; False when not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Reaper:
    """Reaps every child of the process and calls the callback registered for its pid."""

    def __init__(self) -> None:
        self._callbacks: dict[int, Callable[[int], None]] = {}
        self._followed: dict[int, int] = {}
        """pidfd -> pid of the adopted processes watched."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep_pending = False
        self.spared: Callable[[int], bool] = lambda pid: False
        """Children the orphan sweep must leave alone (their stop is still in progress)."""

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        become_subreaper()
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def uninstall(self) -> None:
        """Reap nothing more from now on (exits stay zombies) and stop following pidfds."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGCHLD)
            for pidfd in self._followed:
                self._loop.remove_reader(pidfd)
        for pidfd in self._followed:
            os.close(pidfd)
        self._followed.clear()
        self._loop = None

    def watch(self, pid: int, callback: Callable[[int], None]) -> None:
        """Call `callback(wait_status)` when `pid` is reaped."""
        self._callbacks[pid] = callback

    def follow(self, pidfd: int, proc: Followed, callback: Callable[[int | None], None]) -> None:
        """Call `callback(wait status or None)` when `proc`, not our child, exits.

        `pidfd` (from adoption.identify) is owned by the reaper from now on. Needs a
        running loop.
        """
        loop = asyncio.get_running_loop()
        pid, ticks = proc.pid, proc.start_ticks

        def exited() -> None:
            loop.remove_reader(pidfd)
            del self._followed[pidfd]
            status = exit_status(pid, ticks)
            os.close(pidfd)
            try:
                callback(status)
            except Exception:
                log.exception("handling the exit of adopted pid %d failed", pid)

        self._followed[pidfd] = pid
        loop.add_reader(pidfd, exited)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            callback = self._callbacks.pop(pid, None)
            if callback is None:
                continue
            self.sweep_soon()
            try:
                callback(status)
            except Exception:
                log.exception("handling the exit of pid %d failed", pid)

    def sweep_soon(self) -> None:
        """Run `sweep` in a later turn of the event loop (once however often asked)."""
        if self._loop is None or self._sweep_pending:
            return
        self._sweep_pending = True
        self._loop.call_soon(self.sweep)

    def sweep(self) -> list[int]:
        """SIGKILL every child that is not a watched worker nor spared; returns their pids."""
        self._sweep_pending = False
        if self._loop is None:
            return []
        killed = []
        for pid in children_of():
            if pid in self._callbacks or self.spared(pid):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        if killed:
            log.info("killed orphaned descendants of workers: %s", killed)
        return killed


def describe(status: int | None) -> tuple[int, int]:
    """A wait status as (exit code, signal number); one of them is 0 (both when unknown)."""
    if status is None:
        return 0, 0
    if os.WIFSIGNALED(status):
        return 0, os.WTERMSIG(status)
    with contextlib.suppress(ValueError):
        return os.waitstatus_to_exitcode(status), 0
    return 0, 0
