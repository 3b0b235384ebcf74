"""Per-process resource figures (cpu, rss, open fds, children), read from /proc.

A sample of one worker is three small reads: /proc/PID/stat (cpu times, rss, start
time), the names in /proc/PID/fd, and /proc/PID/task/PID/children. psutil would read
more files per process and cost the agent its import; at 100 workers sampled every
couple of seconds while someone looks, these reads are most of the agent's work.

CPU percent is measured between two samples of the same process (pid and start
ticks, so a reused pid starts afresh), as a share of one CPU: a process busy on two
cores shows 200.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stack.agent.adoption import read_stat

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStats:
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0
    """User and system CPU time so far."""
    num_fds: int = 0
    num_children: int = 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _children(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            return len(handle.read().split())
    except OSError:
        return 0


class StatsSampler:
    """Keeps the last sample of every pid it was asked about."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last: dict[tuple[int, float], tuple[float, int]] = {}
        """(pid, start ticks) -> (when, cpu ticks) of its previous sample."""
        self.latest: dict[int, ProcStats] = {}

    def sample(self, pids: Iterable[tuple[int, float]]) -> None:
        """Sample (pid, start_ticks) pairs; forget every other pid."""
        now = self._clock()
        last: dict[tuple[int, float], tuple[float, int]] = {}
        latest: dict[int, ProcStats] = {}
        for key in set(pids):
            pid, start = key
            reading = read_stat(pid)
            if reading is None or (start and reading.start_ticks != start):
                continue  # gone, or the pid is another process's now
            before = self._last.get(key)
            percent = 0.0
            if before is not None and now > before[0]:
                used = (reading.cpu_ticks - before[1]) / TICKS
                percent = round(max(used, 0.0) / (now - before[0]) * 100, 1)
            last[key] = (now, reading.cpu_ticks)
            latest[pid] = ProcStats(
                cpu_percent=percent,
                rss_bytes=reading.rss_pages * PAGE,
                cpu_seconds=reading.cpu_ticks / TICKS,
                num_fds=_fds(pid),
                num_children=_children(pid),
            )
        self._last = last
        self.latest = latest

    def get(self, pid: int) -> ProcStats:
        return self.latest.get(pid, ProcStats())
