"""Agents' sessions, as the controller applies them: hello, messages, goodbye, silence.

The AgentService (agent_service.py) decodes what agents send and calls these hooks;
they keep each agent's record, screen its reports (containment.py), file its events and
output lines, and tell the scheduler and the rollout driver when the world changed.
Whether agents are down or lost, and what to record about it, is decided by
liveness.check; the refusal warnings by containment.announce; how often agents
heartbeat, from the size of the fleet, by heartbeats.py (told in the Welcome, and again
in a new Welcome when the fleet grew or shrank enough).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stack.controller import heartbeats, liveness
from stack.controller.agents import AgentRecord, AgentSession
from stack.controller.containment import Entitlement, announce, screen
from stack.spec.observed import Observed
from stack.spec.reports import Severity
from stack.spec.session import (
    AgentMessage,
    EventBatch,
    Hello,
    LogBatch,
    Reloading,
    TailReply,
    Welcome,
)

if TYPE_CHECKING:
    from stack.controller.controller import Controller

log = logging.getLogger(__name__)


class AgentSessions:
    """The controller's side of every agent session (the AgentService's hooks)."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller
        self.announced_lost: frozenset[str] = frozenset()
        """Agents an agent_lost event was recorded for (while they stay lost)."""
        settings = controller.settings  # frozen: what follows from it is made once
        self.cadence = heartbeats.Cadence(
            settings.heartbeat_interval, settings.agent_timeout, settings.max_heartbeats
        )
        self.timeouts = liveness.Timeouts(
            settings.agent_timeout, settings.reschedule_after, self.cadence
        )
        self.heartbeat = self.cadence.base
        """The heartbeat interval for the fleet as the last check counted it."""

    def reset(self) -> None:
        """Forget what was announced (leadership ended)."""
        self.announced_lost = frozenset()

    @property
    def stopping(self) -> bool:
        return self._c.stopping

    def redirect(self) -> str | None:
        """None while this controller leads; else where agents should go ("" if unknown)."""
        return None if self._c.leading else self._c.leader_address

    def agent_connected(self, hello: Hello, peer: str) -> AgentSession:
        c = self._c
        before = c.agents.records.get(hello.host_id)
        reloaded = before is not None and before.reloading and before.ready
        session = c.agents.connect(hello, peer)
        record = c.agents.records[hello.host_id]
        record.observed = self._screen(record, hello.observed)
        c.metrics.reported(record.host_id, record.observed)
        if reloaded:  # its own agent_reloaded event says so (nothing went down)
            log.info("agent %s is back from its reload", hello.host_id)
        else:
            log.info("agent %s connected from %s", hello.host_id, peer)
            c.events.record("agent_up", f"agent {hello.host_id} connected")
        self._welcome(record, session, self.heartbeat)
        c.scheduler.reschedule_soon()
        return session

    def agent_message(self, session: AgentSession, message: AgentMessage | None) -> None:
        c = self._c
        record, came_back = c.agents.heard(session)
        if record is None:
            return
        if came_back:
            c.events.record("agent_up", f"agent {record.host_id} is back")
        now = c.clock()
        if isinstance(message, Observed):
            before = record.placement_key()
            record.observed = self._screen(record, message)
            c.metrics.reported(record.host_id, record.observed)
            c.rollouts.reported()
            # A mere heartbeat (same workers in the same states) changes no placement.
            if came_back or record.placement_key() != before:
                c.scheduler.reschedule_soon()
        elif isinstance(message, EventBatch):
            events = c.events.admit(record.host_id, message.events, now)
            record.meter.refusals.dropped_events += len(message.events) - len(events)
            for event in events:
                c.events.add_from_agent(record.host_id, event)
        elif isinstance(message, LogBatch):
            kept = record.meter.lines(message.lines, now)
            c.metrics.lines(record.host_id, len(kept))
            c.logs.publish(kept)
        elif isinstance(message, TailReply):
            c.logs.deliver(message, record.host_id)
        elif isinstance(message, Reloading):
            log.info("agent %s re-executes itself in place", record.host_id)
            record.reloading = True
        elif came_back:
            c.scheduler.reschedule_soon()
        self._announce_refusals(record, now)

    def agent_disconnected(self, session: AgentSession) -> None:
        c = self._c
        if c.agents.disconnect(session):
            log.info("agent %s disconnected", session.host_id)
            c.events.record(
                "agent_down",
                f"agent {session.host_id} disconnected",
                severity=Severity.WARNING,
            )
            c.logs.host_gone(session.host_id)
            c.scheduler.reschedule_soon()
        elif (record := c.agents.records.get(session.host_id)) and record.session is None:
            c.logs.host_gone(session.host_id)  # reloading: its tail replies will not come

    def _welcome(self, record: AgentRecord, session: AgentSession, interval: float) -> None:
        """Tell `record`'s agent (again) to heartbeat every `interval` seconds."""
        c = self._c
        record.longer_heartbeat, record.longer_heartbeat_until = heartbeats.shortened(
            record.heartbeat,
            record.longer_heartbeat,
            record.longer_heartbeat_until,
            c.clock(),
            interval,
            self.cadence,
        )
        record.heartbeat = interval
        session.send(Welcome(c.settings.controller_id, c.term, interval), c.term)

    def retell_heartbeats(self, every: float) -> None:
        """Decide the heartbeat interval from the ready agents counted now, and tell it
        to the ready ones told one too far from it (one that is down is told when it is
        back): as many as the fleet may heartbeat in `every`
        seconds (this is called that often), so that a new interval makes no burst."""
        cadence = self.cadence
        records = self._c.agents.records
        self.heartbeat = cadence.interval(sum(1 for r in records.values() if r.ready))
        budget = max(1, int(cadence.max_rate * every))
        told = (
            (r.host_id, r.heartbeat)
            for r in records.values()
            if r.ready and r.session is not None
        )
        for host_id in heartbeats.to_retell(told, self.heartbeat, budget):
            record = records[host_id]
            if record.session is not None:
                self._welcome(record, record.session, self.heartbeat)

    def check_liveness(self, every: float = 0.5) -> None:
        """Mark down the agents silent for longer than their timeout, announce the lost
        ones, end the warm-up when due, and reschedule when any of it changes placement
        (see liveness.check); then tell agents a new heartbeat interval if the fleet
        changed enough (retell_heartbeats). Called every `every` seconds."""
        c = self._c
        now = c.clock()
        timeouts = self.timeouts
        found = liveness.check(
            c.agents.records.values(),
            now,
            timeouts,
            announced_lost=self.announced_lost,
            warm_until=c.scheduler.warm_until,
            hold_until=c.scheduler.hold_until,
        )
        for host_id in found.silent:
            allowed = liveness.silence_allowed(c.agents.records[host_id], now, timeouts)
            log.warning("agent %s silent for %.1fs: down", host_id, allowed)
            c.agents.mark_down(host_id, now)
        for note in found.notes:
            c.events.note(note)
        for host_id in found.silent:
            c.logs.host_gone(host_id)
        self.announced_lost = found.lost
        for record in c.agents.records.values():
            self._announce_refusals(record, now)
        if found.warmed:
            c.scheduler.warm_until = 0.0
        if found.released:
            c.scheduler.release()
        if found.reschedule(c.scheduler.lost):
            c.scheduler.reschedule()
        self.retell_heartbeats(every)

    def _screen(self, record: AgentRecord, observed: Observed) -> Observed:
        """What the controller keeps of an agent's report (see containment.screen)."""
        c = self._c
        screened = screen(observed, self._entitlement(record), c.settings.agent_limits)
        refusals = record.meter.refusals
        if screened.refused:
            refusals.refused_reports += 1
        else:
            refusals.ignored_processes += screened.ignored
        record.reported = {(p.watcher, p.wid) for p in screened.observed.processes}
        return screened.observed

    def _entitlement(self, record: AgentRecord) -> Entitlement:
        """Which workers `record`'s host may report: those an Assignment gave it, and
        those no host runs for this controller yet that it could be given (after a
        controller restart, agents report what they run before anything is placed)."""
        c = self._c
        where = c.scheduler.placed_where()
        labels = record.labels
        unassigned_each: dict[str, int] = {}
        """watcher -> the workers of an "each" watcher taken from this report unassigned."""

        def may_run(watcher: str, wid: int) -> bool:
            desired = c.state.watchers.get(watcher)
            if desired is None:
                return False
            if wid in record.assigned.get(watcher, ()) or (wid == 0 and watcher in record.assigned):
                return True
            spec = desired.spec
            if not all(labels.get(key) == value for key, value in spec.placement.labels.items()):
                return False
            if wid == 0:
                return True
            # Not while the host it is placed on runs it (a claim of another's worker).
            owner = c.agents.records.get(where.get((watcher, wid), record.host_id))
            if not (owner is None or owner is record or (watcher, wid) not in owner.reported):
                return False
            if spec.placement.mode == "each" and not spec.singleton:
                # Its worker ids are unique in the fleet (h2 runs worker 2 of one per
                # host): any id may be this host's, up to its count on one host.
                per_host = min(spec.numprocesses, spec.placement.max_per_host or spec.numprocesses)
                taken = unassigned_each.get(watcher, 0)
                unassigned_each[watcher] = taken + 1
                return taken < per_host
            return 1 <= wid <= spec.numprocesses

        return may_run

    def _announce_refusals(self, record: AgentRecord, now: float) -> None:
        """Record the `agent_refused` event containment.announce asks for, if any."""
        told = announce(
            record.host_id,
            record.meter.refusals,
            record.announced_refusals,
            record.refusals_announced_at,
            now,
        )
        if told is None:
            return
        record.announced_refusals = told.counts
        record.refusals_announced_at = told.next_at
        if told.note is not None:
            self._c.events.note(told.note)
