"""One watcher's workers on this host, reconciled to its WatcherAssignment.

A watcher owns one slot per worker id it must run here. Desired-state changes (wid
list, active flag, spec fingerprint, inherited sockets, restart and reset tokens) are
recorded by `update` and acted on by `reconcile`, which the engine calls in priority
order. `reconcile` decides and acts without ever waiting, so that no watcher holds up
another: a `warmup_delay` is a deadline (the next start of this watcher, and the time
its warming worker counts as running) that `next_deadline` tells the engine to wake for.

Exits arrive synchronously from the reaper and are handled at once: an unplanned exit
goes through the flapping rules of its slot (see flapping.py) and, unless that slot
flaps, is respawned in the same event-loop turn. A slot that flaps waits on its own;
the watcher's other workers go on serving. Stopping a process is a task (stop signal,
grace period, SIGKILL) owned by the engine's TaskGroup, so a slow stop never delays
anything else. So are health checks: one task per process with a check, cancelled
when the process leaves its slot. An unhealthy process is stopped gracefully, counted
as a crash (flapping rules) and started again.

During a rolling change the assignment pins some worker ids to an earlier version
of the watcher; each slot runs the version its wid is given, and a process is
replaced when that changes. A new process of the batch on probation that exits or
fails its health check is left stopped, outside the flapping rules: the controller
halts the rollout and pins the wid back to the version that worked.

A slot counts the processes it starts after its first by why the one before went:
`restarts` after a failure (an exit nobody asked for, a failed health check, a spawn
error; a retry after flapping too), `replacements` after a replacement on purpose (a
restart, a reload, a change of the watcher, rolling or not, max_age). A start after a
stop the user asked for is neither.

When the agent restarts, its workers are not started again: `adopt` puts a worker
that kept running back in its slot (or resumes its stop), `restore_slot` brings back
a slot as the previous image of the agent left it, and `exited_while_away` reports a
worker that exited while no agent ran, which is then respawned like any crash.
"""

from __future__ import annotations

import asyncio
import enum
import os
import signal
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from stack.agent import flapping, health
from stack.agent.flapping import Decision, FlapPhase, FlapState, WatcherFlapping
from stack.agent.handover import SlotRecord, WatcherRecord
from stack.agent.health import CheckContext, Health, HealthState
from stack.agent.output import LogHub
from stack.agent.process import (
    PipeEnd,
    Proc,
    SpawnError,
    build_launch,
    signal_group,
    signal_number,
    spawn,
    stop_process,
)
from stack.agent.reaper import Reaper, describe
from stack.agent.records import WorkerRecord
from stack.agent.sockets import BoundSocket, SocketPool
from stack.agent.states import ProcessState, transition
from stack.agent.wire import LastExit, exit_reason, reason_name
from stack.spec.model import (
    SocketSpec,
    WatcherSpec,
    passed_as_fds,
    version_fingerprint,
    version_label,
)
from stack.v1 import types_pb2

R = types_pb2.ExitReason
_AFTER_UNHEALTHY = (
    ProcessState.STOPPING, ProcessState.EXITED, ProcessState.BACKOFF, ProcessState.FATAL,
)  # fmt: skip
INFO, WARNING, ERROR = types_pb2.SEVERITY_INFO, types_pb2.SEVERITY_WARNING, types_pb2.SEVERITY_ERROR
AWAY = "exited while the agent was down"


class Host(Protocol):
    """What a watcher needs from the engine that owns it."""

    reaper: Reaper
    logs: LogHub
    sockets: SocketPool

    def event(
        self, kind: str, watcher: str, wid: int, message: str, severity: types_pb2.Severity
    ) -> None: ...
    def changed(self) -> None: ...
    def wake(self) -> None: ...
    def run_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...


class StartCause(enum.Enum):
    """Why a slot's next process is started, which says what it counts as."""

    NONE = ""
    """The first, or one after a stop the user asked for: counted as neither."""
    FAILURE = "failure"
    """The previous one failed: a restart."""
    REPLACEMENT = "replacement"
    """The previous one is replaced on purpose: a replacement."""


