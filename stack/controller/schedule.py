"""Scheduling decisions: where every worker runs, and what each host is sent. Pure.

The controller's scheduler (scheduler.py) gathers the world — the desired state, what
each agent reports, the placement it made last, which agents are lost, whether it is
still warming up after taking over — and calls `plan`; the answer is a new placement
and one Assignment per ready host, which the scheduler sends where it changed. Nothing
here reads a clock, a socket or the store, so every rule is a table test away.

What a host holds is what was placed there, else what it reports (see `holdings`), so
a worker id queued to an agent that has not started it yet does not move. A down agent
keeps its share until it has been down for reschedule_after (then it is lost); a drained
one keeps each process until its replacement runs elsewhere, and stops at once what has
nowhere else to go (`handoff`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stack.controller.agents import AgentRecord
from stack.controller.assignments import build_assignment, resting_of, resting_watchers
from stack.controller.desired import DesiredState
from stack.controller.placement import DOWN, GONE, READY, AgentView, Placement, place, rebalance
from stack.spec.assignment import Assignment
from stack.spec.observed import ProcessState

RESCHEDULE_WINDOW = 0.05
"""Seconds of agent messages gathered into one reschedule, at least."""
RESCHEDULE_SHARE = 0.2
"""The share of the controller's time reschedules may take while agent messages keep
coming: a pass that took t seconds is followed by a window of t * (1 - share) / share."""
MAX_RESCHEDULE_WINDOW = 2.0
"""Seconds of agent messages gathered into one reschedule, at most."""

Holdings = dict[str, dict[str, frozenset[int]]]
"""host id -> watcher -> worker ids it holds now."""


@dataclass(frozen=True)
class Plan:
    """What to do after a change of the world."""

    placement: Placement
    assignments: Mapping[str, Assignment]
    """host id -> its whole share, for every ready host with a session."""
    hold: Hold | None = None
    """The hold after a takeover as it stands after this plan (None: none)."""
    state: DesiredState | None = None
    """The desired state the Assignments were built from (None: not recorded)."""
    term: int = 0
    """The fencing token they carry."""
    resting: frozenset[str] = frozenset()
    """The watchers every host its labels allow keeps with no worker (see resting_here)."""


@dataclass(frozen=True)
class Hold:
    """What a new leader keeps in place after its warm-up, until reschedule_after has
    passed since it took over: the workers no agent reported by then may run on a host
    that is down across the takeover, which keeps its share that long, as it would have
    with the old leader. Workers added since the takeover are placed at once."""

    counts: Mapping[str, int]
    """watcher -> numprocesses when the desired state was loaded: ids above it did not
    exist then, so no silent host runs them. A `mode = "each"` watcher is not held (a
    host nobody heard of is given none of its ids)."""
    ids: frozenset[tuple[str, int]] | None = None
    """(watcher, wid) of the counts reported by no agent at the first placement after
    the warm-up (None until then), whether or not any agent was back by then."""

    @staticmethod
    def of(state: DesiredState) -> Hold:
        """The hold of a controller that loaded `state`."""
        return Hold(
            {
                name: w.spec.numprocesses
                for name, w in state.watchers.items()
                if w.spec.placement.mode != "each" or w.spec.singleton
            }
        )


def window(cost: float) -> float:
    """Seconds to gather agent messages before the next reschedule, after one that took
    `cost` seconds: RESCHEDULE_WINDOW while passes are cheap (a small fleet), longer as
    they grow with the fleet, so that a storm of agents joining is placed in a few passes
    and the controller keeps most of its time for their streams."""
    stretched = cost * (1 - RESCHEDULE_SHARE) / RESCHEDULE_SHARE
    return min(MAX_RESCHEDULE_WINDOW, max(RESCHEDULE_WINDOW, stretched))


def lost_hosts(
    records: Iterable[AgentRecord], now: float, reschedule_after: float
) -> frozenset[str]:
    """Hosts down for at least `reschedule_after` seconds at monotonic `now`: their share
    belongs elsewhere."""
    return frozenset(
        r.host_id for r in records if not r.ready and now - r.down_since >= reschedule_after
    )


def agent_state(record: AgentRecord, drained: frozenset[str], lost: frozenset[str]) -> str:
    """READY, DOWN (keeps its share for now) or GONE (its share moves)."""
    if record.host_id in drained or record.host_id in lost:
        return GONE
    return READY if record.ready else DOWN


def views(
    records: Sequence[AgentRecord], state: DesiredState, lost: frozenset[str]
) -> list[AgentView]:
    """What placement reads of each agent."""
    return [AgentView(r.host_id, agent_state(r, state.drained, lost), r.labels) for r in records]


def holdings(records: Sequence[AgentRecord], placement: Placement) -> Holdings:
    """What each host holds now: what was placed there, else (after a restart or a return
    from the dead) what it reports running, less what another host was given meanwhile
    and runs: a returning host stops its surplus, the takeover keeps running."""
    owner = {
        (watcher, wid): record.host_id
        for record in records
        for watcher, wids in record.wids().items()
        for wid in wids
        if wid in placement.wids(record.host_id, watcher)
    }
    current: Holdings = {}
    for record in records:
        host_id = record.host_id
        placed = placement.hosts.get(host_id, {})
        reported = record.wids()
        current[host_id] = {
            watcher: frozenset(placed[watcher])
            if watcher in placed
            else frozenset(
                wid for wid in reported[watcher] if owner.get((watcher, wid), host_id) == host_id
            )
            for watcher in {*placed, *reported}
        }
    return current


def only_reported(
    placement: Placement, state: DesiredState, records: Iterable[AgentRecord]
) -> Placement:
    """`placement` less the processes of active watchers that no agent reports yet.

    Just after a controller takes over with a stored stack, agents are still
    reconnecting: placing missing workers before every agent has said what it runs
    would start duplicates and then stop the originals. Until the warm-up is over,
    each agent keeps exactly what it reports.
    """
    reported = {record.host_id: record.wids() for record in records}
    hosts = {
        host_id: {
            watcher: wids
            if not state.watchers[watcher].active
            else tuple(w for w in wids if w in reported.get(host_id, {}).get(watcher, ()))
            for watcher, wids in by_watcher.items()
        }
        for host_id, by_watcher in placement.hosts.items()
    }
    return Placement(hosts=hosts, pending=placement.pending)


def reported_ids(records: Iterable[AgentRecord]) -> frozenset[tuple[str, int]]:
    """(watcher, wid) some agent reports."""
    return frozenset(
        (watcher, wid)
        for record in records
        for watcher, wids in record.wids().items()
        for wid in wids
    )


def restrain(
    intended: Placement,
    state: DesiredState,
    records: Sequence[AgentRecord],
    *,
    warming: bool,
    hold: Hold | None,
) -> tuple[Placement, Hold | None]:
    """What of `intended` may be sent out now, just after a takeover: during the warm-up
    only what agents report (`only_reported`), then, while `hold` lasts, nothing in
    place of what a silent host may still run. Every placement goes through here."""
    if warming:
        return only_reported(intended, state, records), hold
    if hold is None:
        return intended, None
    reported = reported_ids(records)
    if hold.ids is None:
        # From the counts, not from `intended`: with no agent back yet, nothing is placed.
        ids = frozenset(
            (watcher, wid)
            for watcher, count in hold.counts.items()
            if watcher in state.watchers and state.watchers[watcher].active
            for wid in range(1, count + 1)
            if (watcher, wid) not in reported
        )
        hold = Hold(hold.counts, ids)
    assert hold.ids is not None
    held = hold.ids - reported
    hosts = {
        host_id: {
            watcher: tuple(w for w in wids if (watcher, w) not in held)
            for watcher, wids in by_watcher.items()
        }
        for host_id, by_watcher in intended.hosts.items()
    }
    return Placement(hosts=hosts, pending=intended.pending), hold


def handoff(
    draining: AgentRecord, ready: Iterable[AgentRecord], intended: Placement
) -> dict[str, frozenset[int]]:
    """The drained host's processes whose replacement is placed elsewhere in `intended`
    (the placement before a warm-up kept only what agents report) and does not run there
    yet. A process with nowhere else to go (of a `mode = "each"` watcher, or with no room
    left under `max_per_host` or the labels) stops at once: its replacement would never
    come, and the host would never be drained."""
    placed_elsewhere = {
        (watcher, wid)
        for host, by_watcher in intended.hosts.items()
        if host != draining.host_id
        for watcher, wids in by_watcher.items()
        for wid in wids
    }
    running_elsewhere = {
        (proc.watcher, proc.wid)
        for record in ready
        if record.host_id != draining.host_id
        for proc in record.observed.processes
        if proc.state == ProcessState.RUNNING
    }
    keep: dict[str, set[int]] = {}
    for proc in draining.observed.processes:
        key = (proc.watcher, proc.wid)
        if proc.pid and key in placed_elsewhere and key not in running_elsewhere:
            keep.setdefault(proc.watcher, set()).add(proc.wid)
    return {watcher: frozenset(wids) for watcher, wids in keep.items()}


def assignments(
    state: DesiredState,
    placement: Placement,
    ready: Sequence[AgentRecord],
    term: int,
    intended: Placement | None = None,
    last: Plan | None = None,
) -> dict[str, Assignment]:
    """Each ready host's Assignment under fencing token `term`; `intended` is the
    placement before a warm-up kept only what agents report (`placement` if None).

    An Assignment depends on the desired state, the term, the host's share, its handoff
    (a drained host's) and the resting watchers: where none of these changed since the
    `last` plan, its Assignment is that plan's, the same object (agents joining a large
    fleet change no other host's share, and building every host's anew each time made
    a join storm quadratic)."""
    intended = placement if intended is None else intended
    resting = resting_watchers(state, placement)
    reusable = (
        last is not None
        and last.state is state
        and last.term == term
        and not resting
        and not last.resting
    )
    built: dict[str, Assignment] = {}
    for record in ready:
        host_id = record.host_id
        if reusable and host_id not in state.drained:
            assert last is not None
            before = last.assignments.get(host_id)
            if before is not None and last.placement.hosts.get(host_id) == placement.hosts.get(
                host_id
            ):
                built[host_id] = before
                continue
        built[host_id] = build_assignment(
            state,
            placement,
            host_id,
            term,
            handoff(record, ready, intended) if host_id in state.drained else None,
            resting_of(resting, state, record.labels),
        )
    return built


def plan(
    state: DesiredState,
    records: Sequence[AgentRecord],
    placement: Placement,
    *,
    lost: frozenset[str],
    warming: bool,
    term: int,
    hold: Hold | None = None,
    last: Plan | None = None,
) -> Plan:
    """Place anew and build every ready host's Assignment.

    `records` are every known agent in host id order, `placement` the last one made,
    `lost` the agents down past reschedule_after, `warming` whether the controller is
    still giving agents their time to report after taking over, `hold` what it keeps in
    place after that (see `restrain`); `last` the plan made last, whose Assignments are
    kept where nothing they depend on changed (see `assignments`).
    """
    intended = place(state.demand(), views(records, state, lost), holdings(records, placement))
    placed, hold = restrain(intended, state, records, warming=warming, hold=hold)
    return _plan(state, placed, records, term, intended, hold, last)


def _plan(
    state: DesiredState,
    placed: Placement,
    records: Sequence[AgentRecord],
    term: int,
    intended: Placement,
    hold: Hold | None,
    last: Plan | None,
) -> Plan:
    built = assignments(state, placed, ready_of(records), term, intended, last)
    return Plan(placed, built, hold, state, term, resting_watchers(state, placed))


def rebalanced(
    watcher: str,
    state: DesiredState,
    records: Sequence[AgentRecord],
    placement: Placement,
    *,
    lost: frozenset[str],
    term: int,
    warming: bool = False,
    hold: Hold | None = None,
    last: Plan | None = None,
) -> tuple[Plan, int]:
    """Spread `watcher` evenly again: the new plan, and how many of its processes move.
    Just after a takeover it is restrained as every placement is (see `restrain`)."""
    intended = rebalance(
        watcher, state.demand(), views(records, state, lost), holdings(records, placement)
    )
    placed, hold = restrain(intended, state, records, warming=warming, hold=hold)
    moved = sum(
        len(set(placed.wids(host, watcher)) - set(placement.wids(host, watcher)))
        for host in placed.hosts
    )
    return _plan(state, placed, records, term, intended, hold, last), moved


def ready_of(records: Iterable[AgentRecord]) -> list[AgentRecord]:
    """The ready agents with a live session."""
    return [r for r in records if r.ready and r.session is not None]


def placed_ids(placement: Placement) -> dict[str, set[int]]:
    """watcher -> every worker id placed on some host."""
    placed: dict[str, set[int]] = {}
    for by_watcher in placement.hosts.values():
        for watcher, wids in by_watcher.items():
            placed.setdefault(watcher, set()).update(wids)
    return placed


def placed_where(placement: Placement) -> dict[tuple[str, int], str]:
    """(watcher, wid) -> the host it is placed on."""
    return {
        (watcher, wid): host
        for host, by_watcher in placement.hosts.items()
        for watcher, wids in by_watcher.items()
        for wid in wids
    }
