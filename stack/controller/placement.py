"""Placement: which host runs which worker ids of each watcher.

A pure decision over plain values, so it can be table- and property-tested:
no clock, no I/O. The controller calls it whenever the desired state, the set
of ready agents or what they report running changes, and turns the answer into
one Assignment per host.

The rules favour stability: a worker id keeps running where it runs; only
missing ids are placed, each on the ready agent with the fewest processes of
that watcher (ties broken by host id). Scale down removes the highest ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

NO_ELIGIBLE_AGENT = "no eligible agent"


@dataclass(frozen=True)
class AgentView:
    """What placement needs to know about one agent."""

    host_id: str
    """The agent's host id (unique in the fleet)."""
    ready: bool
    """True while the agent is connected and heard from within the timeout."""


@dataclass(frozen=True)
class Pending:
    """Worker ids of one watcher that could not be placed, and why."""

    count: int
    """How many worker ids have no host."""
    reason: str
    """Why, in a few words ("no eligible agent")."""


def _empty_hosts() -> Mapping[str, Mapping[str, tuple[int, ...]]]:
    return MappingProxyType({})


def _empty_pending() -> Mapping[str, Pending]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Placement:
    """The answer of `place`."""

    hosts: Mapping[str, Mapping[str, tuple[int, ...]]] = field(default_factory=_empty_hosts)
    """host id -> watcher -> sorted worker ids placed there (only non-empty entries)."""
    pending: Mapping[str, Pending] = field(default_factory=_empty_pending)
    """watcher -> the ids left unplaced (only watchers with some)."""

    def wids(self, host_id: str, watcher: str) -> tuple[int, ...]:
        """The worker ids of `watcher` placed on `host_id` (possibly none)."""
        return self.hosts.get(host_id, {}).get(watcher, ())

    def hosts_of(self, watcher: str) -> tuple[str, ...]:
        """The hosts that run at least one worker of `watcher`, in host id order."""
        return tuple(sorted(host for host, by in self.hosts.items() if by.get(watcher)))

    def placed(self, watcher: str) -> int:
        """How many worker ids of `watcher` are placed on some host."""
        return sum(len(by.get(watcher, ())) for by in self.hosts.values())


def place(
    desired: Mapping[str, int],
    agents: Sequence[AgentView],
    current: Mapping[str, Mapping[str, frozenset[int]]],
) -> Placement:
    """Place worker ids 1..N of every watcher on the ready agents.

    `desired` maps watcher -> numprocesses; `current` maps host -> watcher ->
    worker ids running there now. A worker id kept where it runs if that host
    is ready and the id is still wanted (a duplicate on two hosts stays on the
    smallest host id); every missing id goes to the ready agent with the fewest
    processes of that watcher.
    """
    ready = sorted({agent.host_id for agent in agents if agent.ready})
    hosts: dict[str, dict[str, tuple[int, ...]]] = {}
    pending: dict[str, Pending] = {}
    for watcher in sorted(desired):
        count = max(0, desired[watcher])
        where: dict[int, str] = {}
        for host in ready:
            for wid in sorted(current.get(host, {}).get(watcher, frozenset())):
                if 1 <= wid <= count and wid not in where:
                    where[wid] = host
        missing = [wid for wid in range(1, count + 1) if wid not in where]
        if missing and not ready:
            pending[watcher] = Pending(len(missing), NO_ELIGIBLE_AGENT)
        elif missing:
            load = dict.fromkeys(ready, 0)
            for host in where.values():
                load[host] += 1
            for wid in missing:
                host = min(ready, key=lambda h: (load[h], h))
                where[wid] = host
                load[host] += 1
        by_host: dict[str, list[int]] = {}
        for wid, host in where.items():
            by_host.setdefault(host, []).append(wid)
        for host, wids in by_host.items():
            hosts.setdefault(host, {})[watcher] = tuple(sorted(wids))
    return Placement(
        hosts=MappingProxyType({h: MappingProxyType(by) for h, by in sorted(hosts.items())}),
        pending=MappingProxyType(pending),
    )
