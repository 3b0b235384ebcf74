"""The controller: desired state, agents and placement tied together.

It owns the one copy of the desired state in memory, writes every change to
the store before answering, recomputes placement whenever the desired state or
the fleet changes, and queues a new Assignment to each host whose share
changed. The gRPC servicers (admin.py, agents.py) are thin edges over it.
All methods run on the event loop, store commits included (see `_change`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import stack
from stack.controller import desired as d
from stack.controller.agents import AgentRecord, AgentRegistry, AgentSession
from stack.controller.assignments import build_assignment
from stack.controller.containment import Entitlement, screen
from stack.controller.errors import (
    Conflict,
    FencedOut,
    InvalidArgument,
    NotFound,
    NotLeader,
    Unavailable,
    unknown_watcher,
)
from stack.controller.events import EventLog
from stack.controller.logs import LogHub, merge
from stack.controller.placement import AgentView, Placement, place, rebalance
from stack.controller.rollout import Seen, advance
from stack.controller.settings import ControllerSettings
from stack.controller.store.base import EVENT_WRITE_OPS, StaleTerm, Store, StoreError
from stack.controller.viewers import FollowSlots, newest_within
from stack.security.local import UNIX
from stack.spec.diff import Change
from stack.spec.errors import SpecError
from stack.spec.load import load_stack, parse_signal
from stack.spec.observed import Health, ProcessState
from stack.spec.pending import pending_options
from stack.spec.secrets import exposures
from stack.v1 import admin_pb2, agent_pb2, types_pb2

log = logging.getLogger(__name__)

REFUSALS_EVERY = 10.0
"""Seconds between two `agent_refused` events about one agent at most."""
REFUSAL_LABELS = {
    "ignored_processes": "reports of workers not assigned to it ignored",
    "refused_reports": "reports of too many processes refused",
    "dropped_log_lines": "output lines over its caps dropped",
}
"""The counts of containment.Refusals an `agent_refused` event tells, and how they read
(dropped events have their own `events_dropped` event, see events.py)."""

RESCHEDULE_WINDOW = 0.05
"""Seconds of agent messages gathered into one reschedule (see Controller.reschedule_soon)."""
EVENTS_FLUSH_TIMEOUT = 2.0
"""Seconds the event writer may spend writing what is left when the controller stops."""


@dataclass(frozen=True)
class Applied:
    """What an apply did."""

    changes: list[Change]
    """The differences found (applied unless dry run)."""
    applied: bool
    """False for a dry run or when nothing changed."""
    generation: int
    """The desired state's generation afterwards."""
    warnings: list[str]
    """Choices of the file worth a second look (see stack.spec.secrets.exposures), and
    options the agents do not act on yet (stack.spec.pending)."""


class Cluster(Protocol):
    """The group of controllers this one belongs to (see ha.py)."""

    async def describe(self) -> admin_pb2.ControllersReply: ...


