"""The controller: the desired state, the agents and their placement, tied together.

It owns the one copy of the desired state in memory and writes every change to the
store before answering (`change`). What to do about the world is decided by pure
functions — placement and Assignments (schedule.py), agents down and lost and the
warm-up after a takeover (liveness.py), rollout steps (rollout.py, desired.py), what an
agent may report (containment.py) — and applied by small parts, one per concern:

- `scheduler` (scheduler.py): placement, and each host's Assignment where it changed;
- `sessions` (sessions.py): agents' hellos, reports, events, output, silence;
- `rollouts` (rollout_driver.py): rolling changes, batch by batch;
- `commands` (commands.py): signals and tails through the agents;
- `event_writer` (event_writer.py): the event history into the store.

Every rule that depends on time reads `clock` (monotonic) or `wall` (unix time), given
at construction: tests pass a fake one. The gRPC servicers (admin_service.py,
agent_service.py) are thin edges over it; all of it runs on the event loop, store
commits included (in threads, see `change`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import stack
from stack import aio
from stack.controller import desired as d
from stack.controller import liveness, schedule
from stack.controller.agents import AgentRegistry
from stack.controller.cluster import Cluster, ClusterView, ControllerInfo, StoreMember
from stack.controller.commands import Commands
from stack.controller.errors import (
    Conflict,
    FencedOut,
    InvalidArgument,
    NotFound,
    NotLeader,
    Unavailable,
    unknown_watcher,
)
from stack.controller.event_writer import EventWriter
from stack.controller.events import EventLog
from stack.controller.logs import LogRelay
from stack.controller.metrics import ControllerMetrics
from stack.controller.placement import Placement
from stack.controller.rollout_driver import RolloutDriver
from stack.controller.scheduler import Scheduler
from stack.controller.sessions import AgentSessions
from stack.controller.settings import ControllerSettings
from stack.controller.store import schema
from stack.controller.store.base import StaleTerm, Store, StoreError
from stack.controller.viewers import FollowSlots
from stack.metrics.tally import timed
from stack.security.local import UNIX
from stack.spec.diff import Change
from stack.spec.errors import SpecError
from stack.spec.load import load_stack
from stack.spec.pending import pending_options
from stack.spec.secrets import exposures

log = logging.getLogger(__name__)

Clock = Callable[[], float]


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


class Controller:
    """One controller's state and behaviour, without the gRPC plumbing."""

    def __init__(
        self,
        settings: ControllerSettings,
        store: Store,
        term: int,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.term = term
        """The fencing token: the store's term acquired at start."""
        self.clock = clock
        """Monotonic seconds: every decision that depends on time reads this."""
        self.wall = wall
        """Unix time, for what is shown (last seen, event times)."""
        self.state = d.DesiredState()
        self.agents = self._new_registry()
        self.events = self._new_event_log()
        self.logs = self._new_log_relay()
        self.follows = FollowSlots(settings.viewer_limits.max_follows)
        self.metrics = ControllerMetrics(settings.metrics_per_process)
        """What happened, counted (see metrics.py); served by a metrics or console port."""
        self.leading = True
        """False while another controller leads (this one redirects to `leader_address`)."""
        self.leader_address = ""
        """The leader's advertised HOST:PORT as last known; "" during an election."""
        self.fenced = asyncio.Event()
        """Set when a store write found a newer leader: this one must step down."""
        self.cluster: Cluster | None = None
        """The other controllers (HA on etcd); None with the embedded store."""
        self._stopping = False
        self._write_lock = asyncio.Lock()
        self.scheduler = Scheduler(self)
        self.sessions = AgentSessions(self)
        self.rollouts = RolloutDriver(self)
        self.commands = Commands(self)
        self.event_writer = EventWriter(self)

    @property
    def placement(self) -> Placement:
        """Which host runs which worker ids now (the scheduler's)."""
        return self.scheduler.placement

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
        self.logs.close()
        self.events.fanout.close()

    def _new_registry(self) -> AgentRegistry:
        settings = self.settings
        return AgentRegistry(
            settings.agent_queue, settings.agent_limits, wall=self.wall, mono=self.clock
        )

    def _new_event_log(self) -> EventLog:
        return EventLog(self.settings.events, self.settings.follower_queue, wall=self.wall)

    def _new_log_relay(self) -> LogRelay:
        limits = self.settings.viewer_limits
        return LogRelay(self.settings.follower_queue, limits.follower_bytes)

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
        self.agents = self._new_registry()
        self.logs.close()
        self.events.fanout.close()
        self.logs = self._new_log_relay()
        self.events = self._new_event_log()
        self.scheduler.reset()
        self.sessions.reset()
        self.rollouts.reset()

    async def controllers(self) -> ClusterView:
        """Every controller, which one leads, and the store's health."""
        if self.cluster is not None:
            return await self.cluster.describe()
        settings = self.settings
        address = settings.advertise or settings.listen or f"{UNIX}{settings.socket_path}"
        me = ControllerInfo(settings.controller_id, address, True, stack.__version__)
        return ClusterView(
            leader_address=address,
            fencing_token=self.term,
            store="sqlite",
            answered_by=settings.controller_id,
            controllers=(me,),
            members=(StoreMember(str(settings.store_path), True),),
        )

    async def load(self) -> None:
        """Read the desired state and the event history from the store; rewrite the
        records an older schema wrote in the current one (see store/schema.py)."""
        records = await asyncio.to_thread(self.store.load, schema.PREFIX)
        self.state = schema.decode(records)
        await self._migrate(records)
        await self._load_events()
        timeouts = liveness.Timeouts(self.settings.agent_timeout, self.settings.reschedule_after)
        now, stored = self.clock(), bool(self.state.watchers)
        self.scheduler.warm_until = liveness.warm_until(now, timeouts, stored)
        self.scheduler.hold_until = liveness.hold_until(now, timeouts, stored)
        self.scheduler.hold = schedule.Hold.of(self.state) if stored else None
        log.info(
            "desired state loaded: %d watchers, generation %d, term %d",
            len(self.state.watchers),
            self.state.generation,
            self.term,
        )

    async def _migrate(self, records: dict[str, bytes]) -> None:
        """Rewrite in the current schema the records an older one wrote. A failure is
        only logged: every schema stays readable, and the next leader tries again."""
        outdated = schema.outdated(records)
        if not outdated:
            return
        current = schema.encode(self.state)
        puts = {key: current[key] for key in outdated if key in current}
        try:
            await asyncio.to_thread(self.store.commit, self.term, puts, [])
        except StoreError as exc:
            log.warning("cannot rewrite %d store records in schema %d yet: %s",
                        len(puts), schema.SCHEMA, exc)  # fmt: skip
            return
        log.info("%d store records rewritten in schema %d", len(puts), schema.SCHEMA)

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

    async def watch_agents(self) -> None:
        """Run forever while leading: check agents' liveness a few times per timeout,
        move rolling changes on as their batches come up, and write the event history."""
        async with aio.TaskGroup() as tg:
            aio.start(tg, self._check_liveness(), "expire-agents", forever=True, logger=log)
            aio.start(tg, self.rollouts.run(), "rollouts", forever=True, logger=log)
            aio.start(tg, self.event_writer.run(), "write-events", forever=True, logger=log)

    async def _check_liveness(self) -> None:
        interval = min(0.5, self.settings.agent_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.sessions.check_liveness(interval)

    # ---- changes to the desired state ----

    async def change(self, transition: Callable[[d.DesiredState], d.DesiredState]) -> bool:
        """Apply a transition, persist it, then push Assignments. False when nothing changed.

        The write runs to its end even when the caller is cancelled (a client gone):
        memory and store can never be left apart.
        """
        return await aio.unstoppable(self._change_now(transition), "desired-state change")

    async def _change_now(self, transition: Callable[[d.DesiredState], d.DesiredState]) -> bool:
        async with self._write_lock:
            self.require_leader()
            old = self.state
            new = transition(old)
            if new is old:
                return False
            puts, deletes = schema.record_changes(old, new)
            try:
                # In a thread: an etcd commit may wait for its cluster, and the
                # loop must go on serving agents and keeping the lease meanwhile.
                commit = functools.partial(self.store.commit, self.term, puts, deletes)
                _, seconds = await asyncio.to_thread(timed, commit)
            except StaleTerm as exc:
                self.fenced.set()
                if exc.maybe_written:
                    raise FencedOut(
                        f"this controller lost its leadership while the store was slow to "
                        f"answer: the change may have been made ({exc}); check with "
                        f"`stackctl status` before trying again"
                    ) from exc
                raise FencedOut(
                    f"this controller lost its leadership, nothing was changed ({exc}); try again"
                ) from exc
            except StoreError as exc:
                raise Unavailable(f"the desired state could not be stored: {exc}") from exc
            self.state = new
            self.metrics.committed("desired", seconds)
        if self.leading:
            begun = d.rollouts_begun(old, new)
            for note in begun:
                self.events.note(note)
                self.metrics.noted(note)
            if begun:
                self.rollouts.wake()
            self.scheduler.reschedule()
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
                self.scheduler.placed(),
                max_processes=self.settings.max_processes,
                filename=filename or "<stack>",
            )
            changes.extend(found)
            return state if dry_run else new

        applied = await self.change(transition)
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

        if await self.change(transition):
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
            "restart": lambda state, names: d.restart(
                state, names, rolling, self.scheduler.placed()
            ),
            "reload": lambda state, names: d.reload(
                state, tuple(name for name in names if not state.watcher(name).spec.send_hup)
            ),
            "reset": d.reset,
        }
        step = transitions[kind]
        selected: tuple[str, ...] = ()

        def transition(state: d.DesiredState) -> d.DesiredState:
            nonlocal selected
            selected = d.select(state, names, all_watchers)
            return step(state, selected)

        await self.change(transition)
        what = "rolling restart" if rolling else kind
        for name in selected:
            if kind == "reload" and self.state.watcher(name).spec.send_hup:
                self.events.record(kind, f"reload {name}: {self._hup(name)}", name)
            else:
                self.events.record(kind, f"{what} {name}", name)
        return selected

    def _hup(self, name: str) -> str:
        """A reload of a send_hup watcher: SIGHUP to its workers, which keep running."""
        try:
            _, count = self.commands.signal(name, "HUP", 0, False)
        except NotFound:
            return "send_hup: no running process to send SIGHUP to"
        return f"send_hup: SIGHUP sent to {count} process{'es' if count != 1 else ''}"

    async def remove(self, watcher: str) -> None:
        """Delete a watcher."""
        await self.change(lambda state: d.remove(state, watcher))
        self.events.record("remove", f"remove {watcher}", watcher)

    async def drain(self, host_id: str) -> int:
        """Move every process away from `host_id`; return how many it runs now."""
        record = self.agents.records.get(host_id)
        if record is None:
            raise NotFound(f"unknown agent {host_id!r}")
        if await self.change(lambda state: d.drain(state, host_id)):
            self.events.record("drain", f"drain {host_id}")
        return record.running()

    async def undrain(self, host_id: str) -> int:
        """Let `host_id` take processes again."""
        record = self.agents.records.get(host_id)
        if record is None and host_id not in self.state.drained:
            raise NotFound(f"unknown agent {host_id!r}")
        if await self.change(lambda state: d.undrain(state, host_id)):
            self.events.record("undrain", f"undrain {host_id}")
        return 0 if record is None else record.running()

    def rebalance(self, watcher: str) -> int:
        """Spread a watcher's processes evenly again; return how many move."""
        self.check_watcher(watcher)
        moved = self.scheduler.rebalance(watcher)
        self.events.record("rebalance", f"rebalance {watcher}: {moved} moved", watcher)
        return moved

    def check_watcher(self, watcher: str) -> None:
        """NotFound unless `watcher` is in the desired state."""
        if watcher not in self.state.watchers:
            raise unknown_watcher(watcher)
