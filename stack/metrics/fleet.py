"""The series of each watcher on each host, from what the host's agent reports.

Shared by the controller (every host it hears from) and the agent (its own host): both
hold an `Observed` per host, and both write the same families from it, labelled by
watcher and host. Gauges (processes running, unhealthy, memory) are read from the last
report. Counters must only grow, but a report says what is, not what happened: a
process's CPU time starts again with each new pid, a worker id that leaves takes its
restart count along. `HostAccounts` turns a host's successive reports into counters
that only grow (CPU seconds, restarts, exits by reason).

Writing tens of thousands of samples at each scrape is the cost that matters on a large
fleet, so `FleetRenderer` keeps each host's lines and reads a host again only when its
report or counters changed (every value here is immutable, so identity tells); even then
only the series whose value changed are written anew (a report every 2 seconds moves
CPU time and memory, rarely the processes running or the restarts).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from stack.metrics.text import NOTHING_KEPT, Family, Kept, kept_lines
from stack.spec.observed import ExitReason, Health, Observed, ProcessState, ProcessStatus

WATCHER_HOST = ("watcher", "host")
PROCESS_LABELS = ("watcher", "host", "wid")


RUNNING = Family(
    "stack_watcher_processes_running", "gauge",
    "Processes of the watcher running on the host (0 while its agent is down).",
    WATCHER_HOST,
)  # fmt: skip
UNHEALTHY = Family(
    "stack_watcher_processes_unhealthy", "gauge",
    "Processes of the watcher on the host whose health check fails.",
    WATCHER_HOST,
)  # fmt: skip
MEMORY = Family(
    "stack_watcher_resident_memory_bytes", "gauge",
    "Resident memory of the watcher's processes on the host (while its agent is up).",
    WATCHER_HOST,
)  # fmt: skip
CPU = Family(
    "stack_watcher_cpu_seconds_total", "counter",
    "User and system CPU time of the watcher's processes on the host.",
    WATCHER_HOST,
)  # fmt: skip
RESTARTS = Family(
    "stack_watcher_restarts_total", "counter",
    "Unplanned restarts of the watcher's processes on the host: after a crash, a kill, "
    "a failed health check or a failed start.",
    WATCHER_HOST,
)  # fmt: skip
EXITS = Family(
    "stack_watcher_exits_total", "counter",
    "Exits of the watcher's processes on the host, by reason.",
    ("watcher", "host", "reason"),
)  # fmt: skip
PROCESS_CPU = Family(
    "stack_process_cpu_seconds_total", "counter",
    "User and system CPU time of one worker's current process (with --metrics-per-process).",
    PROCESS_LABELS,
)  # fmt: skip
PROCESS_MEMORY = Family(
    "stack_process_resident_memory_bytes", "gauge",
    "Resident memory of one worker's process (with --metrics-per-process).",
    PROCESS_LABELS,
)  # fmt: skip
PROCESS_START = Family(
    "stack_process_start_time_seconds", "gauge",
    "Unix time one worker's current process started (with --metrics-per-process).",
    PROCESS_LABELS,
)  # fmt: skip

HOST_FAMILIES = (RUNNING, UNHEALTHY, MEMORY, CPU, RESTARTS, EXITS)
PROCESS_FAMILIES = (PROCESS_CPU, PROCESS_MEMORY, PROCESS_START)


def reason_label(reason: ExitReason) -> str:
    """`crashed`, `spawn_error`... as the `reason` label says it."""
    return reason.name.lower()


def _frozen(values: dict[str, float]) -> Mapping[str, float]:
    return MappingProxyType(values)


@dataclass(frozen=True)
class HostTotals:
    """One host's figures as of its last report: the counters so far and the gauges.
    Replaced by a report that changes any of them, kept (the same object) otherwise."""

    cpu_seconds: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    """watcher -> CPU seconds of its processes."""
    restarts: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    """watcher -> unplanned restarts."""
    exits: Mapping[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))
    """(watcher, reason label) -> exits."""
    gauges: Mapping[str, tuple[int, int, int]] = field(default_factory=lambda: MappingProxyType({}))
    """watcher -> (processes running, unhealthy, resident bytes) in the last report."""
    serial: int = field(default_factory=itertools.count().__next__, compare=False)
    """Tells these totals from any other (a number, so that what keeps it to compare
    does not keep the totals alive, see FleetRenderer)."""


NO_TOTALS = HostTotals()
"""The figures of a host not accounted for yet."""


class HostAccounts:
    """One host's figures, kept from its successive reports.

    A process's CPU time counts from the first report that shows it, whole (its pid is
    new) and then by what it grew; a worker id's restarts and exits count from its
    second report on (the first only says where the count stands). Exits are seen as
    new values of a worker's last exit: two exits of one worker between two reports
    count as one (reports follow every change within a tenth of a second).

    Each report is accounted for when it arrives (a heartbeat every 2 s or more per agent), so
    that a scrape only writes the hosts whose figures changed since the last one.
    """

    def __init__(self) -> None:
        self.totals = NO_TOTALS
        self._last: dict[tuple[str, int], ProcessStatus] = {}

    def report(self, observed: Observed) -> None:
        """Account for the host's new report."""
        old_totals = self.totals
        cpu = dict(old_totals.cpu_seconds)
        restarts = dict(old_totals.restarts)
        exits = dict(old_totals.exits)
        gauges: dict[str, tuple[int, int, int]] = {}
        last = self._last
        seen: dict[tuple[str, int], ProcessStatus] = {}
        running_state, unhealthy_health = ProcessState.RUNNING, Health.UNHEALTHY
        for proc in observed.processes:
            name = proc.watcher
            key = (name, proc.wid)
            seen[key] = proc
            running, unhealthy, memory = gauges.get(name) or (0, 0, 0)
            gauges[name] = (
                running + (proc.state == running_state),
                unhealthy + (proc.health == unhealthy_health),
                memory + (proc.rss_bytes if proc.pid else 0),
            )
            old = last.get(key)
            if name not in cpu:
                cpu[name] = 0.0
                restarts[name] = 0.0
            if old is not None and proc.pid == old.pid and proc.started_at == old.started_at:
                grown = proc.cpu_seconds - old.cpu_seconds
                if grown > 0:
                    cpu[name] += grown
            elif proc.pid:
                cpu[name] += proc.cpu_seconds
            if old is None:
                continue
            if proc.restarts > old.restarts:
                restarts[name] += proc.restarts - old.restarts
            now, before = proc.last_exit, old.last_exit
            if now is not None and (before is None or now.at != before.at):
                reason = (name, reason_label(now.reason))
                exits[reason] = exits.get(reason, 0.0) + 1
        self._last = seen
        if (
            gauges == old_totals.gauges
            and cpu == old_totals.cpu_seconds
            and restarts == old_totals.restarts
            and exits == old_totals.exits
        ):
            return
        self.totals = HostTotals(
            _frozen(cpu), _frozen(restarts), MappingProxyType(exits), MappingProxyType(gauges)
        )


