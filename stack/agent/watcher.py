"""One watcher's workers on this host, reconciled to its WatcherAssignment.

A watcher keeps one slot per worker id it must run here, each with its runner
(runner.py), which owns that slot's process and everything the process needs. Desired-
state changes (wid list, active flag, spec fingerprint, inherited sockets, restart and
reset tokens) are recorded by `update`; `reconcile`, which the engine calls in priority
order, decides what each slot does now, through the pure rules of slot.py, and has
its runner do it. It never waits, so that no watcher holds up another: a
`warmup_delay` is a deadline (the next start of this watcher, and the time its warming
worker counts as running) that `next_deadline` tells the engine to wake for, and so are
max_age and a flapping slot's retry. The watcher's clock is passed in.

Exits arrive synchronously from the reaper at the slot's runner and are handled at
once: an unplanned exit goes through the flapping rules of its slot (see flapping.py)
and, unless that slot flaps, is respawned in the same event-loop turn. A slot that
flaps waits on its own; the watcher's other workers go on serving. Stopping a process
is a task of its runner (stop signal, grace period, SIGKILL) in the engine's TaskGroup,
so a slow stop never delays anything else; so are health checks. An unhealthy process
is stopped gracefully, counted as a crash (flapping rules) and started again.

During a rolling change the assignment pins some worker ids to an earlier version
of the watcher; each slot runs the version its wid is given, and a process is
replaced when that changes. A new process of the batch on probation that exits or
fails its health check is left stopped, outside the flapping rules: the controller
halts the rollout and pins the wid back to the version that worked.

A watcher with `on_demand` rests until one of its sockets (those its workers inherit,
and its stdin_socket) gets a connection: its slots show `stopped` with a note, the
sockets stay bound and are watched for readability without accepting (see
SocketPool.on_connection), so the first client stays queued for a worker. The
connection wakes the watcher, which then starts and respawns its workers as any
other. It rests again when it is stopped (a `start` waits for a connection again) and
when all its workers are over with none to start (they exited with respawn = false):
the next connection starts them again, through the flapping rules, so that a worker
that exits without serving cannot spin. With no worker id on this host (numprocesses =
0) it watches nothing: connections queue until it is scaled up.

When the agent restarts, its workers are not started again: `adopt` puts a worker
that kept running back in its slot (or resumes its stop), `restore_slot` brings back
a slot as the previous image of the agent left it, `restore_flapping` a slot's
flapping state as a crashed agent recorded it, and `exited_while_away` reports a
worker that exited while no agent ran, which is then respawned like any crash.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stack.agent import flapping, slot
from stack.agent.clock import SYSTEM, Clock
from stack.agent.flapping import FlapPhase, FlapState, WatcherFlapping
from stack.agent.handover import SlotRecord, WatcherRecord
from stack.agent.process import PipeEnd, Proc
from stack.agent.records import SlotFlapping, WorkerRecord
from stack.agent.runner import Host, SlotRunner
from stack.agent.slot import Policy, SlotState, StartCause
from stack.agent.sockets import BoundSocket
from stack.agent.start_stop import StartStop
from stack.agent.states import ProcessState
from stack.spec.model import (
    SocketSpec,
    WatcherSpec,
    passed_as_fds,
    version_fingerprint,
    version_label,
)
from stack.spec.observed import ON_DEMAND_REST, ExitReason, Health, WatcherPhase
from stack.spec.reports import Severity

__all__ = ["Desired", "Host", "Version", "Watcher"]

_HELD = {FlapPhase.FLAPPING: ProcessState.BACKOFF, FlapPhase.FATAL: ProcessState.FATAL}
"""The process state of a slot whose flapping holds it back."""


@dataclass(frozen=True)
class Version:
    """What a process runs: a spec at a restart token, with its inherited sockets."""

    spec: WatcherSpec
    restart_token: int
    sockets: tuple[SocketSpec, ...]
    """The sockets its processes need (model.version_sockets): the inherited ones in
    child fd order, then a stdin_socket that is not one of them."""
    socket_key: tuple[Any, ...]
    fingerprint: str

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal keys: the same processes; a process is replaced when its key changes."""
        return (self.fingerprint, self.socket_key, self.restart_token)

    @property
    def label(self) -> str:
        """How status names the version, as the controller does (see version_label)."""
        return version_label(self.restart_token, version_fingerprint(self.spec, self.sockets))

    @property
    def fds(self) -> tuple[SocketSpec, ...]:
        """The sockets its workers get as fds 3, 4, ..."""
        return passed_as_fds(self.spec, self.sockets)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the inherited sockets, in child fd order."""
        return tuple(sock.name for sock in self.fds)


@dataclass(frozen=True)
class Desired:
    """One WatcherAssignment, converted."""

    spec: WatcherSpec
    wids: tuple[int, ...]
    active: bool
    restart_token: int
    graceful: bool
    reset_token: int
    sockets: tuple[SocketSpec, ...]
    """The inherited sockets, in child fd order."""
    socket_key: tuple[Any, ...]
    """Changes whenever one of those sockets was bound anew (another binding)."""
    fingerprint: str
    """WatcherSpec.process_fingerprint(): changes when the processes must be replaced."""
    pinned: Mapping[int, Version] = field(default_factory=dict)
    """Worker ids that keep an earlier version during a rolling change."""
    probation: frozenset[int] = frozenset()
    """Worker ids of the rollout batch: their new processes are not respawned."""

    def current(self) -> Version:
        return Version(
            self.spec, self.restart_token, self.sockets, self.socket_key, self.fingerprint
        )

    def version_of(self, wid: int) -> Version:
        """The version worker `wid` must run."""
        pinned = self.pinned.get(wid)
        return pinned if pinned is not None else self.current()


@dataclass(eq=False)
class Watcher:
    host: Host
    desired: Desired
    clock: Clock = SYSTEM
    generation: int = 0
    """The process generation of the current version (see `versions`)."""
    graceful_replace: bool = False
    slots: dict[int, SlotRunner] = field(default_factory=dict)
    """The runner of each worker id this watcher runs here."""
    draining: dict[int, SlotRunner] = field(default_factory=dict)
    """Runners of worker ids no longer run here whose processes still stop."""
    removed: bool = False
    agent_env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    versions: dict[tuple[Any, ...], int] = field(default_factory=dict)
    """Version.key -> process generation, for the current and the pinned versions."""
    next_start_at: float = 0.0
    """Monotonic time before which no worker is started by `reconcile` (warmup_delay)."""
    life: StartStop = field(init=False)
    """The watcher's start and stop here, with the hooks around them (start_stop.py)."""
    awake: bool = False
    """on_demand: a connection came since the watcher last rested (see `_rests`)."""
    rest_note: str = ""
    """on_demand: while the watcher rests, what status says of it ("" when it does not)."""

    def __post_init__(self) -> None:
        self.life = StartStop(self)
        self.versions[self.desired.current().key] = self.generation
        for version in self.desired.pinned.values():
            self._generation_of(version.key)

    @property
    def name(self) -> str:
        return self.desired.spec.name

    @property
    def spec(self) -> WatcherSpec:
        return self.desired.spec

    def runners(self) -> list[SlotRunner]:
        """Every runner: the slots', then those still stopping a dropped wid's process."""
        return [*self.slots.values(), *self.draining.values()]

    def wanted_runners(self) -> list[SlotRunner]:
        """The runner of each worker id this watcher must run here, in wid order."""
        return [self._slot(wid) for wid in sorted(self.desired.wids)]

    # ---- what the runners read ----
    def policy(self) -> Policy:
        spec = self.spec
        return Policy(
            flapping=spec.flapping,
            max_retry=spec.max_retry,
            respawn=spec.respawn,
            autorestart=spec.autorestart,
            exitcodes=spec.exitcodes,
        )

    def version_of(self, wid: int) -> Version:
        """The version worker `wid` must run."""
        return self.desired.version_of(wid)

    def generation_of_version(self, version: Any) -> int:
        return self.versions[version.key]

    def on_probation_version(self, wid: int, version: Any) -> bool:
        """A start of `version` for `wid` is one of the rollout batch's new processes."""
        return wid in self.desired.probation and version == self.desired.current()

    def keeps_down(self, wid: int, generation: int, failed_start: bool = False) -> bool:
        """After a failure of `wid`'s process of `generation`: True when it is not to be
        started again (no respawn, stopped, removed, or a rollout's new process on
        probation: the controller halts the rollout instead). A `failed_start` (an exit
        within startsecs) is tried again even without respawn, as supervisord does."""
        return (
            self.on_probation(wid, generation)
            or (not self.spec.respawn and not failed_start)
            or not self.desired.active
            or self.removed
        )

    def spawned_late(self, run: SlotRunner) -> None:
        """`run` spawned its process after its before_spawn hook: the next start waits
        for its warm-up, as after any start."""
        self.next_start_at = slot.start_gate(self.next_start_at, run.state, run.proc)

    def bound_of(self, version: Any) -> dict[str, BoundSocket]:
        """The sockets `version`'s processes inherit, as bound, by name."""
        found = {sock.name: self.host.sockets.lookup(sock) for sock in version.fds}
        return {name: bound for name, bound in found.items() if bound is not None}

    # ---- desired state ----
    def update(self, new: Desired) -> None:
        old = self.desired
        before = {wid: self.target(wid) for wid in self.slots}
        old_key, new_key = old.current().key, new.current().key
        graceful = new.graceful if new.restart_token != old.restart_token else False
        if new.reset_token != old.reset_token:
            self.reset()
        if new.active and not old.active:
            for run in self.slots.values():
                run.apply((replace(run.state, pending=True), []))
        if new_key != old_key or (new.active and not old.active):
            self.life.again()  # a start before_start refused is tried again
        self.desired = new
        if new_key != old_key:
            self.generation = self._generation_of(new_key)
            self.graceful_replace = graceful
        keep = {new_key, *(version.key for version in new.pinned.values())}
        for key in keep:
            self._generation_of(key)
        self.versions = {key: gen for key, gen in self.versions.items() if key in keep}
        for wid, run in self.slots.items():
            if self.target(wid) != before[wid]:
                run.apply((slot.renewed(run.state), []))  # a new version gets a fresh chance
        if new.spec.health != old.spec.health:
            for run in self.runners():
                for hook in run.hooks:
                    hook.restart(run)
            self.host.changed()

    def _generation_of(self, key: tuple[Any, ...]) -> int:
        """The process generation of a version; a version not seen before gets a new one."""
        if key not in self.versions:
            self.versions[key] = max(self.versions.values(), default=-1) + 1
        return self.versions[key]

    def target(self, wid: int) -> int:
        """The process generation worker `wid` must run."""
        return self.versions[self.desired.version_of(wid).key]

    def spec_of(self, wid: int) -> WatcherSpec:
        """The spec worker `wid` runs (an earlier one while pinned by a rolling change)."""
        return self.desired.version_of(wid).spec

    def on_probation(self, wid: int, generation: int) -> bool:
        """True for a new process of the rollout batch: it fails the batch, not the watcher."""
        return wid in self.desired.probation and generation == self.target(wid)

    def reset(self) -> None:
        """Clear flapping/fatal (and a start before_start refused); everything missing is
        started again."""
        self.life.again()
        if any(run.state.flap.phase is not FlapPhase.ACTIVE for run in self.slots.values()):
            self.host.event("reset", self.name, 0, "flapping state cleared", Severity.INFO)
        for run in self.slots.values():
            run.apply((slot.reset(run.state), []))

    # ---- the slots' runners ----
    def _slot(self, wid: int, state: SlotState | None = None) -> SlotRunner:
        """The runner of slot `wid`, made (or taken back from `draining`) with `state`
        (a new slot's by default) if the watcher has no such slot yet."""
        run = self.slots.get(wid)
        if run is not None:
            return run
        run = self.draining.pop(wid, None) or SlotRunner(self, wid)
        run.state, run.wanted, run.env = state or SlotState(wid), True, {}
        self.slots[wid] = run
        return run

    def _runner_of(self, wid: int) -> SlotRunner:
        """Whichever runner has (or is to have) `wid`'s processes, a slot or not."""
        run = self.slots.get(wid) or self.draining.get(wid)
        if run is None:
            run = self.draining[wid] = SlotRunner(self, wid)
            run.wanted = False
        return run

    def _drop(self, wid: int) -> None:
        """`wid` is no longer run here: its process is stopped, its slot forgotten."""
        run = self.slots.pop(wid)
        proc, run.proc = run.proc, None
        run.cancel_prepare()
        if proc is not None:
            run.retire(proc, ExitReason.STOPPED)
        run.wanted = False
        if not run.idle():
            self.draining[wid] = run

    def revive(self) -> None:
        """A removed watcher is wanted again: its slots start afresh (as those of dropped
        ids do) while its old processes finish stopping."""
        self.removed = False
        for wid in list(self.slots):
            self._drop(wid)

    # ---- reconcile ----
    def next_deadline(self, now: float) -> float | None:
        """The next monotonic time `reconcile` has something to do (a retry, max_age, the
        end of a warm-up, the next start after one)."""
        runs = self.slots.values()
        procs = [run.proc for run in runs if run.proc is not None]
        times = [proc.deadline for proc in procs if proc.deadline]
        times += [r.state.flap.retry_at for r in runs if r.state.flap.phase is FlapPhase.FLAPPING]
        times += [
            max(r.proc.ready_at, r.proc.settled_at)
            for r in runs
            if r.state.state is ProcessState.STARTING and r.proc
        ]
        if self.next_start_at > now and self._waiting():
            times.append(self.next_start_at)
        return min(times) if times else None

    def _waiting(self) -> bool:
        """Some worker waits to be started (by the next start a warm-up allows)."""
        slots = self.slots
        return any(wid not in slots or slots[wid].state.pending for wid in self.desired.wids)

    def idle(self) -> bool:
        return all(run.idle() for run in self.runners()) and self.life.idle()

    def reconcile(self, now: float) -> None:
        """Decide what each slot does at monotonic time `now` and have its runner do it;
        never waits."""
        for wid in [wid for wid, run in self.draining.items() if run.idle()]:
            del self.draining[wid]
        if self.removed:
            self._wake_up(False)
            self._stop_hooked()
            return
        wanted = set(self.desired.wids)
        for wid in [wid for wid in self.slots if wid not in wanted]:
            self._drop(wid)
        if not self.desired.active:
            self._wake_up(False)  # its next start waits for a connection again
            for wid in wanted:
                self._slot(wid, SlotState(wid, pending=False))
            self._stop_hooked()
            return
        if self._rests():
            return  # on_demand: it starts (its before_start hook first) at a connection
        if not self.life.may_start(bool(wanted)):
            return  # its before_start hook runs, or refused the start
        for run in self.slots.values():
            run.apply(slot.retry(run.state, now))
        for run in self.slots.values():
            proc = run.proc
            if proc is None:
                continue
            target = self.target(run.wid)
            unbound = self._unbound(run.wid) if proc.generation != target else ""
            run.apply(slot.tend(run.state, proc, now, target, self.graceful_replace, unbound))
        self._start_missing(now)
        self.life.tend(stopping=False)

    def _stop_hooked(self) -> None:
        """Stop every worker once the before_stop hook is done; after_stop once all are
        gone (see start_stop.py)."""
        if self.life.may_stop():
            self._stop_all()
        self.life.tend(stopping=True)

    # ---- on_demand ----
    def _rests(self) -> bool:
        """Whether the watcher waits for a connection to start its workers (on_demand);
        makes its slots say so and watches its sockets meanwhile."""
        if not self.spec.on_demand:
            self._wake_up(True)
            return False
        runs = [self._slot(wid) for wid in sorted(self.desired.wids)]
        if any(run.proc is not None for run in runs):
            self._wake_up(True)  # workers run: adopted, or started before on_demand was set
        elif self.awake and all(slot.done(run.state, False) for run in runs):
            self._wake_up(False)  # every worker is over, none to start
        if self.awake:
            return False
        sockets = self.desired.current().sockets
        self.rest_note = f"{ON_DEMAND_REST} to {', '.join(sock.name for sock in sockets)}"
        for run in runs:
            run.apply((slot.resting(run.state, self.rest_note), []))
        if runs:  # with no worker here, connections queue until it is scaled up
            for sock in sockets:
                self.host.sockets.on_connection(
                    sock, self.name, functools.partial(self._woken, sock.name)
                )
        return True

    def _wake_up(self, awake: bool) -> None:
        """Awake (its workers run as any watcher's), or not: a start, or the next
        reconcile, rests. Either way nothing is waited for now."""
        if self.rest_note or awake != self.awake:
            self.host.changed()
        self.awake, self.rest_note = awake, ""
        self.host.sockets.stop_waiting(self.name)

    def _woken(self, socket_name: str) -> None:
        """Socket `socket_name` got a connection while the watcher rested: start."""
        if self.awake or self.removed or not self.desired.active or not self.spec.on_demand:
            return
        self._wake_up(True)
        now = self.clock.monotonic()
        for wid in sorted(self.desired.wids):
            run = self._slot(wid)
            run.apply(slot.woken(run.state, now, self.policy()))
        self.host.event(
            "on_demand",
            self.name,
            0,
            f"a connection to {socket_name}: starting {len(self.desired.wids)} workers",
            Severity.INFO,
        )
        self.host.wake()

    def _start_missing(self, now: float) -> None:
        """Start the workers that should run and do not, in wid order; after one with a
        warmup_delay, the next waits until that delay is over (a later reconcile)."""
        for wid in sorted(self.desired.wids):
            if now < self.next_start_at:
                return
            run = self._slot(wid)
            old = run.proc
            target = self.target(wid)
            running = old.generation if old is not None else None
            unbound = self._unbound(wid) if old is not None and running != target else ""
            waits = bool(run.retiring) or run.preparing is not None
            state, go = slot.wants_start(run.state, running, target, unbound, waits)
            run.apply((state, []))
            if not go:
                continue
            started = run.start()
            if old is not None:
                run.retire(old, ExitReason.RESTARTED)
            if started:
                self.next_start_at = slot.start_gate(self.next_start_at, run.state, run.proc)

    def _unbound(self, wid: int) -> str:
        """Why one of the sockets the version `wid` must run gets is not bound ("" when
        all are): its process is then kept (a worker is never replaced by one that
        cannot start) until the socket is bound or the version changes."""
        for sock in self.desired.version_of(wid).sockets:
            bound = self.host.sockets.lookup(sock)
            if bound is None:
                return f"socket {sock.name}: not in the assignment"
            if bound.sock is None:
                return bound.error
        return ""

    # ---- after a restart of the agent ----
    def generation_for(self, key: tuple[Any, ...] | None) -> int:
        """The process generation of a version a process left running runs; -1 for a
        version this assignment no longer has (the process is replaced as usual)."""
        return -1 if key is None else self.versions.get(key, -1)

    def restore_slot(self, record: SlotRecord) -> None:
        """Bring a slot back as the previous image of the agent left it (an exec)."""
        run = self._slot(record.wid)
        run.state = replace(
            run.state,
            state=ProcessState(record.state),  # as it was, not a move
            restarts=record.restarts,
            replacements=record.replacements,
            cause=StartCause(record.cause),
            spawned=record.spawned,
            pending=record.pending,
            message=record.message,
            version=record.version,
            last_exit=record.last_exit,
            health=record.health,
            flap=record.flap,
        )

    def restore_flapping(self, record: SlotFlapping) -> None:
        """Bring back a slot's flapping state as a crashed agent recorded it: a slot
        that waits for its retry or gave up stays so, and the starts in its window
        still count. Not for a wid this watcher no longer has, nor for a slot whose
        version changed since (a new version gets a fresh chance)."""
        if record.wid not in self.desired.wids:
            return
        if record.version != self.desired.version_of(record.wid).label:
            return
        held = _HELD.get(record.flap.phase)
        self._slot(
            record.wid,
            SlotState(
                record.wid,
                state=held or ProcessState.UNSPECIFIED,  # as it was, not a move
                restarts=record.restarts,
                replacements=record.replacements,
                cause=StartCause.NONE if held is None else StartCause.FAILURE,
                spawned=record.spawned,
                pending=held is None,
                version=record.version,
                flap=record.flap,
            ),
        )

    def flapping_records(self) -> list[SlotFlapping]:
        """The flapping state of every slot that is not a fresh one (see records.py)."""
        return [
            SlotFlapping(
                self.name,
                run.wid,
                run.state.version,
                run.state.flap,
                run.state.restarts,
                run.state.spawned,
                run.state.replacements,
            )
            for run in self.slots.values()
            if run.state.flap != FlapState()
        ]

    def adopt(
        self,
        record: WorkerRecord,
        *,
        pidfd: int | None,
        out: PipeEnd | None,
        err: PipeEnd | None,
        partials: Mapping[int, bytes] | None = None,
        gone: bool = False,
    ) -> Proc:
        """Take back a process a previous agent (or image of this one) left running:
        into its slot, or on with its stop (see SlotRunner.adopt). Never restarts it.
        `gone`: it exited meanwhile while being stopped; its stop goes on (its group
        and stop_children descendants may still have to stop)."""
        generation = self.generation_for(record.version_key)
        target = self.target_or_none(record.wid)
        proc = Proc.from_record(
            record,
            generation=generation,
            out=out,
            err=err,
            child=pidfd is None,
            spec=self.spec_of(record.wid) if generation == target else self.spec,
            gone=gone,
        )
        run = self._runner_of(record.wid) if record.stopping else self._slot_for(record)
        run.adopt(proc, record, pidfd, partials or {}, keeps_slot=generation == target)
        return proc

    def _slot_for(self, record: WorkerRecord) -> SlotRunner:
        """The slot of a recorded worker, made from the record if there is none yet."""
        state = SlotState(
            record.wid,
            restarts=record.restarts,
            replacements=record.replacements,
            spawned=record.spawned,
            pending=False,
            version=record.version,
        )
        return self._slot(record.wid, state)

    def target_or_none(self, wid: int) -> int | None:
        """The process generation worker `wid` must run; None if it is not ours to run."""
        return self.target(wid) if wid in self.desired.wids else None

    def exited_while_away(self, record: WorkerRecord, status: int | None) -> None:
        """A worker recorded by the previous agent exited while no agent was running:
        report it and respawn it like any crash (flapping rules included)."""
        if record.wid not in self.desired.wids:
            return
        run = self._slot_for(record)
        run.exited_away(record, status, self.generation_for(record.version_key))

    def snapshot(self) -> tuple[WatcherRecord, list[SlotRecord]]:
        """This watcher as the next image of the agent needs it, beyond its processes'
        records (see handover.py)."""
        slots = [
            SlotRecord(
                watcher=self.name,
                wid=run.wid,
                state=int(run.state.state),
                restarts=run.state.restarts,
                replacements=run.state.replacements,
                cause=run.state.cause.value,
                spawned=run.state.spawned,
                pending=run.state.pending,
                message=run.state.message,
                version=run.state.version,
                last_exit=run.state.last_exit,
                health=run.state.health,
                flap=run.state.flap,
            )
            for run in self.slots.values()
        ]
        return WatcherRecord(self.name, self.graceful_replace), slots

    def records(self) -> list[WorkerRecord]:
        """A record of every live process of this watcher (see records.py)."""
        return [record for run in self.runners() for record in run.records()]

    # ---- stopping ----
    def _stop_all(self) -> None:
        """Stop every process on purpose (a stop, a removal, the agent's shutdown)."""
        for run in self.slots.values():
            run.stop()

    def stop_everything(self) -> list[asyncio.Task[None]]:
        """Stop every process (agent shutdown); returns the stop tasks to await."""
        self.removed = True
        self._stop_all()
        return [task for run in self.runners() for task in run.retiring.values()]

    async def shut_down(self) -> None:
        """Stop every process for the agent's shutdown, with the stop hooks of a watcher
        started here (see StartStop.shut_down)."""
        await self.life.shut_down(self.stop_everything)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every task this watcher and its runners own."""
        return [*self.life.tasks(), *(task for run in self.runners() for task in run.tasks())]

    def close(self, stops: bool) -> None:
        """End every runner's tasks (health checks, hook commands; the stops too with
        `stops`)."""
        self.life.close()
        for run in self.runners():
            run.close(stops)

    # ---- commands and status ----
    def health_of(self, run: SlotRunner) -> tuple[Health, str]:
        """(health, last failure) of the slot's process, for status."""
        has_check = bool(self.spec_of(run.wid).health.type)
        return slot.health_of(run.state, run.proc is not None, has_check)

    def send_signal(self, wid: int, signum: int, children: bool) -> int:
        runs = [run for run in self.slots.values() if not wid or run.wid == wid]
        return sum(run.signal(signum, children) for run in runs)

    def procs(self) -> list[Proc]:
        running = [run.proc for run in self.slots.values() if run.proc is not None]
        return running + [proc for proc in self.stopping() if proc.alive()]

    def stopping(self) -> list[Proc]:
        """The processes of this watcher being stopped."""
        return [proc for run in self.runners() for proc in run.retiring]

    def flapping_now(self) -> bool:
        """Whether some slot waits out a flapping retry (its status reads the clock)."""
        return any(run.state.flap.phase is FlapPhase.FLAPPING for run in self.slots.values())

    def flapping(self, now: float) -> WatcherFlapping:
        """The watcher's flapping as its slots make it (see flapping.watcher_summary)."""
        wanted = set(self.desired.wids)
        states = {wid: run.state.flap for wid, run in self.slots.items() if wid in wanted}
        return flapping.watcher_summary(states, now)

    def phase(self, summary: WatcherFlapping) -> WatcherPhase:
        if not self.desired.active:
            return WatcherPhase.STOPPED
        if summary.phase is FlapPhase.FLAPPING:
            return WatcherPhase.FLAPPING
        if summary.phase is FlapPhase.FATAL:
            return WatcherPhase.FATAL
        return WatcherPhase.ACTIVE
