"""Per-process resource figures (cpu, rss, open fds, children) sampled with psutil.

psutil.Process objects are cached per pid so cpu_percent measures between samples;
children are counted from /proc/<pid>/task/<pid>/children (one small read) rather than
psutil's scan of every process on the host, which would not stay cheap at 100 workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcStats:
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0
    """User and system CPU time so far."""
    num_fds: int = 0
    num_children: int = 0


def _children(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            return len(handle.read().split())
    except OSError:
        return 0


class StatsSampler:
    """Keeps the last sample of every pid it was asked about."""

    def __init__(self) -> None:
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self.latest: dict[int, ProcStats] = {}

    def sample(self, pids: Iterable[tuple[int, float]]) -> None:
        """Sample (pid, start_ticks) pairs; forget every other pid."""
        wanted = set(pids)
        for key in list(self._procs):
            if key not in wanted:
                del self._procs[key]
        latest: dict[int, ProcStats] = {}
        for key in wanted:
            proc = self._procs.get(key)
            if proc is None:
                try:
                    proc = self._procs[key] = psutil.Process(key[0])
                except psutil.Error:
                    continue
            with contextlib.suppress(psutil.Error, OSError), proc.oneshot():
                times = proc.cpu_times()
                latest[key[0]] = ProcStats(
                    cpu_percent=proc.cpu_percent(None),
                    rss_bytes=proc.memory_info().rss,
                    cpu_seconds=times.user + times.system,
                    num_fds=proc.num_fds(),
                    num_children=_children(key[0]),
                )
        self.latest = latest

    def get(self, pid: int) -> ProcStats:
        return self.latest.get(pid, ProcStats())
