"""Placement: which host runs which worker ids of each watcher.

A pure decision over plain values, so it can be table- and property-tested:
no clock, no I/O. The controller calls it whenever the desired state, the
agents or what they report running changes, and turns the answer into one
Assignment per host.

The rules favour stability. A worker id keeps running where it runs, unless
its host is gone (lost for longer than the reschedule delay, or draining), no
longer has the watcher's labels, or holds more than `max_per_host` (then its
highest ids move). A host that is down but not yet gone keeps its ids and gets
no new ones. Only missing ids are placed, each on the eligible agent with the
fewest processes of that watcher (ties broken by host id); scaling down drops
the highest ids. A host joining takes nothing away: only `rebalance` moves
running ids to even out a watcher.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from stack.spec.model import PlacementSpec

READY = "ready"
"""Connected: keeps its worker ids and may get new ones."""
DOWN = "down"
"""Not heard from, but within the reschedule delay: keeps its ids, gets no new ones."""
GONE = "gone"
"""Lost past the reschedule delay, or draining: its ids are placed elsewhere."""
AGENT_STATES = (READY, DOWN, GONE)

NO_ELIGIBLE_AGENT = "no eligible agent"

Current = Mapping[str, Mapping[str, frozenset[int]]]
"""host id -> watcher -> worker ids running (or already assigned) there."""


def _no_labels() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AgentView:
    """What placement needs to know about one agent."""

    host_id: str
    """The agent's host id (unique in the fleet)."""
    state: str
    """"ready", "down" or "gone" (see the module constants)."""
    labels: Mapping[str, str] = field(default_factory=_no_labels)
    """The labels the agent announced; a watcher's labels must all match."""

    def __post_init__(self) -> None:
        if self.state not in AGENT_STATES:
            raise ValueError(f"agent state must be one of {AGENT_STATES}, got {self.state!r}")

    @property
    def ready(self) -> bool:
        """True when the agent may get new worker ids."""
        return self.state == READY

    def has_labels(self, labels: Mapping[str, str]) -> bool:
        """Whether the agent has every one of `labels` with the same value."""
        return all(self.labels.get(key) == value for key, value in labels.items())


@dataclass(frozen=True)
class WatcherDemand:
    """What placement needs to know about one watcher."""

    count: int
    """numprocesses: the fleet total ("spread") or the count per agent ("each")."""
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    """Mode, max_per_host and labels."""
    singleton: bool = False
    """At most one worker in the whole fleet."""


@dataclass(frozen=True)
class Pending:
    """Worker ids of one watcher that could not be placed, and why."""

    count: int
    """How many worker ids have no host."""
    reason: str
    """Why, in a few words: `no eligible agent (labels role=web, max_per_host 2)`."""


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


def pending_reason(spec: PlacementSpec) -> str:
    """Why ids stay unplaced, naming only the constraints that are set."""
    constraints = []
    if spec.labels:
        labels = ",".join(f"{key}={value}" for key, value in sorted(spec.labels.items()))
        constraints.append(f"labels {labels}")
    if spec.max_per_host:
        constraints.append(f"max_per_host {spec.max_per_host}")
    if not constraints:
        return NO_ELIGIBLE_AGENT
    return f"{NO_ELIGIBLE_AGENT} ({', '.join(constraints)})"


def place(
    demand: Mapping[str, WatcherDemand], agents: Sequence[AgentView], current: Current
) -> Placement:
    """Place the worker ids of every watcher on the agents.

    `current` may name hosts that are not in `agents`; their ids are placed
    elsewhere, as for a gone host. A worker id running on two hosts stays on
    the one with the smallest host id that may keep it.
    """
    fleet = _fleet(agents)
    hosts: dict[str, dict[str, tuple[int, ...]]] = {}
    pending: dict[str, Pending] = {}
    for watcher in sorted(demand):
        wanted = demand[watcher]
        if wanted.placement.mode == "each" and not wanted.singleton:
            where, unplaced = _place_each(watcher, wanted, fleet, current)
        else:
            where, unplaced = _place_spread(watcher, wanted, fleet, current)
        if unplaced:
            pending[watcher] = Pending(unplaced, pending_reason(wanted.placement))
        for host, wids in where.items():
            if wids:
                hosts.setdefault(host, {})[watcher] = tuple(sorted(wids))
    return _placement(hosts, pending)


