"""What one agent may put into the controller, whatever it sends.

An agent is trusted with its own host and nothing more. A hostile or broken one must
not speak for another host, fill `status` with workers it was never given, or flood
the controller with events and output. The controller screens each of its messages
here before anything else reads them:

- `screen` keeps the process reports of workers the host may run (see `Entitlement`)
  and drops the rest, counted; a report of more processes than any host could run is
  refused whole.
- `Meter` caps output lines and bytes per second, with token buckets whose time is
  passed in. (Events have their per-agent rate in the event history: events.py.)

Pure: plain values in, plain values out, the clock passed in. The controller stamps
the session's host id and records what was refused (see controller.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from stack.controller.events import EventNote
from stack.spec.observed import Observed
from stack.spec.reports import LogLine, Severity

T = TypeVar("T")


LOG_BURST_SECONDS = 4.0
"""An agent may ship this many seconds' worth of output bytes at once."""


@dataclass(frozen=True)
class AgentLimits:
    """What one agent may send the controller. Defaults leave room for any honest agent."""

    max_reported_processes: int = 20_000
    """Processes one Observed may report; a larger one is refused whole (an honest host
    runs at most what it was assigned, and one watcher has at most 10,000)."""
    log_line_rate: float = 10_000.0
    """Output lines per second one agent may ship (twice the agent's own default cap)."""
    log_byte_rate: float = 4 * 1024 * 1024
    """Output bytes per second one agent may ship, whatever the length of its lines
    (bursts of LOG_BURST_SECONDS)."""


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def available(self, now: float) -> float:
        """The tokens there are at time `now`."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def take(self, amount: float, now: float) -> bool:
        """Spend `amount` tokens if there are that many at time `now`."""
        if amount > self.available(now):
            return False
        self._tokens -= amount
        return True


REFUSALS_EVERY = 10.0
"""Seconds between two `agent_refused` events about one agent at most."""
REFUSAL_LABELS = {
    "ignored_processes": "reports of workers not assigned to it ignored",
    "refused_reports": "reports of too many processes refused",
    "dropped_log_lines": "output lines over its caps dropped",
}
"""The counts of Refusals an `agent_refused` event tells, and how they read (dropped
events have their own `events_dropped` event, see events.py)."""


@dataclass
class Refusals:
    """What the controller refused from one agent since it started (shown by `agents`)."""

    ignored_processes: int = 0
    """Reported workers that were not the host's to run."""
    refused_reports: int = 0
    """Observed messages over `max_reported_processes`, refused whole."""
    dropped_events: int = 0
    """Events over its rate (see events.EventRate)."""
    dropped_log_lines: int = 0
    """Output lines over the lines or bytes per second caps."""

    def told(self) -> tuple[int, int, int]:
        """The counts an `agent_refused` event tells, in REFUSAL_LABELS' order (read for
        every agent a few times a second: no lookups by name)."""
        return (self.ignored_processes, self.refused_reports, self.dropped_log_lines)


@dataclass
class Meter:
    """One agent's rate caps and what they refused."""

    limits: AgentLimits
    refusals: Refusals = field(default_factory=Refusals)
    _lines: TokenBucket = field(init=False)
    _bytes: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        limits = self.limits
        self._lines = TokenBucket(limits.log_line_rate, limits.log_line_rate)
        self._bytes = TokenBucket(limits.log_byte_rate, limits.log_byte_rate * LOG_BURST_SECONDS)

    def lines(self, lines: Sequence[LogLine], now: float) -> Sequence[LogLine]:
        """The leading output lines of one batch that fit the caps; the rest are counted."""
        admitted = _leading(lines, now, self._line_fits)
        self.refusals.dropped_log_lines += len(lines) - len(admitted)
        return admitted

    def _line_fits(self, line: LogLine, now: float) -> bool:
        size = line.weight
        if self._bytes.available(now) < size or self._lines.available(now) < 1:
            return False
        return self._bytes.take(size, now) and self._lines.take(1, now)


def _leading(items: Sequence[T], now: float, fits: Callable[[T, float], bool]) -> Sequence[T]:
    """`items` up to the first that does not fit (order is kept, nothing is skipped)."""
    for index, item in enumerate(items):
        if not fits(item, now):
            return items[:index]
    return items


Entitlement = Callable[[str, int], bool]
"""Whether a host may report worker `wid` of `watcher`, or with wid 0 some worker of
it (see Controller.entitlement)."""


@dataclass(frozen=True)
class Screened:
    """An Observed as the controller keeps it."""

    observed: Observed
    """The reports kept: of workers the host may run, once each, and their watchers."""
    ignored: int
    """Process reports dropped."""
    refused: bool
    """True when the whole message was refused (too many processes)."""


def screen(observed: Observed, may_run: Entitlement, limits: AgentLimits) -> Screened:
    """Keep what an Observed may say: processes the host may run (each once), the phase
    of watchers it runs, and its sockets; a report over the process cap is refused."""
    if len(observed.processes) > limits.max_reported_processes:
        empty = Observed(generation=observed.generation)
        return Screened(empty, len(observed.processes), refused=True)
    processes = []
    seen: set[tuple[str, int]] = set()
    for proc in observed.processes:
        key = (proc.watcher, proc.wid)
        if proc.wid < 1 or key in seen or not may_run(proc.watcher, proc.wid):
            continue
        seen.add(key)
        processes.append(proc)
    runs = {watcher for watcher, _ in seen}
    watchers = tuple(w for w in observed.watchers if w.name in runs or may_run(w.name, 0))
    ignored = len(observed.processes) - len(processes)
    if not ignored and len(watchers) == len(observed.watchers):
        return Screened(observed, 0, refused=False)  # all of it (frozen: nothing to copy)
    kept = Observed(observed.generation, tuple(processes), watchers, observed.sockets)
    return Screened(kept, ignored, refused=False)


@dataclass(frozen=True)
class Announcement:
    """What to tell of one agent's refusals now (see `announce`)."""

    note: EventNote | None
    """The `agent_refused` event to record, if any."""
    counts: tuple[int, ...]
    """The counts told of from now on."""
    next_at: float
    """Monotonic time before which no other event is recorded for this agent."""


def announce(
    host_id: str,
    refusals: Refusals,
    told: tuple[int, ...],
    not_before: float,
    now: float,
) -> Announcement | None:
    """A warning event when the controller refused something more from an agent since it
    last told (`told`), at most one per agent every REFUSALS_EVERY seconds (`not_before`);
    None when nothing is to change. The counts themselves are in `agents -o json`."""
    if now < not_before:
        return None
    counts = refusals.told()
    if counts == told:
        return None
    before = told or (0,) * len(counts)
    what = [
        f"{after - earlier} {label}"
        for label, earlier, after in zip(REFUSAL_LABELS.values(), before, counts, strict=True)
        if after > earlier
    ]
    if not what:
        return Announcement(None, counts, not_before)
    message = f"agent {host_id}: {'; '.join(what)} (stackctl agents -o json counts them)"
    note = EventNote("agent_refused", message, severity=Severity.WARNING)
    return Announcement(note, counts, now + REFUSALS_EVERY)
