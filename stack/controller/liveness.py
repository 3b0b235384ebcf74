"""Which agents are down, which are lost, and when a new leader has waited long enough.
Pure: the time is an argument.

An agent silent for longer than its timeout is down: its processes show as UNKNOWN
and it keeps its share. Its timeout is `agent_timeout`, longer for an agent told a
longer heartbeat interval because the fleet is large (`silence_allowed`, see
heartbeats.py). Down for `reschedule_after`, it is lost: its share of spread
watchers moves to other agents. A controller that takes over a stored stack waits one
agent timeout before placing anything that no agent reports (`warm_until`): agents are
reconnecting, and a worker placed before its agent said it runs it would run twice. A
worker no agent reports by then may run on a host that is down across the takeover; such
a host keeps its share for reschedule_after, as it would have with the old leader, so
those workers are placed elsewhere only from `hold_until` on.
The controller's check (a few times per timeout) applies what `check` decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stack.controller.agents import AgentRecord
from stack.controller.events import EventNote
from stack.controller.heartbeats import Cadence
from stack.spec.reports import Severity


@dataclass(frozen=True)
class Timeouts:
    """The two delays of liveness (from ControllerSettings)."""

    agent_timeout: float
    """Seconds of silence after which an agent is down."""
    reschedule_after: float
    """Seconds down after which an agent is lost."""
    cadence: Cadence | None = None
    """How heartbeat intervals are decided (None: every agent gets agent_timeout)."""


def silence_allowed(record: AgentRecord, now: float, timeouts: Timeouts) -> float:
    """Seconds of silence after which `record`'s agent is down at `now`: the timeout of
    the longest interval it may be following (the one it was last told, or a longer one
    told before while that one's grace lasts)."""
    cadence = timeouts.cadence
    if cadence is None:
        return timeouts.agent_timeout
    interval = record.heartbeat
    if now <= record.longer_heartbeat_until:
        interval = max(interval, record.longer_heartbeat)
    return cadence.timeout(interval) if interval > 0 else timeouts.agent_timeout


@dataclass(frozen=True)
class Liveness:
    """What one check found."""

    silent: tuple[str, ...]
    """Ready agents silent for longer than the timeout: to mark down now, in host order."""
    lost: frozenset[str]
    """Agents down for reschedule_after or more (the silent ones counted down from now)."""
    notes: tuple[EventNote, ...]
    """Events to record: each agent gone silent, each agent newly lost."""
    warmed: bool
    """The warm-up after a takeover ended with this check."""
    released: bool = False
    """The hold after a takeover ended with this check."""

    def reschedule(self, lost_before: frozenset[str]) -> bool:
        """Whether placement must be made anew (it last saw `lost_before` lost)."""
        return bool(self.silent) or self.lost != lost_before or self.warmed or self.released


def warm_until(now: float, timeouts: Timeouts, stored_watchers: bool) -> float:
    """When a controller taking over at `now` may place what no agent reports (0: at
    once, with nothing stored)."""
    return now + timeouts.agent_timeout if stored_watchers else 0.0


def hold_until(now: float, timeouts: Timeouts, stored_watchers: bool) -> float:
    """Until when a controller taking over at `now` keeps in their place the workers no
    agent reported by the end of its warm-up (0: no hold, with nothing stored)."""
    return now + timeouts.reschedule_after if stored_watchers else 0.0


def warming(now: float, until: float) -> bool:
    """Whether agents still have time to report before placement fills the gaps."""
    return now < until


def check(
    records: Iterable[AgentRecord],
    now: float,
    timeouts: Timeouts,
    *,
    announced_lost: frozenset[str],
    warm_until: float,
    hold_until: float = 0.0,
) -> Liveness:
    """Silence, loss and the end of the warm-up and of the hold at monotonic `now`.

    `announced_lost` are the agents an `agent_lost` event was recorded for (while they
    stay lost, none again); `warm_until` is 0 once the warm-up is over, `hold_until`
    once the hold is.
    """
    silent: list[str] = []
    lost: set[str] = set()
    reloading: set[str] = set()
    allowed: dict[str, float] = {}
    for record in records:
        if record.ready and now - record.last_seen_mono > timeouts.agent_timeout and (
            now - record.last_seen_mono > (allowed_now := silence_allowed(record, now, timeouts))
        ):
            silent.append(record.host_id)
            allowed[record.host_id] = allowed_now
            if record.reloading:
                reloading.add(record.host_id)
            down_since = now
        elif not record.ready:
            down_since = record.down_since
        else:
            continue
        if now - down_since >= timeouts.reschedule_after:
            lost.add(record.host_id)
    silent.sort()
    notes = [
        EventNote(
            "agent_down",
            f"agent {host_id} "
            + ("did not come back from its reload within" if host_id in reloading else "silent for")
            + f" {allowed[host_id]:g}s",
            severity=Severity.WARNING,
        )
        for host_id in silent
    ]
    notes += [
        EventNote(
            "agent_lost",
            f"agent {host_id} down for {timeouts.reschedule_after:g}s: "
            "its share of spread watchers moves to other agents",
            severity=Severity.WARNING,
        )
        for host_id in sorted(lost - announced_lost)
    ]
    warmed = bool(warm_until) and not warming(now, warm_until)
    released = bool(hold_until) and now >= hold_until
    return Liveness(tuple(silent), frozenset(lost), tuple(notes), warmed, released)
