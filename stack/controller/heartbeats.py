"""How often agents heartbeat, decided from the size of the fleet. Pure.

Every ready agent sends an Observed at least once per heartbeat interval, and the
controller reads each one (Python gRPC needs over 50 µs a message): a fleet costs it
agents / interval reads a second even when nothing changes. So the interval grows with
the fleet, so that all of it sends at most `max_rate` heartbeats a second; up to
max_rate x base agents it stays the base interval (2 s for up to 1,000 agents with the
defaults). The silence after which an agent is down grows in the same proportion
(`timeout`), so the margin, in heartbeats missed, stays what it is at the base interval.
When the fleet grows or shrinks enough to move the interval by more than a quarter,
connected agents are told the new one a few at a time (`to_retell`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TOLERANCE = 0.25
"""How far (a fraction of the interval an agent was told) the wanted interval may move
before that agent is told again."""


@dataclass(frozen=True)
class Cadence:
    """The settings the heartbeat interval is decided from (from ControllerSettings)."""

    heartbeat_interval: float
    """The interval a small fleet is asked for (ControllerSettings, 2 s by default)."""
    agent_timeout: float
    """Seconds of silence after which an agent told the base interval is down."""
    max_rate: float
    """Heartbeats a second the whole fleet may send at most."""

    @property
    def base(self) -> float:
        """The interval of a small fleet: well inside the agent timeout (three
        heartbeats at least), whatever the two settings say."""
        return min(self.heartbeat_interval, self.agent_timeout / 3)

    def interval(self, agents: int) -> float:
        """The interval for a fleet of `agents` ready agents."""
        return max(self.base, agents / self.max_rate)

    def timeout(self, interval: float) -> float:
        """Seconds of silence after which an agent told `interval` is down: the agent
        timeout, or as many intervals as it holds base ones if that is longer."""
        return self.agent_timeout * max(1.0, interval / self.base)


def stale(told: float, wanted: float) -> bool:
    """Whether an agent told `told` (0: nothing yet) must be told `wanted`."""
    return told <= 0 or abs(wanted - told) > TOLERANCE * told


def to_retell(told: Iterable[tuple[str, float]], wanted: float, budget: int) -> list[str]:
    """The hosts, out of (host id, interval it was told), to tell `wanted` now: the
    first `budget` whose interval is stale (the others wait for a later round, so that
    a changed interval never makes a burst of messages)."""
    chosen: list[str] = []
    if budget <= 0:
        return chosen
    for host_id, interval in told:
        if stale(interval, wanted):
            chosen.append(host_id)
            if len(chosen) >= budget:
                break
    return chosen


def shortened(
    told: float, longer: float, longer_until: float, now: float, new: float, cadence: Cadence
) -> tuple[float, float]:
    """(longer, longer_until) to keep after telling `new` at `now` to an agent told
    `told` before (and still allowed `longer` until `longer_until`).

    An agent sleeping out a longer interval sends its next heartbeat only at its end: its
    liveness keeps the longest interval it may still be following, until the timeout of
    each one it was told (counted from when it was told otherwise) has passed, before
    the shorter one applies."""
    keep = (longer, longer_until) if now <= longer_until else (0.0, 0.0)
    if told <= new:
        return keep
    return max(keep[0], told), max(keep[1], now + cadence.timeout(told))