class Controller:
    """One controller's state and behaviour, without the gRPC plumbing."""

    def __init__(self, settings: ControllerSettings, store: Store, term: int) -> None:
        self.settings = settings
        self.store = store
        self.term = term
        """The fencing token: the store's term acquired at start."""
        self.state = d.DesiredState()
        self.placement = Placement()
        self.agents = AgentRegistry(settings.agent_queue, settings.agent_limits)
        self.events = self._new_event_log()
        self.logs = LogHub(settings.follower_queue, settings.viewer_limits.follower_bytes)
        self.follows = FollowSlots(settings.viewer_limits.max_follows)
        self._write_lock = asyncio.Lock()
        self._stopping = False
        self._warm_until = 0.0
        self._reschedule_handle: asyncio.TimerHandle | None = None
        self._lost: frozenset[str] = frozenset()
        """Agents down past reschedule_after at the last placement."""
        self._announced_lost: frozenset[str] = frozenset()
        """Agents for which an agent_lost event was recorded (while they stay lost)."""
        self.leading = True
        """False while another controller leads (this one redirects to `leader_address`)."""
        self.leader_address = ""
        """The leader's advertised HOST:PORT as last known; "" during an election."""
        self.fenced = asyncio.Event()
        """Set when a store write found a newer leader: this one must step down."""
        self.cluster: Cluster | None = None
        """The other controllers (HA on etcd); None with the embedded store."""
        self._events_failing = False
        """The last event write failed (logged once until one succeeds)."""
        self._rollout_wake = asyncio.Event()
        self._placed_for: Placement | None = None
        self._placed_cache: dict[tuple[str, int], str] = {}
        self._running_since: dict[tuple[str, int, int], float] = {}
        """(watcher, wid, pid) of rollout batch processes -> when first seen running."""

    @property
    def stopping(self) -> bool:
        """True once `shut_down` ran."""
        return self._stopping

    def shut_down(self) -> None:
        """End every agent session and follower stream, so their RPCs return on their own.

        Agents keep their workers and reconnect to the next controller.
        """
        self._stopping = True
        for record in self.agents.records.values():
            if record.session is not None:
                record.session.close()
        self.logs.fanout.close()
        self.events.fanout.close()

    # ---- leadership ----

    def require_leader(self) -> None:
        """NotLeader (naming the leader) unless this controller leads."""
        if not self.leading or self._stopping:
            raise NotLeader(self.leader_address)

    async def lead(self, term: int) -> None:
        """Take over with fencing token `term`: read the desired state afresh and give
        every agent one agent timeout to reconnect before anything is placed anew."""
        self.term = term
        self.fenced.clear()
        await self.load()  # with a stored stack, agents get one timeout to report first
        self.leader_address = self.settings.advertise
        self.leading = True
        self.events.record("leader", f"{self.settings.controller_id} leads (token {term})")
        log.info("leading with fencing token %d", term)

    def step_down(self, leader: str = "") -> None:
        """Stop leading: agents and followers are sent away (to the new leader)."""
        if not self.leading:
            self.leader_address = leader
            return
        log.warning("stepping down%s", f": {leader} leads" if leader else "")
        self.leading = False
        self.leader_address = leader
        for record in self.agents.records.values():
            if record.session is not None:
                record.session.close()
        self.agents = AgentRegistry(self.settings.agent_queue, self.settings.agent_limits)
        self.placement = Placement()
        self.logs.fanout.close()
        self.events.fanout.close()
        self.logs = LogHub(self.settings.follower_queue, self.settings.viewer_limits.follower_bytes)
        self.events = self._new_event_log()
        self._lost = self._announced_lost = frozenset()
        self._running_since.clear()
        if self._reschedule_handle is not None:
            self._reschedule_handle.cancel()
            self._reschedule_handle = None

    async def controllers(self) -> admin_pb2.ControllersReply:
        """Every controller, which one leads, and the store's health."""
        if self.cluster is not None:
            return await self.cluster.describe()
        settings = self.settings
        address = settings.advertise or settings.listen or f"{UNIX}{settings.socket_path}"
        reply = admin_pb2.ControllersReply(
            leader_address=address,
            fencing_token=self.term,
            store="sqlite",
            answered_by=settings.controller_id,
        )
        reply.controllers.append(
            admin_pb2.ControllerInfo(
                controller_id=settings.controller_id,
                address=address,
                leader=True,
                version=stack.__version__,
            )
        )
        reply.members.append(admin_pb2.StoreMember(endpoint=str(settings.store_path), healthy=True))
        return reply

    def _new_event_log(self) -> EventLog:
        return EventLog(self.settings.events, self.settings.follower_queue)

    async def load(self) -> None:
        """Read the desired state and the event history from the store."""
        records = await asyncio.to_thread(self.store.load, d.PREFIX)
        self.state = d.decode(records)
        await self._load_events()
        if self.state.watchers:
            self._warm_until = time.monotonic() + self.settings.agent_timeout
        log.info(
            "desired state loaded: %d watchers, generation %d, term %d",
            len(self.state.watchers),
            self.state.generation,
            self.term,
        )

    async def _load_events(self) -> None:
        """Continue the stored event history, after reserving event numbers in the store:
        should this controller die before writing its first events, the next one will
        not give their numbers again."""
        stored = await asyncio.to_thread(self.store.load_events)
        events = self._new_event_log()
        events.restore(stored)
        await asyncio.to_thread(self.store.write_events, self.term, events.take_write(0))
        self.events.fanout.close()
        self.events = events
        log.info("event history loaded: %d events, next number %d", len(stored.records),
                 events.next_seq)  # fmt: skip

    async def _write_events(self) -> None:
        """Run while leading: write the event history to the store in batches, at most
        `store_rate` operations a second, and what is left when the controller stops.

        Not when leadership is lost: stepping down must not wait for the store (and a
        newer leader's fencing would refuse the write anyway)."""
        settings = self.settings.events
        per_batch = max(1, int(settings.store_rate * settings.write_interval))
        try:
            while True:
                await asyncio.sleep(settings.write_interval)
                self.events.tick(time.monotonic())
                await self._save_events(per_batch)
        finally:
            if self._stopping:
                await self._flush_events()

    async def _flush_events(self) -> None:
        """Write what the store still lacks of the history, for EVENTS_FLUSH_TIMEOUT at most."""
        try:
            async with asyncio.timeout(EVENTS_FLUSH_TIMEOUT):
                await self._save_events(2 * self.events.pending() + 1)
        except TimeoutError:
            log.warning("%d event changes were not written", self.events.pending())

    async def _save_events(self, budget: int) -> None:
        """Write up to `budget` operations of the history, in transactions of at most
        EVENT_WRITE_OPS; stops at the first failure (the rest waits for the next round)."""
        events = self.events
        while budget > 0 and events.pending():
            write = events.take_write(min(budget, EVENT_WRITE_OPS) - 1)
            budget -= len(write)
            try:
                await asyncio.to_thread(self.store.write_events, self.term, write)
            except (StoreError, asyncio.CancelledError) as exc:
                events.failed(write)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if isinstance(exc, StaleTerm):
                    self.fenced.set()
                if not self._events_failing:
                    log.warning("cannot write events to the store (will retry): %s", exc)
                self._events_failing = True
                return
            if self._events_failing:
                log.info("writing events to the store again")
                self._events_failing = False

    # ---- changes to the desired state ----

    async def _change(self, transition: Callable[[d.DesiredState], d.DesiredState]) -> bool:
        """Apply a transition, persist it, then push Assignments. False when nothing changed.

        The write runs as a task of its own that the caller awaits: an RPC cancelled
        mid-write (a client gone) can never leave memory and store apart.
        """
        task = asyncio.ensure_future(self._change_now(transition))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(task)

    async def _change_now(self, transition: Callable[[d.DesiredState], d.DesiredState]) -> bool:
        async with self._write_lock:
            self.require_leader()
            old = self.state
            new = transition(old)
            if new is old:
                return False
            puts, deletes = d.record_changes(old, new)
            try:
                # In a thread: an etcd commit may wait for its cluster, and the
                # loop must go on serving agents and keeping the lease meanwhile.
                await asyncio.to_thread(self.store.commit, self.term, puts, deletes)
            except StaleTerm as exc:
                self.fenced.set()
                raise FencedOut(
                    f"this controller lost its leadership, nothing was changed ({exc}); try again"
                ) from exc
            except StoreError as exc:
                raise Unavailable(f"the desired state could not be stored: {exc}") from exc
            self.state = new
        if self.leading:
            self._announce_rollouts(old, new)
            self.reschedule()
        return True

    async def apply(
        self, content: str, filename: str, dry_run: bool, if_generation: int | None = None
    ) -> Applied:
        """Make a stack file the desired stack; with `if_generation`, only if the desired
        state is still at that generation (Conflict otherwise: the plan shown is stale)."""
        try:
            stack = load_stack(content, filename or "<stack>")
        except SpecError as exc:
            raise InvalidArgument(str(exc)) from exc
        changes: list[Change] = []

        def transition(state: d.DesiredState) -> d.DesiredState:
            if if_generation is not None and state.generation != if_generation:
                raise Conflict(
                    f"the stack changed since the plan was made (generation {if_generation}, "
                    f"now {state.generation}): nothing was applied; apply again to see the "
                    "new plan"
                )
            new, found = d.apply_stack(
                state,
                stack,
                self._placed(),
                max_processes=self.settings.max_processes,
                filename=filename or "<stack>",
            )
            changes.extend(found)
            return state if dry_run else new

        applied = await self._change(transition)
        if applied:
            summary = ", ".join(f"{c.op} {c.kind} {c.name}" for c in changes)
            self.events.record("apply", f"applied {filename or 'stack'}: {summary}")
        warnings = exposures(stack) + pending_options(stack)
        return Applied(changes, applied, self.state.generation, warnings)

    async def scale(self, watcher: str, count: int, relative: bool) -> tuple[int, int]:
        """Set a watcher's numprocesses: (previous, now)."""
        previous = 0

        def transition(state: d.DesiredState) -> d.DesiredState:
            nonlocal previous
            new, previous = d.scale(state, watcher, count, relative, self.settings.max_processes)
            return new

        if await self._change(transition):
            now = self.state.watchers[watcher].spec.numprocesses
            self.events.record("scale", f"scale {watcher}: {previous} -> {now}", watcher)
        return previous, self.state.watcher(watcher).spec.numprocesses

    async def act(
        self, kind: str, names: list[str], all_watchers: bool, rolling: bool = False
    ) -> tuple[str, ...]:
        """start, stop, restart (`rolling`: in batches), reload or reset watchers;
        return the ones acted on."""
        transitions: dict[str, Callable[[d.DesiredState, tuple[str, ...]], d.DesiredState]] = {
            "start": d.start,
            "stop": d.stop,
            "restart": lambda state, names: d.restart(state, names, rolling, self._placed()),
            "reload": d.reload,
            "reset": d.reset,
        }
        step = transitions[kind]
        selected: tuple[str, ...] = ()

        def transition(state: d.DesiredState) -> d.DesiredState:
            nonlocal selected
            selected = d.select(state, names, all_watchers)
            return step(state, selected)

        await self._change(transition)
        what = "rolling restart" if rolling else kind
        for name in selected:
            self.events.record(kind, f"{what} {name}", name)
        return selected

    async def remove(self, watcher: str) -> None:
        """Delete a watcher."""
        await self._change(lambda state: d.remove(state, watcher))
        self.events.record("remove", f"remove {watcher}", watcher)

    # ---- commands through agents ----

    def signal(self, watcher: str, signal: str, wid: int, children: bool) -> tuple[int, int]:
        """Signal the watcher's running processes: (agents sent to, processes meant)."""
        self.state.watcher(watcher)
        try:
            name = parse_signal(signal)
        except ValueError:
            raise InvalidArgument(f"unknown signal {signal!r}") from None
        targets = {
            record.host_id: [
                p for p in record.observed.processes
                if p.watcher == watcher and p.pid and (not wid or p.wid == wid)
            ]
            for record in self.agents.ready()
        }  # fmt: skip
        targets = {host: procs for host, procs in targets.items() if procs}
        if not targets:
            what = f"worker {wid} of {watcher!r}" if wid else f"{watcher!r}"
            raise NotFound(f"no running process of {what} to signal")
        command = agent_pb2.SignalCommand(watcher=watcher, wid=wid, signal=name, children=children)
        for record in self.agents.ready():
            if record.host_id in targets:
                assert record.session is not None
                record.session.send(
                    agent_pb2.ControllerMessage(fencing_token=self.term, signal=command)
                )
        return len(targets), sum(len(procs) for procs in targets.values())

    def running(self, watcher: str) -> list[AgentRecord]:
        """Ready agents that run (or are placed) some worker of `watcher`."""
        placed = set(self.placement.hosts_of(watcher))
        return [r for r in self.agents.ready() if r.host_id in placed or watcher in r.wids()]

    async def tail(
        self, watcher: str, lines: int, stream: str, host: str
    ) -> list[types_pb2.LogLine]:
        """The last `lines` output lines of a watcher, gathered from its agents."""
        self.state.watcher(watcher)
        records = [r for r in self.running(watcher) if not host or r.host_id == host]
        request_id, pending = self.logs.open_tail((r.host_id for r in records), lines)
        try:
            request = agent_pb2.LogTailRequest(
                request_id=request_id, watcher=watcher, stream=stream, lines=lines
            )
            for record in records:
                assert record.session is not None
                record.session.send(
                    agent_pb2.ControllerMessage(fencing_token=self.term, log_tail=request)
                )
            waiter = asyncio.ensure_future(pending.done.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=self.settings.tail_timeout)
            finally:
                waiter.cancel()
            if not done:
                log.warning("log tail of %s: no reply from %s", watcher, sorted(pending.waiting))
        finally:
            self.logs.close_tail(request_id)
        wanted = [
            line
            for line in pending.lines
            if line.watcher == watcher and (not stream or line.stream == stream)
        ]
        return list(newest_within(merge(wanted, lines), self.settings.viewer_limits.max_tail_bytes))

    # ---- agents ----

    def redirect(self) -> str | None:
        """None while this controller leads; else where agents should go ("" if unknown)."""
        return None if self.leading else self.leader_address

    def agent_connected(self, hello: agent_pb2.Hello, peer: str) -> AgentSession:
        session = self.agents.connect(hello, peer)
        record = self.agents.records[hello.host_id]
        record.observed = self._screen(record, hello.observed)
        log.info("agent %s connected from %s", hello.host_id, peer)
        self.events.record("agent_up", f"agent {hello.host_id} connected")
        session.send(
            agent_pb2.ControllerMessage(
                fencing_token=self.term,
                welcome=agent_pb2.Welcome(
                    controller_id=self.settings.controller_id,
                    fencing_token=self.term,
                    # Well inside the agent timeout, whatever the two settings say.
                    heartbeat_interval=min(
                        self.settings.heartbeat_interval, self.settings.agent_timeout / 3
                    ),
                ),
            )
        )
        self.reschedule_soon()
        return session

    def agent_message(self, session: AgentSession, message: agent_pb2.AgentMessage) -> None:
        record, came_back = self.agents.heard(session)
        if record is None:
            return
        if came_back:
            self.events.record("agent_up", f"agent {record.host_id} is back")
        # An agent speaks for its own host only: whatever host id it wrote on an
        # event or a line, the session's is stamped over it.
        body = message.WhichOneof("body")
        now = time.monotonic()
        if body == "observed":
            before = record.placement_key()
            record.observed = self._screen(record, message.observed)
            self._rollout_wake.set()
            # A mere heartbeat (same workers in the same states) changes no placement.
            if came_back or record.placement_key() != before:
                self.reschedule_soon()
        elif body == "events":
            events = self.events.admit(record.host_id, message.events.events, now)
            record.meter.refusals.dropped_events += len(message.events.events) - len(events)
            for event in events:
                event.host_id = record.host_id
                self.events.add_from_agent(record.host_id, event)
        elif body == "logs":
            self.logs.publish(record.meter.lines(message.logs.lines, now), record.host_id)
        elif body == "log_tail":
            self.logs.deliver(message.log_tail, record.host_id)
        elif came_back:
            self.reschedule_soon()
        self._announce_refusals(record, now)

    def _screen(self, record: AgentRecord, observed: agent_pb2.Observed) -> agent_pb2.Observed:
        """What the controller keeps of an agent's report (see containment.screen)."""
        screened = screen(observed, self._entitlement(record), self.settings.agent_limits)
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
        where = self._placed_where()
        labels = record.labels

        def may_run(watcher: str, wid: int) -> bool:
            desired = self.state.watchers.get(watcher)
            if desired is None:
                return False
            if wid in record.assigned.get(watcher, ()) or (wid == 0 and watcher in record.assigned):
                return True
            spec = desired.spec
            if not all(labels.get(key) == value for key, value in spec.placement.labels.items()):
                return False
            if wid == 0 or spec.placement.mode == "each":
                return 0 <= wid <= spec.numprocesses
            if not 1 <= wid <= spec.numprocesses:
                return False
            # Not while the host it is placed on runs it (a claim of another's worker).
            owner = self.agents.records.get(where.get((watcher, wid), record.host_id))
            return owner is None or owner is record or (watcher, wid) not in owner.reported

        return may_run

    def _announce_refusals(self, record: AgentRecord, now: float) -> None:
        """A warning event when the controller refused something from an agent, at most
        one per agent every REFUSALS_EVERY seconds (the counts are in `agents -o json`)."""
        if now < record.refusals_announced_at:
            return
        refusals = record.meter.refusals
        counts = tuple(getattr(refusals, name) for name in REFUSAL_LABELS)
        if counts == record.announced_refusals:
            return
        before = record.announced_refusals or (0,) * len(counts)
        what = [
            f"{after - earlier} {label}"
            for label, earlier, after in zip(REFUSAL_LABELS.values(), before, counts, strict=True)
            if after > earlier
        ]
        record.announced_refusals = counts
        if not what:
            return
        record.refusals_announced_at = now + REFUSALS_EVERY
        self.events.record(
            "agent_refused",
            f"agent {record.host_id}: {'; '.join(what)} (stackctl agents -o json counts them)",
            severity=types_pb2.SEVERITY_WARNING,
        )

    def agent_disconnected(self, session: AgentSession) -> None:
        if self.agents.disconnect(session):
            log.info("agent %s disconnected", session.host_id)
            self.events.record(
                "agent_down",
                f"agent {session.host_id} disconnected",
                severity=types_pb2.SEVERITY_WARNING,
            )
            self.logs.host_gone(session.host_id)
            self.reschedule_soon()

    def expire_agents(self) -> None:
        """Mark down the agents silent for longer than the timeout; move what is lost."""
        expired = self.agents.expire(self.settings.agent_timeout)
        for host_id in expired:
            log.warning("agent %s silent for %.1fs: down", host_id, self.settings.agent_timeout)
            self.events.record(
                "agent_down",
                f"agent {host_id} silent for {self.settings.agent_timeout:g}s",
                severity=types_pb2.SEVERITY_WARNING,
            )
            self.logs.host_gone(host_id)
        lost = self.agents.lost(self.settings.reschedule_after)
        for host_id in sorted(lost - self._announced_lost):
            self.events.record(
                "agent_lost",
                f"agent {host_id} down for {self.settings.reschedule_after:g}s: "
                "its share of spread watchers moves to other agents",
                severity=types_pb2.SEVERITY_WARNING,
            )
        self._announced_lost = lost
        now = time.monotonic()
        for record in self.agents.records.values():
            self._announce_refusals(record, now)
        warmed = self._warm_until and not self.warming_up()
        if warmed:
            self._warm_until = 0.0
        if expired or lost != self._lost or warmed:
            self.reschedule()

    async def watch_agents(self) -> None:
        """Run forever while leading: check agents' liveness a few times per timeout,
        move rolling changes on as their batches come up, and write the event history."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._expire_loop(), name="expire-agents")
            tg.create_task(self._rollout_loop(), name="rollouts")
            tg.create_task(self._write_events(), name="write-events")

    async def _expire_loop(self) -> None:
        interval = min(0.5, self.settings.agent_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.expire_agents()

    # ---- rolling changes ----

    def _placed(self) -> dict[str, set[int]]:
        """watcher -> every worker id placed on some host now."""
        placed: dict[str, set[int]] = {}
        for by_watcher in self.placement.hosts.values():
            for watcher, wids in by_watcher.items():
                placed.setdefault(watcher, set()).update(wids)
        return placed

    def _placed_where(self) -> dict[tuple[str, int], str]:
        """(watcher, wid) -> the host it is placed on, computed once per placement
        (agents' reports read it often)."""
        if self._placed_for is not self.placement:
            self._placed_cache = {
                (watcher, wid): host
                for host, by_watcher in self.placement.hosts.items()
                for watcher, wids in by_watcher.items()
                for wid in wids
            }
            self._placed_for = self.placement
        return self._placed_cache

    async def _rollout_loop(self) -> None:
        """Advance rollouts when agents report, and at least every 0.2 s (min_uptime)."""
        while True:
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that comes
            # as the wake-up does, and this loop must end when leadership does.
            waiter = asyncio.ensure_future(self._rollout_wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=0.2)
            finally:
                waiter.cancel()
            self._rollout_wake.clear()
            try:
                await self.advance_rollouts()
            except (FencedOut, Unavailable) as exc:
                log.error("cannot advance rolling changes: %s", exc)

    async def advance_rollouts(self) -> None:
        """Take the next step of every rollout in progress (see rollout.advance)."""
        now = time.monotonic()
        rolling = [n for n, w in self.state.watchers.items() if w.rollout and not w.rollout.halted]
        if not rolling:
            self._running_since.clear()
            return
        placed = self._placed()
        for name in rolling:
            before = self.state.watchers.get(name)
            seen = self._seen(name, now)
            outcomes: list[str] = []
            step = functools.partial(
                self._rollout_step,
                name=name,
                seen=seen,
                wanted=placed.get(name, set()),
                outcomes=outcomes,
            )
            await self._change(step)
            self._record_rollout(name, outcomes[0] if outcomes else "", before)

    @staticmethod
    def _rollout_step(
        state: d.DesiredState,
        name: str,
        seen: dict[int, Seen],
        wanted: set[int],
        outcomes: list[str],
    ) -> d.DesiredState:
        watcher = state.watchers.get(name)
        if watcher is None or watcher.rollout is None or not watcher.active:
            return state  # removed, done, or stopped (which pauses it)
        rollout, outcome = advance(watcher.rollout, state.version(name), seen, wanted)
        outcomes.append(outcome)
        return d.set_rollout(state, name, rollout)

    def _seen(self, watcher: str, now: float) -> dict[int, Seen]:
        """What the ready agents report of `watcher`'s batch processes, by worker id."""
        seen: dict[int, Seen] = {}
        batch = self.state.watchers[watcher].rollout
        wanted = set(batch.batch) if batch is not None else set()
        for record in self.agents.ready():
            for proc in record.observed.processes:
                if proc.watcher != watcher or proc.wid not in wanted:
                    continue
                running_for = 0.0
                if proc.pid and proc.state == types_pb2.PROCESS_STATE_RUNNING:
                    key = (watcher, proc.wid, proc.pid)
                    running_for = now - self._running_since.setdefault(key, now)
                why = proc.health_message or proc.last_exit.message or proc.message
                if not why and proc.HasField("last_exit") and not proc.pid:
                    exit_ = proc.last_exit
                    why = (
                        f"killed by signal {exit_.signal}"
                        if exit_.signal
                        else (f"exit code {exit_.code}")
                    )
                health = proc.health
                if not proc.pid and proc.last_exit.reason == types_pb2.EXIT_REASON_UNHEALTHY:
                    health = types_pb2.HEALTH_UNHEALTHY  # stopped for failing its check
                seen[proc.wid] = Seen(
                    host_id=record.host_id,
                    version=proc.version,
                    state=ProcessState(proc.state),
                    pid=proc.pid,
                    health=Health(health),
                    running_for=running_for,
                    why=why,
                    blocked=proc.blocked,
                )
        return seen

    def _record_rollout(self, name: str, outcome: str, before: d.DesiredWatcher | None) -> None:
        after = self.state.watchers.get(name)
        rollout = after.rollout if after is not None else None
        if outcome == "done":
            self.events.record("rollout_done", f"rollout of {name} done", name)
        elif outcome == "halted" and rollout is not None:
            self.events.record(
                "rollout_halted",
                f"rollout of {name} halted: {rollout.halted}",
                name,
                severity=types_pb2.SEVERITY_ERROR,
            )
        elif outcome == "batch" and rollout is not None:
            self.events.record("rollout", f"{name}: {rollout.summary()}", name)

    def _announce_rollouts(self, old: d.DesiredState, new: d.DesiredState) -> None:
        """An event for each rollout a change began; wake the loop to take its first step."""
        for name, watcher in new.watchers.items():
            before = old.watchers.get(name)
            began = (
                watcher.rollout is not None
                and before is not None
                and old.version(name).label != new.version(name).label
            )
            if began:
                assert watcher.rollout is not None
                self.events.record(
                    "rollout_started",
                    f"rolling {name} over to a new version: {watcher.rollout.total} processes, "
                    f"{watcher.spec.update.max_parallel} at a time",
                    name,
                )
                self._rollout_wake.set()

    # ---- placement and assignments ----

    def reschedule_soon(self) -> None:
        """Reschedule once for all the agent messages of the next RESCHEDULE_WINDOW.

        Agents come and go and report in storms (a thousand reconnecting after a
        controller restart); placing the whole fleet once per message would cost
        the square of the fleet. Operator changes reschedule at once.
        """
        if self._reschedule_handle is None:
            loop = asyncio.get_running_loop()
            self._reschedule_handle = loop.call_later(RESCHEDULE_WINDOW, self._deferred_reschedule)

    def _deferred_reschedule(self) -> None:
        self._reschedule_handle = None
        if not self._stopping:
            self.reschedule()

    def reschedule(self) -> None:
        """Recompute placement and queue a new Assignment to every host whose share changed.

        What a host holds is what was placed there, else what it reports (see
        `_current`), so a wid queued to an agent that has not started it yet does
        not move. A down agent keeps its share until it has been down for
        reschedule_after; a drained one hands each process over once its
        replacement runs.
        """
        records = [record for _, record in sorted(self.agents.records.items())]
        lost = self.agents.lost(self.settings.reschedule_after)
        self._lost = lost
        views = [AgentView(r.host_id, self._placement_state(r, lost), r.labels) for r in records]
        self.placement = place(self.state.demand(), views, self._current(records))
        if self.warming_up():
            self.placement = self._only_reported(self.placement)
        self._push()

    def _push(self) -> None:
        """Queue each ready host its Assignment when it differs from the last one sent."""
        for record in self.agents.ready():
            session = record.session
            assert session is not None
            handoff = self._handoff(record) if record.host_id in self.state.drained else None
            assignment = build_assignment(
                self.state, self.placement, record.host_id, self.term, handoff
            )
            data = assignment.SerializeToString(deterministic=True)
            if data != session.last_assignment:
                session.last_assignment = data
                for sent in assignment.watchers:
                    record.assigned.setdefault(sent.spec.name, set()).update(sent.wids)
                for gone in [name for name in record.assigned if name not in self.state.watchers]:
                    del record.assigned[gone]
                session.send(
                    agent_pb2.ControllerMessage(fencing_token=self.term, assignment=assignment)
                )

    def _current(self, records: list[AgentRecord]) -> dict[str, dict[str, frozenset[int]]]:
        """What each host holds now: what we placed there, else (after a restart or a
        return from the dead) what it reports running, less what another host was given
        meanwhile and runs: a returning host stops its surplus, the takeover keeps running."""
        owner = {
            (watcher, wid): record.host_id
            for record in records
            for watcher, wids in record.wids().items()
            for wid in wids
            if wid in self.placement.wids(record.host_id, watcher)
        }
        current: dict[str, dict[str, frozenset[int]]] = {}
        for record in records:
            host_id = record.host_id
            placed = self.placement.hosts.get(host_id, {})
            reported = record.wids()
            current[host_id] = {
                watcher: frozenset(placed[watcher])
                if watcher in placed
                else frozenset(
                    wid
                    for wid in reported[watcher]
                    if owner.get((watcher, wid), host_id) == host_id
                )
                for watcher in {*placed, *reported}
            }
        return current

    def warming_up(self) -> bool:
        """Just after a restart with a stored stack, agents are still reconnecting.

        Placing missing workers before every agent has said what it runs would
        start duplicates and then stop the originals; until the agent timeout
        has passed, each agent keeps exactly what it reports.
        """
        return time.monotonic() < self._warm_until

    def _only_reported(self, placement: Placement) -> Placement:
        """`placement` less the processes of active watchers that no agent reports yet."""
        reported = {record.host_id: record.wids() for record in self.agents.records.values()}
        hosts = {
            host_id: {
                watcher: wids
                if not self.state.watchers[watcher].active
                else tuple(w for w in wids if w in reported.get(host_id, {}).get(watcher, ()))
                for watcher, wids in by_watcher.items()
            }
            for host_id, by_watcher in placement.hosts.items()
        }
        return Placement(hosts=hosts, pending=placement.pending)

    def _placement_state(self, record: AgentRecord, lost: frozenset[str]) -> str:
        """ "ready", "down" (keeps its share for now) or "gone" (its share moves)."""
        if record.host_id in self.state.drained or record.host_id in lost:
            return "gone"
        return "ready" if record.ready else "down"

    def _handoff(self, draining: AgentRecord) -> dict[str, frozenset[int]]:
        """The drained host's processes whose replacement does not run elsewhere yet."""
        running_elsewhere = {
            (proc.watcher, proc.wid)
            for record in self.agents.ready()
            if record.host_id != draining.host_id
            for proc in record.observed.processes
            if proc.state == types_pb2.PROCESS_STATE_RUNNING
        }
        keep: dict[str, set[int]] = {}
        for proc in draining.observed.processes:
            if proc.pid and (proc.watcher, proc.wid) not in running_elsewhere:
                keep.setdefault(proc.watcher, set()).add(proc.wid)
        return {watcher: frozenset(wids) for watcher, wids in keep.items()}

    async def drain(self, host_id: str) -> int:
        """Move every process away from `host_id`; return how many it runs now."""
        record = self.agents.records.get(host_id)
        if record is None:
            raise NotFound(f"unknown agent {host_id!r}")
        if await self._change(lambda state: d.drain(state, host_id)):
            self.events.record("drain", f"drain {host_id}")
        return sum(1 for proc in record.observed.processes if proc.pid)

    async def undrain(self, host_id: str) -> int:
        """Let `host_id` take processes again."""
        record = self.agents.records.get(host_id)
        if record is None and host_id not in self.state.drained:
            raise NotFound(f"unknown agent {host_id!r}")
        if await self._change(lambda state: d.undrain(state, host_id)):
            self.events.record("undrain", f"undrain {host_id}")
        return 0 if record is None else sum(1 for proc in record.observed.processes if proc.pid)

    def rebalance(self, watcher: str) -> int:
        """Spread a watcher's processes evenly again; return how many move."""
        self.check_watcher(watcher)
        records = [record for _, record in sorted(self.agents.records.items())]
        views = [
            AgentView(r.host_id, self._placement_state(r, self._lost), r.labels) for r in records
        ]
        before = self.placement
        self.placement = rebalance(watcher, self.state.demand(), views, self._current(records))
        moved = sum(
            len(set(self.placement.wids(host, watcher)) - set(before.wids(host, watcher)))
            for host in self.placement.hosts
        )
        self.events.record("rebalance", f"rebalance {watcher}: {moved} moved", watcher)
        self._push()
        return moved

    def check_watcher(self, watcher: str) -> None:
        """NotFound unless `watcher` is in the desired state."""
        if watcher not in self.state.watchers:
            raise unknown_watcher(watcher)
