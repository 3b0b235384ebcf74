"""One `/metrics` page of the controller, in-process: the CPU a scrape costs.

Run: .venv/bin/python bench/metrics_page.py [--agents 1000] [--per-agent 10]
     [--scrapes 60] [--profile]

The controller's state is built here without a network: `--agents` records of ready
agents, each with one watcher of `--per-agent` running processes, accounted for as
the controller does at each report. Between two scrapes half of the agents report new
CPU time and memory, as they do when a report comes every 2 seconds and Prometheus
scrapes every second. The page is the one the controller serves (the daemon's own
series, its counters and the fleet's, see stack.controller.metrics.read), gzipped
too when `--gzip`. Printed: the median, p99 and least CPU time of one page (the least is what a
loaded machine disturbs least), beside the
same page when no agent reported since the last scrape (the baseline of this run).
`--profile` prints cProfile's top functions over the changing scrapes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import percentile
from stack.controller import metrics
from stack.controller.agents import AgentRecord
from stack.controller.desired import DesiredWatcher
from stack.controller.placement import Placement
from stack.metrics.exposition import Exposition
from stack.spec.model import WatcherSpec
from stack.spec.observed import (
    Observed,
    ProcessState,
    ProcessStatus,
    WatcherObserved,
    WatcherPhase,
)

WATCHER = "fleet"


def report(host: str, per_agent: int, now: float) -> Observed:
    """A host's report whose CPU time and memory moved, as a real agent's do."""
    return Observed(
        generation=1,
        processes=tuple(
            ProcessStatus(
                WATCHER,
                wid,
                pid=1000 + wid,
                state=ProcessState.RUNNING,
                started_at=1000.0,
                rss_bytes=20 * 2**20 + random.randrange(4096) * 4096,
                cpu_seconds=(now - 1000.0) * 0.01,
                host_id=host,
            )
            for wid in range(per_agent)
        ),
        watchers=(WatcherObserved(WATCHER, WatcherPhase.ACTIVE),),
    )


class Fleet:
    """The controller's state as `stack.controller.metrics.read` reads it."""

    def __init__(self, agents: int, per_agent: int) -> None:
        self.per_agent = per_agent
        self.metrics = metrics.ControllerMetrics()
        self.metrics.enabled = True
        hosts = [f"host-{i:04d}" for i in range(agents)]
        now = time.monotonic()
        self.records = {host: AgentRecord(host, ready=True, last_seen_mono=now) for host in hosts}
        self.hosts = hosts
        spec = WatcherSpec(name=WATCHER, cmd="/bin/sleep 3600", numprocesses=per_agent)
        self.controller: Any = SimpleNamespace(
            leading=True,
            term=1,
            commands=SimpleNamespace(want_stats=lambda: 0),
            metrics=self.metrics,
            agents=SimpleNamespace(records=self.records),
            state=SimpleNamespace(watchers={WATCHER: DesiredWatcher(spec)}, drained=frozenset()),
            placement=Placement(),
            clock=time.monotonic,
        )
        self.tick = 0
        self.move(self.hosts)

    def move(self, hosts: list[str]) -> None:
        """`hosts` report new figures."""
        now = time.time()
        for host in hosts:
            record = self.records[host]
            record.observed = report(host, self.per_agent, now)
            record.last_seen_mono = time.monotonic()
            self.metrics.reported(host, record.observed)

    def half(self) -> None:
        """Every other host reports (the other half at the next call)."""
        self.tick += 1
        self.move(self.hosts[self.tick % 2 :: 2])


def timed(scrape: Callable[[], bytes], before: Callable[[], None], count: int) -> list[float]:
    """CPU seconds of each of `count` scrapes, `before()` run (untimed) ahead of each."""
    times = []
    for _ in range(count):
        before()
        started = time.process_time()
        scrape()
        times.append(time.process_time() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--per-agent", type=int, default=10)
    parser.add_argument("--scrapes", type=int, default=60)
    parser.add_argument("--profile", action="store_true")
    ns = parser.parse_args()
    fleet = Fleet(ns.agents, ns.per_agent)
    exposition = Exposition(fleet.metrics.tally, lambda: metrics.read(fleet.controller))
    page = exposition.scrape()
    for _ in range(3):
        fleet.half()
        exposition.scrape()
    still = timed(exposition.scrape, lambda: None, ns.scrapes)
    moving = timed(exposition.scrape, fleet.half, ns.scrapes)
    if ns.profile:
        profiler = cProfile.Profile()
        for _ in range(ns.scrapes):
            fleet.half()
            profiler.runcall(exposition.scrape)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    ms = 1000
    print(
        f"/metrics in-process, {ns.agents} agents x {ns.per_agent} processes "
        f"({len(page) / 2**20:.2f} MiB page), CPU of one page over {ns.scrapes} scrapes:\n"
        f"    half the agents reported since the last scrape: median "
        f"{statistics.median(moving) * ms:.2f} ms, p99 {percentile(moving, 0.99) * ms:.2f} ms, "
        f"least {min(moving) * ms:.2f} ms\n"
        f"    baseline, no agent reported since:              median "
        f"{statistics.median(still) * ms:.2f} ms, p99 {percentile(still, 0.99) * ms:.2f} ms, "
        f"least {min(still) * ms:.2f} ms\n"
        f"    machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