@dataclass(eq=False)
class Slot:
    """One worker id of the watcher on this host."""

    wid: int
    state: ProcessState = ProcessState.UNSPECIFIED
    proc: Proc | None = None
    restarts: int = 0
    """Processes started after a failure of the one before (status's RESTARTS)."""
    replacements: int = 0
    """Processes started to replace the one before on purpose (status's REPLACED)."""
    cause: StartCause = StartCause.NONE
    """What the next process started in this slot counts as."""
    spawned: int = 0
    last_exit: LastExit | None = None
    message: str = ""
    pending: bool = True
    """Should be started by the next reconcile (new, restarted, retried, reset)."""
    health: HealthState = field(default_factory=HealthState)
    """What the health checks of the current process found (when it has a check)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The environment the current process was started with (exec checks get it)."""
    version: str = ""
    """Version.label of the last process started (or tried) in this slot."""
    blocked: str = ""
    """Why the version this slot must run cannot start here (a socket it cannot bind):
    its process, of another version, is kept meanwhile."""
    ready_at: float = 0.0
    """Monotonic time a STARTING process is done with its warmup_delay."""
    flap: FlapState = field(default_factory=FlapState)
    """The slot's flapping bookkeeping (see flapping.py)."""

    def move(self, new: ProcessState) -> None:
        self.state = transition(self.state, new)


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
    generation: int = 0
    """The process generation of the current version (see `versions`)."""
    graceful_replace: bool = False
    slots: dict[int, Slot] = field(default_factory=dict)
    retiring: dict[Proc, asyncio.Task[None]] = field(default_factory=dict)
    checks: dict[Proc, asyncio.Task[None]] = field(default_factory=dict)
    """The health-check task of each running process (with a check)."""
    removed: bool = False
    agent_env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    versions: dict[tuple[Any, ...], int] = field(default_factory=dict)
    """Version.key -> process generation, for the current and the pinned versions."""
    next_start_at: float = 0.0
    """Monotonic time before which no worker is started by `reconcile` (warmup_delay)."""

    def __post_init__(self) -> None:
        self.versions[self.desired.current().key] = self.generation
        for version in self.desired.pinned.values():
            self._generation_of(version.key)

    @property
    def name(self) -> str:
        return self.desired.spec.name

    @property
    def spec(self) -> WatcherSpec:
        return self.desired.spec

    # ---- desired state ----
    def update(self, new: Desired) -> None:
        old = self.desired
        before = {wid: self.target(wid) for wid in self.slots}
        old_key, new_key = old.current().key, new.current().key
        graceful = new.graceful if new.restart_token != old.restart_token else False
        if new.reset_token != old.reset_token:
            self.reset()
        if new.active and not old.active:
            for slot in self.slots.values():
                slot.pending = True
        self.desired = new
        if new_key != old_key:
            self.generation = self._generation_of(new_key)
            self.graceful_replace = graceful
        keep = {new_key, *(version.key for version in new.pinned.values())}
        for key in keep:
            self._generation_of(key)
        self.versions = {key: gen for key, gen in self.versions.items() if key in keep}
        for wid, slot in self.slots.items():
            if self.target(wid) != before[wid]:
                slot.pending = True
                slot.flap = flapping.reset()  # a new version gets a fresh chance
                if slot.spawned and slot.state is not ProcessState.STOPPED:
                    slot.cause = StartCause.REPLACEMENT
        if new.spec.health != old.spec.health:
            self._recheck_all()

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
        """Clear flapping/fatal; everything missing is started again."""
        if any(slot.flap.phase is not FlapPhase.ACTIVE for slot in self.slots.values()):
            self.host.event("reset", self.name, 0, "flapping state cleared", INFO)
        for slot in self.slots.values():
            slot.flap = flapping.reset()
            slot.pending = True
            slot.message = ""

    # ---- reconcile ----
    def next_deadline(self, now: float) -> float | None:
        """The next monotonic time `reconcile` has something to do (a retry, max_age, the
        end of a warm-up, the next start after one)."""
        slots = self.slots.values()
        procs = [slot.proc for slot in slots if slot.proc is not None]
        times = [proc.deadline for proc in procs if proc.deadline]
        times += [s.flap.retry_at for s in slots if s.flap.phase is FlapPhase.FLAPPING]
        times += [s.ready_at for s in slots if s.state is ProcessState.STARTING and s.proc]
        if self.next_start_at > now and self._waiting():
            times.append(self.next_start_at)
        return min(times) if times else None

    def _waiting(self) -> bool:
        """Some worker waits to be started (by the next start a warm-up allows)."""
        return any(wid not in self.slots or self.slots[wid].pending for wid in self.desired.wids)

    def idle(self) -> bool:
        return not self.retiring and all(slot.proc is None for slot in self.slots.values())

    def reconcile(self, now: float) -> None:
        """Act on the desired state at monotonic time `now`; never waits."""
        if self.removed:
            self._stop_all()
            return
        wanted = set(self.desired.wids)
        for wid in [wid for wid in self.slots if wid not in wanted]:
            slot = self.slots.pop(wid)
            if slot.proc is not None:
                self._retire(slot.proc, R.EXIT_REASON_STOPPED)
        if not self.desired.active:
            for wid in wanted:
                self.slots.setdefault(wid, Slot(wid, pending=False))
            self._stop_all()
            return
        for slot in self.slots.values():
            slot.flap, decision = flapping.tick(slot.flap, now)
            if decision is Decision.RETRY:
                self.host.event("retry", self.name, slot.wid, "retrying after flapping", INFO)
                slot.pending = True
        for slot in self.slots.values():
            proc = slot.proc
            if proc is None:
                continue
            if slot.state is ProcessState.STARTING and now >= slot.ready_at:
                slot.move(ProcessState.RUNNING)  # its warmup_delay is over
                self.host.changed()
            if proc.generation == self.target(slot.wid) and slot.blocked:
                slot.blocked = ""  # pinned back to the version it runs
                self.host.changed()
            if proc.generation != self.target(slot.wid):
                slot.pending = True
                if self._blocked(slot):
                    continue
                slot.cause = StartCause.REPLACEMENT
                if not self.graceful_replace:
                    slot.proc = None
                    slot.move(ProcessState.STOPPING)
                    self._retire(proc, R.EXIT_REASON_RESTARTED)
            elif proc.deadline and now >= proc.deadline:
                slot.proc = None
                slot.pending = True
                slot.cause = StartCause.REPLACEMENT
                slot.move(ProcessState.STOPPING)
                self._retire(proc, R.EXIT_REASON_MAX_AGE)
        self._start_missing(now)

    def _start_missing(self, now: float) -> None:
        """Start the workers that should run and do not, in wid order; after one with a
        warmup_delay, the next waits until that delay is over (a later reconcile)."""
        for wid in sorted(self.desired.wids):
            if now < self.next_start_at:
                return
            slot = self.slots.get(wid)
            if slot is None:
                slot = self.slots[wid] = Slot(wid)
            if not slot.pending or slot.flap.phase is not FlapPhase.ACTIVE:
                continue
            old = slot.proc
            if old is not None and old.generation == self.target(wid):
                slot.pending = False
                continue
            if old is not None and self._blocked(slot):
                continue
            if old is None and any(p.wid == wid for p in self.retiring):
                continue  # the previous process of this wid is still stopping
            started = self._start(slot)
            if old is not None:
                self._retire(old, R.EXIT_REASON_RESTARTED)
            if started and slot.state is ProcessState.STARTING:
                self.next_start_at = slot.ready_at

    def _blocked(self, slot: Slot) -> bool:
        """Whether the version `slot` must run cannot start for want of a socket: its
        process is then kept (a worker is never replaced by one that cannot start) and
        `slot.blocked` says why, until the socket is bound or the version changes."""
        why = self._unbound(self.desired.version_of(slot.wid))
        if why != slot.blocked:
            slot.blocked = why
            self.host.changed()
        return bool(why)

    def _unbound(self, version: Version) -> str:
        """Why one of the sockets `version`'s workers get is not bound ("" when all are)."""
        for sock in version.fds:
            bound = self.host.sockets.lookup(sock)
            if bound is None:
                return f"socket {sock.name}: not in the assignment"
            if bound.sock is None:
                return bound.error
        return ""

    # ---- starting ----
    def _start(self, slot: Slot) -> bool:
        """Spawn into `slot`; a spawn error is a start that failed at once (the slot's
        flapping rules decide whether to try again now). True if running."""
        while True:
            version = self.desired.version_of(slot.wid)
            slot.version = version.label
            slot.flap = flapping.started(slot.flap, time.monotonic(), self.spec.flapping)
            _count_start(slot)
            try:
                proc = self._spawn(slot, version)
            except (SpawnError, OSError) as exc:
                text = str(exc) if isinstance(exc, SpawnError) else f"spawn error: {exc}"
                slot.proc = None
                slot.last_exit = LastExit(0, 0, R.EXIT_REASON_SPAWN_ERROR, time.time(), text)
                slot.message = text
                slot.move(ProcessState.EXITED)
                self.host.event("spawn_error", self.name, slot.wid, text, ERROR)
                self.host.changed()
                if slot.wid in self.desired.probation and version == self.desired.current():
                    slot.pending = False  # the controller halts the rollout
                    return False
                slot.flap = flapping.spawn_failed(slot.flap, text, self.spec.max_retry)
                if slot.flap.phase is FlapPhase.FATAL:
                    self._give_up(slot)
                    return False
                if not self.spec.respawn:
                    slot.pending = False
                    return False
                slot.cause = StartCause.FAILURE
                if self._record_exit(slot) is Decision.RESPAWN:
                    continue
                return False
            slot.flap = flapping.spawned(slot.flap)
            slot.spawned += 1
            slot.proc = proc
            slot.pending = False
            slot.message = slot.blocked = ""
            warmup = version.spec.warmup_delay
            slot.move(ProcessState.STARTING if warmup > 0 else ProcessState.RUNNING)
            slot.ready_at = proc.started_mono + warmup if warmup > 0 else 0.0
            if warmup > 0:
                self.host.wake()  # (a respawn between reconciles: wake when it is warm)
            self.host.event("spawn", self.name, slot.wid, f"pid {proc.pid}", INFO)
            self._start_checks(slot)
            self.host.changed()
            return True

    def _spawn(self, slot: Slot, version: Version) -> Proc:
        wid, spec = slot.wid, version.spec
        pairs: list[tuple[str, int]] = []
        for sock in version.fds:
            bound = self.host.sockets.lookup(sock)
            if bound is None or bound.sock is None:
                why = bound.error if bound is not None else "not in the assignment"
                raise SpawnError(f"spawn error: socket {sock.name!r} is not bound: {why}")
            pairs.append((sock.name, bound.fd))
        launch = build_launch(spec, wid, pairs, self.agent_env)
        proc = spawn(launch, spec, wid, self.versions[version.key])
        proc.version_key = version.key
        slot.env = launch.env
        self.host.reaper.watch(proc.pid, lambda status: self._on_exit(proc, status))
        self._capture(proc)
        if spec.max_age > 0:
            variance = int.from_bytes(os.urandom(2)) / 65535 * spec.max_age_variance
            proc.deadline = proc.started_mono + spec.max_age + variance
            self.host.wake()
        return proc

    def _capture(self, proc: Proc, partials: Mapping[int, bytes] | None = None) -> None:
        """Read the process's output pipes (`partials`: lines begun before an exec)."""
        for stream, pipe in (("out", proc.out), ("err", proc.err)):
            if pipe is not None:
                partial = (partials or {}).get(pipe.fd, b"")
                self.host.logs.attach(self.name, proc.wid, stream, pipe.fd, partial)

    # ---- after a restart of the agent ----
    def generation_for(self, key: tuple[Any, ...] | None) -> int:
        """The process generation of a version a process left running runs; -1 for a
        version this assignment no longer has (the process is replaced as usual)."""
        return -1 if key is None else self.versions.get(key, -1)

    def restore_slot(self, record: SlotRecord) -> None:
        """Bring a slot back as the previous image of the agent left it (an exec)."""
        slot = self.slots.setdefault(record.wid, Slot(record.wid))
        slot.state = ProcessState(record.state)  # as it was, not a move
        slot.restarts, slot.spawned = record.restarts, record.spawned
        slot.replacements, slot.cause = record.replacements, StartCause(record.cause)
        slot.pending, slot.message, slot.version = record.pending, record.message, record.version
        slot.last_exit, slot.health, slot.flap = record.last_exit, record.health, record.flap

    def adopt(
        self,
        record: WorkerRecord,
        *,
        pidfd: int | None,
        out: PipeEnd | None,
        err: PipeEnd | None,
        partials: Mapping[int, bytes] | None = None,
    ) -> Proc:
        """Take back a process a previous agent (or image of this one) left running:
        into its slot, or on with its stop. Its exit is watched by the reaper (a child
        of this agent: `pidfd` None) or through `pidfd` (which the reaper then owns),
        and its output read again. Never restarts it."""
        generation = self.generation_for(record.version_key)
        spec = self.spec_of(record.wid) if generation == self.target_or_none(record.wid) else None
        proc = Proc.from_record(
            record,
            generation=generation,
            out=out,
            err=err,
            child=pidfd is None,
            spec=spec or self.spec,
        )
        self._capture(proc, partials)
        stop = record.stopping
        if stop is not None:
            proc.stop_deadline = stop.deadline
            self._retire(proc, exit_reason(stop.reason), stop.note, resume=stop.deadline > 0)
        else:
            self._into_slot(proc, record)
        if pidfd is None:
            self.host.reaper.watch(proc.pid, lambda status: self._on_exit(proc, status))
        else:
            self.host.reaper.follow(pidfd, proc, lambda status: self._on_exit(proc, status))
        if proc.deadline:
            self.host.wake()
        return proc

    def _into_slot(self, proc: Proc, record: WorkerRecord) -> None:
        slot = self._slot_for(record)
        if slot.proc is not None:  # two claim the slot: the one on the wanted version stays
            if proc.generation != self.target_or_none(proc.wid):
                self._retire(proc, R.EXIT_REASON_RESTARTED)
                return
            self._retire(slot.proc, R.EXIT_REASON_RESTARTED)
        slot.proc = proc
        slot.pending = False
        if slot.state is not ProcessState.RUNNING:
            slot.move(ProcessState.RUNNING)  # (a warmup_delay cut short by the restart)
        slot.env = self._env_of(proc.wid)
        self._start_checks(slot, keep_health=True)
        self.host.changed()

    def _slot_for(self, record: WorkerRecord) -> Slot:
        """The slot of a recorded worker, made from the record if there is none yet."""
        slot = self.slots.get(record.wid)
        if slot is None:
            slot = self.slots[record.wid] = Slot(
                record.wid,
                restarts=record.restarts,
                replacements=record.replacements,
                spawned=record.spawned,
                pending=False,
            )
            slot.version = record.version
        return slot

    def _env_of(self, wid: int) -> Mapping[str, str]:
        """The environment worker `wid` was started with, made again (for exec checks)."""
        version = self.desired.version_of(wid)
        try:
            pairs = [(name, -1) for name in version.names]
            return build_launch(version.spec, wid, pairs, self.agent_env).env
        except (SpawnError, OSError):
            return {}

    def target_or_none(self, wid: int) -> int | None:
        """The process generation worker `wid` must run; None if it is not ours to run."""
        return self.target(wid) if wid in self.desired.wids else None

    def exited_while_away(self, record: WorkerRecord, status: int | None) -> None:
        """A worker recorded by the previous agent exited while no agent was running:
        report it and respawn it like any crash (flapping rules included)."""
        if record.wid not in self.desired.wids:
            return
        slot = self._slot_for(record)
        if slot.proc is not None:
            return  # its replacement runs already
        code, sig = describe(status)
        now, unknown = time.time(), status is None
        slot.last_exit = LastExit(code, sig, R.EXIT_REASON_CRASHED, now, AWAY, unknown)
        slot.move(ProcessState.EXITED)
        text = f"pid {record.pid} {AWAY}: {_how(status)}"
        self.host.event("exit", self.name, slot.wid, text, WARNING)
        self.host.changed()
        if self._stays_down(slot, None, self.generation_for(record.version_key)):
            return
        slot.cause = StartCause.FAILURE
        if self._record_exit(slot) is Decision.RESPAWN:
            slot.pending = True
            self.host.wake()

    def snapshot(self) -> tuple[WatcherRecord, list[SlotRecord]]:
        """This watcher as the next image of the agent needs it, beyond its processes'
        records (see handover.py)."""
        slots = [
            SlotRecord(
                watcher=self.name,
                wid=slot.wid,
                state=int(slot.state),
                restarts=slot.restarts,
                replacements=slot.replacements,
                cause=slot.cause.value,
                spawned=slot.spawned,
                pending=slot.pending,
                message=slot.message,
                version=slot.version,
                last_exit=slot.last_exit,
                health=slot.health,
                flap=slot.flap,
            )
            for slot in self.slots.values()
        ]
        return WatcherRecord(self.name, self.graceful_replace), slots

    def records(self) -> list[WorkerRecord]:
        """A record of every live process of this watcher (see records.py)."""
        found = []
        for proc in self.procs():
            slot = self.slots.get(proc.wid)
            if slot is not None and slot.proc is proc:
                found.append(proc.record(False, slot.restarts, slot.spawned, slot.replacements))
            else:
                found.append(proc.record(proc in self.retiring))
        return found

    # ---- exits ----
    def _on_exit(self, proc: Proc, status: int | None) -> None:
        """`proc` exited with this wait status (None: not known, it was adopted)."""
        code, sig = describe(status)
        if not proc.exited.done():
            proc.exited.set_result(status)
        self._cancel_checks(proc)
        self.host.changed()
        if proc in self.retiring:
            return
        signal_group(proc.pid, signal.SIGKILL)  # leftovers of the group must not outlive it
        slot = self.slots.get(proc.wid)
        if slot is None or slot.proc is not proc:
            return
        slot.proc = None
        unknown = status is None
        slot.last_exit = LastExit(code, sig, R.EXIT_REASON_CRASHED, time.time(), "", unknown)
        slot.move(ProcessState.EXITED)
        self.host.event("exit", self.name, slot.wid, f"pid {proc.pid} {_how(status)}", WARNING)
        if self._stays_down(slot, proc):
            return
        slot.cause = StartCause.FAILURE
        if self._record_exit(slot) is Decision.RESPAWN:
            self._start(slot)

    def _stays_down(self, slot: Slot, proc: Proc | None, generation: int = -1) -> bool:
        """After `proc` (of `generation` when it is gone already) failed: True (and
        nothing pending) when it is not to be started again: no respawn, stopped,
        removed, or a rollout's new process on probation (the controller halts the
        rollout instead)."""
        if proc is not None:
            generation = proc.generation
        keep_down = (
            self.on_probation(slot.wid, generation)
            or not self.spec.respawn
            or not self.desired.active
            or self.removed
        )
        if keep_down:
            slot.pending = False
        return keep_down

    def _record_exit(self, slot: Slot) -> Decision:
        """`slot`'s process died unplanned (it has none now): may it start again now?
        A slot that flaps waits (BACKOFF) or gives up (FATAL) on its own; the
        watcher's other slots are not touched."""
        spec = self.spec.flapping
        slot.flap, decision = flapping.may_restart(slot.flap, time.monotonic(), spec)
        if decision is Decision.BACKOFF:
            text = (
                f"started {spec.attempts + 1} times within {spec.window:g}s: "
                f"flapping, retry in {spec.retry_in:g}s"
            )
            self.host.event("flapping", self.name, slot.wid, text, WARNING)
            slot.move(ProcessState.BACKOFF)
            slot.pending = False
            self.host.changed()
            self.host.wake()
        elif decision is Decision.FATAL:
            self._give_up(slot)
        return decision

    def _give_up(self, slot: Slot) -> None:
        """`slot` is fatal (flapped after max_retry retries, or could not start): it
        stays down until reset, start or a new version."""
        text = flapping.message(slot.flap, time.monotonic())
        self.host.event("fatal", self.name, slot.wid, text, ERROR)
        slot.move(ProcessState.FATAL)
        slot.pending = False
        self.host.changed()

    # ---- stopping ----
    def _stop_all(self) -> None:
        """Stop every process on purpose (a stop, a removal, the agent's shutdown)."""
        for slot in self.slots.values():
            if slot.proc is not None:
                self._retire(slot.proc, R.EXIT_REASON_STOPPED)
                slot.proc = None
                slot.move(ProcessState.STOPPING)
            elif slot.state not in (ProcessState.STOPPING, ProcessState.STOPPED):
                slot.move(ProcessState.STOPPED)
            slot.pending = False
            slot.cause = StartCause.NONE

    def _retire(
        self, proc: Proc, reason: types_pb2.ExitReason, note: str = "", resume: bool = False
    ) -> None:
        """Stop `proc` in a task; `note` goes into its LastExit message. With `resume`, a
        previous image of the agent sent the stop signal already (see stop_process)."""
        self._cancel_checks(proc)
        if proc in self.retiring:
            return
        proc.stop_reason, proc.stop_note = reason, note
        self.retiring[proc] = self.host.run_task(
            self._stop(proc, reason, proc.spec or self.spec, note, resume),
            name=f"stop {self.name}[{proc.wid}] {proc.pid}",
        )
        self.host.changed()

    async def _stop(
        self,
        proc: Proc,
        reason: types_pb2.ExitReason,
        spec: WatcherSpec,
        note: str = "",
        resume: bool = False,
    ) -> None:
        try:
            killed = await stop_process(
                proc,
                signal_number(spec.stop_signal),
                spec.graceful_timeout,
                spec.stop_children,
                resume=resume,
            )
        finally:
            self.retiring.pop(proc, None)
            self.host.reaper.sweep_soon()  # what the stop spared and is still left over
            self.host.changed()
            self.host.wake()
        status = proc.exited.result() if proc.exited.done() else 0
        code, sig = describe(status)
        final = R.EXIT_REASON_KILLED if killed else reason
        how = "SIGKILLed after graceful_timeout" if killed else reason_name(final)
        self.host.event("stopped", self.name, proc.wid, f"pid {proc.pid} {how}", INFO)
        slot = self.slots.get(proc.wid)
        if slot is not None and slot.proc is None:
            slot.last_exit = LastExit(code, sig, final, time.time(), note, status is None)
            if slot.state is ProcessState.STOPPING and not slot.pending:
                slot.move(ProcessState.STOPPED)

    def stop_everything(self) -> list[asyncio.Task[None]]:
        """Stop every process (agent shutdown); returns the stop tasks to await."""
        self.removed = True
        self._stop_all()
        return list(self.retiring.values())

    # ---- health checks ----
    def _start_checks(self, slot: Slot, keep_health: bool = False) -> None:
        """Check `slot`'s new process, if the watcher has a health check."""
        if not keep_health:
            slot.health = HealthState()
        proc = slot.proc
        if proc is None or not self.spec_of(slot.wid).health.type or proc in self.checks:
            return
        self.checks[proc] = self.host.run_task(
            self._check_loop(slot, proc), name=f"health {self.name}[{slot.wid}] {proc.pid}"
        )

    def _cancel_checks(self, proc: Proc) -> None:
        task = self.checks.pop(proc, None)
        if task is not None:
            task.cancel()

    def cancel_all_checks(self) -> None:
        for proc in list(self.checks):
            self._cancel_checks(proc)

    def _recheck_all(self) -> None:
        """The health check changed: running processes start over with the new one."""
        self.cancel_all_checks()
        for slot in self.slots.values():
            if slot.proc is not None and slot.proc.alive():
                self._start_checks(slot)
        self.host.changed()

    async def _check_loop(self, slot: Slot, proc: Proc) -> None:
        """Check `proc` every interval until it leaves `slot` or is found unhealthy."""
        try:
            while True:
                spec = self.spec_of(slot.wid).health
                await asyncio.sleep(max(spec.interval, health.MIN_INTERVAL))
                if slot.proc is not proc:
                    return
                if slot.state is not ProcessState.RUNNING:
                    continue  # still in its warmup_delay
                version = self.desired.version_of(slot.wid)
                ctx = CheckContext(
                    sockets=self._bound_of(version),
                    inherited=version.names,
                    env=slot.env,
                    pid=proc.pid,
                    cwd=self.spec_of(slot.wid).working_dir,
                    reaper=self.host.reaper,
                    uid=proc.uid,
                    gid=proc.gid,
                )
                failure = await health.check(spec, ctx)
                if slot.proc is not proc:
                    return
                before = slot.health
                slot.health, restart = health.record(before, failure, spec.retries)
                if slot.health != before:
                    self.host.changed()
                if restart:
                    del self.checks[proc]  # this task ends here; nothing to cancel
                    self._unhealthy(slot, proc)
                    return
        finally:
            if self.checks.get(proc) is asyncio.current_task():
                del self.checks[proc]

    def _bound_of(self, version: Version) -> dict[str, BoundSocket]:
        """The sockets `version`'s processes inherit, as bound, by name."""
        found = {sock.name: self.host.sockets.lookup(sock) for sock in version.fds}
        return {name: bound for name, bound in found.items() if bound is not None}

    def _unhealthy(self, slot: Slot, proc: Proc) -> None:
        """Stop a process that failed its check `retries` times; it counts as a crash."""
        why = slot.health.message
        self.host.event("unhealthy", self.name, slot.wid, f"pid {proc.pid}: {why}", WARNING)
        slot.proc = None
        slot.move(ProcessState.STOPPING)
        self._retire(proc, R.EXIT_REASON_UNHEALTHY, why)
        if self._stays_down(slot, proc):
            return
        slot.cause = StartCause.FAILURE
        if self._record_exit(slot) is Decision.RESPAWN:
            slot.pending = True  # started again once the stop is done (it wakes reconcile)

    def health_of(self, slot: Slot) -> tuple[Health, str]:
        """(health, last failure) of the slot's process, for status. Unhealthy stays shown
        while that process stops and until a new one starts (unless stopped on purpose)."""
        if not self.spec_of(slot.wid).health.type:
            return Health.UNSPECIFIED, ""
        if slot.proc is None:
            after_failure = slot.state in _AFTER_UNHEALTHY
            if not (after_failure and slot.health.health is Health.UNHEALTHY):
                return Health.UNSPECIFIED, ""
        return slot.health.health, slot.health.message

    # ---- commands and status ----
    def send_signal(self, wid: int, signum: int, children: bool) -> int:
        count = 0
        for slot in self.slots.values():
            if slot.proc is None or (wid and slot.wid != wid):
                continue
            try:
                if children:
                    os.killpg(slot.proc.pid, signum)
                else:
                    os.kill(slot.proc.pid, signum)
                count += 1
            except ProcessLookupError:
                continue
        return count

    def procs(self) -> list[Proc]:
        running = [slot.proc for slot in self.slots.values() if slot.proc is not None]
        return running + [proc for proc in self.retiring if proc.alive()]

    def flapping(self, now: float) -> WatcherFlapping:
        """The watcher's flapping as its slots make it (see flapping.watcher_summary)."""
        wanted = set(self.desired.wids)
        states = {wid: slot.flap for wid, slot in self.slots.items() if wid in wanted}
        return flapping.watcher_summary(states, now)

    def phase(self, summary: WatcherFlapping) -> types_pb2.WatcherPhase:
        if not self.desired.active:
            return types_pb2.WATCHER_PHASE_STOPPED
        if summary.phase is FlapPhase.FLAPPING:
            return types_pb2.WATCHER_PHASE_FLAPPING
        if summary.phase is FlapPhase.FATAL:
            return types_pb2.WATCHER_PHASE_FATAL
        return types_pb2.WATCHER_PHASE_ACTIVE


def _count_start(slot: Slot) -> None:
    """Count the start of a process in `slot` (before its spawn: a spawn error counts)."""
    if slot.cause is StartCause.FAILURE:
        slot.restarts += 1
    elif slot.cause is StartCause.REPLACEMENT:
        slot.replacements += 1
    slot.cause = StartCause.NONE


def _how(status: int | None) -> str:
    """How a worker ended, for an exit event: `exit code 3 (crashed)`."""
    if status is None:
        return "exit status unknown (not the agent's child)"
    code, sig = describe(status)
    return f"killed by signal {sig} (crashed)" if sig else f"exit code {code} (crashed)"