def rebalance(
    name: str,
    demand: Mapping[str, WatcherDemand],
    agents: Sequence[AgentView],
    current: Current,
) -> Placement:
    """`place`, then even out the spread watcher `name` over its eligible agents.

    The fewest ids move: the hosts with the most keep the larger shares, each
    host above its share gives its highest ids, and the hosts below their
    share take them in host id order. Other watchers, and ids on agents that
    are down, stay as `place` left them. An "each" watcher is already even.
    """
    base = place(demand, agents, current)
    wanted = demand.get(name)
    if wanted is None or (wanted.placement.mode == "each" and not wanted.singleton):
        return base
    eligible = _eligible(_fleet(agents).values(), wanted.placement)
    if not eligible:
        return base
    load = {host: list(base.wids(host, name)) for host in eligible}
    total = sum(len(wids) for wids in load.values())
    share, extra = divmod(total, len(eligible))
    by_load = sorted(eligible, key=lambda host: (-len(load[host]), host))
    target = {host: share + (1 if rank < extra else 0) for rank, host in enumerate(by_load)}
    moving: list[int] = []
    for host in eligible:
        surplus = len(load[host]) - target[host]
        if surplus > 0:
            moving += load[host][-surplus:]
            load[host] = load[host][:-surplus]
    handed = iter(moving)
    for host in eligible:
        while len(load[host]) < target[host]:
            load[host].append(next(handed))
    hosts = {host: dict(by) for host, by in base.hosts.items()}
    for host in eligible:
        if load[host]:
            hosts.setdefault(host, {})[name] = tuple(sorted(load[host]))
        elif host in hosts:
            hosts[host].pop(name, None)
    return _placement({h: by for h, by in hosts.items() if by}, dict(base.pending))


def _fleet(agents: Iterable[AgentView]) -> dict[str, AgentView]:
    """The agents by host id, in host id order (the first of duplicates wins)."""
    fleet: dict[str, AgentView] = {}
    for agent in agents:
        fleet.setdefault(agent.host_id, agent)
    return dict(sorted(fleet.items()))


def _eligible(agents: Iterable[AgentView], spec: PlacementSpec) -> list[str]:
    """Host ids, in order, that may get new ids of a watcher placed by `spec`."""
    return [agent.host_id for agent in agents if agent.ready and agent.has_labels(spec.labels)]


def _keepers(fleet: Mapping[str, AgentView], spec: PlacementSpec) -> list[str]:
    """Host ids, in order, that may keep the ids they run: not gone, labels still match."""
    return [
        host for host, agent in fleet.items()
        if agent.state != GONE and agent.has_labels(spec.labels)
    ]  # fmt: skip


def _running(current: Current, host: str, watcher: str) -> list[int]:
    return sorted(current.get(host, {}).get(watcher, frozenset()))


def _place_spread(
    watcher: str, wanted: WatcherDemand, fleet: Mapping[str, AgentView], current: Current
) -> tuple[dict[str, set[int]], int]:
    """ids 1..count over the fleet; returns host -> ids and how many stay unplaced."""
    count = max(0, wanted.count)
    if wanted.singleton:
        count = min(count, 1)
    limit = wanted.placement.max_per_host or count
    where: dict[str, set[int]] = {}
    placed: set[int] = set()
    for host in _keepers(fleet, wanted.placement):
        kept = [wid for wid in _running(current, host, watcher) if wid <= count and wid > 0]
        kept = [wid for wid in kept if wid not in placed][:limit]
        where[host] = set(kept)
        placed.update(kept)
    missing = [wid for wid in range(1, count + 1) if wid not in placed]
    # The least loaded eligible host with room first, ties by host id.
    room = [
        (len(where.get(host, ())), host)
        for host in _eligible(fleet.values(), wanted.placement)
        if len(where.get(host, ())) < limit
    ]
    heapq.heapify(room)
    for index, wid in enumerate(missing):
        if not room:
            return where, len(missing) - index
        load, host = heapq.heappop(room)
        where.setdefault(host, set()).add(wid)
        if load + 1 < limit:
            heapq.heappush(room, (load + 1, host))
    return where, 0


def _place_each(
    watcher: str, wanted: WatcherDemand, fleet: Mapping[str, AgentView], current: Current
) -> tuple[dict[str, set[int]], int]:
    """count ids on every eligible host, unique across the fleet; keepers keep theirs."""
    count = max(0, wanted.count)
    per_host = min(count, wanted.placement.max_per_host or count)
    where: dict[str, set[int]] = {}
    placed: set[int] = set()
    for host in _keepers(fleet, wanted.placement):
        kept = [wid for wid in _running(current, host, watcher) if wid > 0 and wid not in placed]
        where[host] = set(kept[:per_host])
        placed.update(where[host])
    eligible = _eligible(fleet.values(), wanted.placement)
    free = _free_wids(placed)
    for host in eligible:
        mine = where.setdefault(host, set())
        while len(mine) < per_host:
            mine.add(next(free))
    unplaced = (count - per_host) * len(eligible)
    if not eligible and not placed:
        unplaced = count
    return where, unplaced


def _free_wids(taken: set[int]) -> Iterator[int]:
    """1, 2, 3... without the ids in `taken`."""
    wid = 0
    while True:
        wid += 1
        if wid not in taken:
            yield wid


def _placement(
    hosts: Mapping[str, Mapping[str, tuple[int, ...]]], pending: dict[str, Pending]
) -> Placement:
    return Placement(
        hosts=MappingProxyType(
            {host: MappingProxyType(dict(sorted(by.items()))) for host, by in sorted(hosts.items())}
        ),
        pending=MappingProxyType(dict(sorted(pending.items()))),
    )