Sample = tuple[tuple[str, ...], float]
"""Label values and value of one series."""


class HostView(NamedTuple):
    """What the series of one host are written from (made for every host at each
    scrape: a named tuple, the cheapest to make)."""

    host: str
    observed: Observed
    """Its last report (read for the per-process series only)."""
    up: bool
    """Its agent is connected: otherwise its processes are not known to run."""
    totals: HostTotals


WATCHER_FAMILIES = (RUNNING, UNHEALTHY, MEMORY, CPU, RESTARTS)
"""The families with one series per watcher on a host (EXITS has one per reason)."""

WatcherFigures = tuple[float | None, ...]
"""A watcher's values on a host, in WATCHER_FAMILIES' order (None: no series)."""


def watcher_figures(name: str, up: bool, totals: HostTotals) -> WatcherFigures:
    """The values of the series of watcher `name` on a host (as of `totals`)."""
    figures = totals.gauges.get(name) if up else None
    cpu, restarts = totals.cpu_seconds.get(name), totals.restarts.get(name)
    if figures is None:
        return (0, 0, None, cpu, restarts)
    return (figures[0], figures[1], figures[2], cpu, restarts)


WatcherLines = tuple[WatcherFigures, tuple[str, ...]]
"""A watcher's values on a host and their lines, in WATCHER_FAMILIES' order."""


def watcher_lines(
    name: str, host: str, figures: WatcherFigures, known: WatcherLines | None
) -> WatcherLines:
    """The lines of `figures`: the line of a value that `known` has too is its line."""
    labels = (name, host)
    lines = []
    for index, value in enumerate(figures):
        if known is not None and known[0][index] == value:
            lines.append(known[1][index])
        else:
            lines.append("" if value is None else WATCHER_FAMILIES[index].line(labels, value))
    return figures, tuple(lines)


