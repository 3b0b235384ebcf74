"""Notice every child exit at once: SIGCHLD plus a waitpid(-1, WNOHANG) loop.

The agent makes itself a child subreaper, so workers' orphaned grandchildren are
re-parented to it and reaped here too (an unknown pid is just reaped). There is no
polling interval: the exit of a worker is dispatched in the same event-loop turn as
the signal, which is what makes respawn latency a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

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
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        become_subreaper()
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def uninstall(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGCHLD)
        self._loop = None

    def watch(self, pid: int, callback: Callable[[int], None]) -> None:
        """Call `callback(wait_status)` when `pid` is reaped."""
        self._callbacks[pid] = callback

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
            try:
                callback(status)
            except Exception:
                log.exception("handling the exit of pid %d failed", pid)


def describe(status: int) -> tuple[int, int]:
    """A wait status as (exit code, signal number); one of them is 0."""
    if os.WIFSIGNALED(status):
        return 0, os.WTERMSIG(status)
    with contextlib.suppress(ValueError):
        return os.waitstatus_to_exitcode(status), 0
    return 0, 0