class _HostLines:
    """One host's lines of each family, as of the figures they were written from."""

    __slots__ = ("exits", "host", "observed", "processes", "serial", "texts", "up", "watchers")

    def __init__(self, host: str) -> None:
        self.host = host
        self.serial = -1
        """The serial of the totals the lines say (-1: none yet)."""
        self.up = False
        self.observed: Observed | None = None
        """The report the per-process lines say (kept with --metrics-per-process only)."""
        self.texts: tuple[str, ...] = ()
        """The host's lines of each family, in the renderer's order of families."""
        self.watchers: dict[str, WatcherLines] = {}
        self.exits: Kept = {}
        self.processes: tuple[Mapping[tuple[str, ...], tuple[float, str]], ...] = (
            NOTHING_KEPT,
        ) * len(PROCESS_FAMILIES)
        """Each series with its value and line (see stack.metrics.text)."""

    def says(self, view: HostView, per_process: bool) -> bool:
        """The lines are those of `view`'s figures."""
        if per_process and self.observed is not view.observed:
            return False
        return self.serial == view.totals.serial and self.up == view.up

    def write(self, view: HostView, per_process: bool) -> None:
        """Write the lines of `view`: each series whose value did not change keeps its
        line (a report moves CPU time and memory, seldom anything else)."""
        host, up, totals = view.host, view.up, view.totals
        names = sorted({*totals.gauges, *totals.cpu_seconds})
        kept = self.watchers
        same = len(kept) == len(names) and all(name in kept for name in names)
        watchers = kept if same else {}  # the same watchers (as mostly): changed in place
        for name in names:
            figures = watcher_figures(name, up, totals)
            known = kept.get(name)
            if known is None or known[0] != figures:
                known = watcher_lines(name, host, figures, known)
            watchers[name] = known
        self.watchers = watchers
        if len(watchers) == 1:
            texts = next(iter(watchers.values()))[1]
        else:
            texts = tuple(
                "".join(lines[index] for _, lines in watchers.values())
                for index in range(len(WATCHER_FAMILIES))
            )
        if not totals.exits and not self.exits:
            exits_text = ""  # exits are rare: mostly none
        else:
            exits = sorted(totals.exits.items())
            exits_text, self.exits = kept_lines(
                EXITS,
                (((name, host, reason), value) for (name, reason), value in exits),
                self.exits,
            )
        self.serial, self.up = totals.serial, up
        if per_process:
            self.observed = view.observed
        if not per_process:
            self.texts = (*texts, exits_text)
            return
        cpu: list[Sample] = []
        rss: list[Sample] = []
        start: list[Sample] = []
        if up:
            for proc in view.observed.processes:
                if proc.pid:
                    labels = (proc.watcher, host, str(proc.wid))
                    cpu.append((labels, proc.cpu_seconds))
                    rss.append((labels, proc.rss_bytes))
                    start.append((labels, proc.started_at))
        written = [
            kept_lines(family, samples, known)
            for family, samples, known in zip(
                PROCESS_FAMILIES, (cpu, rss, start), self.processes, strict=True
            )
        ]
        self.processes = tuple(known for _, known in written)
        self.texts = (*texts, exits_text, *(text for text, _ in written))


class FleetRenderer:
    """Writes the families of every host, keeping each host's lines between scrapes: a
    host whose figures did not change is not read again, and of one whose figures did,
    only the series whose value changed are written anew.

    What it keeps to compare are numbers (the totals' serial), not the reports and
    totals themselves: kept, each host's replaced report would live until the next
    scrape, thousands of objects that the cycle collector then walked, again and again,
    between two scrapes (measured: most of what a scrape each second cost the controller)."""

    def __init__(self, per_process: bool = False) -> None:
        self.per_process = per_process
        self.families = HOST_FAMILIES + (PROCESS_FAMILIES if per_process else ())
        self._kept: dict[str, _HostLines] = {}

    def pieces(self, views: Iterable[HostView]) -> list[str]:
        """Every family, with the samples of every host in `views` (in their order), as
        pieces of text to join."""
        # Changed in place, not made anew: what a scrape leaves behind is walked by the
        # cycle collector (see the class's docstring).
        kept = self._kept
        hosts: list[_HostLines] = []
        per_process, families = self.per_process, self.families
        for view in views:
            host = kept.get(view.host)
            if host is None:
                host = kept[view.host] = _HostLines(view.host)
            if not host.says(view, per_process):
                host.write(view, per_process)
            hosts.append(host)
        if len(kept) > len(hosts):  # some host left: forget it
            self._kept = {host.host: host for host in hosts}
        parts: list[str] = []
        for index, family in enumerate(families):
            parts.append(family.header())
            parts.extend([host.texts[index] for host in hosts])
        return parts

    def render(self, views: Iterable[HostView]) -> str:
        """`pieces`, joined."""
        return "".join(self.pieces(views))
