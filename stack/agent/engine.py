"""All the watchers and sockets of this host: apply an Assignment, report what is observed.

The engine is the agent without the network. `apply` takes the WHOLE desired set for
this host (level-triggered) and records it; one reconcile task walks the watchers in
priority order and makes reality match. Exits come from the reaper (SIGCHLD), output
from the log hub, figures from the stats sampler. The session (or a test) reads
`observed()`, drains events and log lines, and waits on `updates` to know when there is
something new. Used as `async with Engine(settings) as engine:`; leaving the block
stops every worker gracefully and closes the sockets.

The engine survives the agent's own restarts. `hand_over` freezes it for an exec of
the agent (nothing is stopped, reaped or closed from then on) and returns the state
the next image takes over with `Engine(settings, handover)`. After a crash, `restore`
adopts the workers the worker records name, takes back their pipes and sockets,
and reports those that exited meanwhile; nothing that still runs is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any

import stack
from stack import aio
from stack.agent import persist
from stack.agent.adoption import (
    Fate,
    Identified,
    Kind,
    boot_id,
    descendants_outside_group,
    identify,
    regain,
    same_file,
    signal_if_same,
)
from stack.agent.clock import SYSTEM, Clock
from stack.agent.flapping import message as flap_message
from stack.agent.handover import Handover
from stack.agent.heap import give_back_freed_heap
from stack.agent.output import Line, LogHub
from stack.agent.process import PipeEnd, Proc, SpawnError, signal_number, stop_process, worker_ids
from stack.agent.reaper import Reaper
from stack.agent.records import PipeRecord, Records, SocketRecord, WorkerRecord
from stack.agent.settings import AgentSettings
from stack.agent.sockets import SocketPool
from stack.agent.stats import ProcStats, StatsSampler
from stack.agent.watcher import Desired, Version, Watcher
from stack.security.safe_files import private_dir
from stack.spec.assignment import Assignment, WatcherAssignment
from stack.spec.model import SocketSpec, WatcherSpec, socket_binding, version_sockets
from stack.spec.observed import (
    ExitReason,
    Observed,
    ProcessState,
    ProcessStatus,
    SocketStatus,
    WatcherObserved,
)
from stack.spec.reports import Event, LogLine, Severity

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
SAVE_RETRY_SECONDS = 1.0
"""How soon a save to the data dir that failed (a full disk) is tried again."""
_LEVELS = {Severity.WARNING: logging.WARNING, Severity.ERROR: logging.ERROR}


class Engine:
    """The per-host process and socket manager behind `stack-agent`."""

    def __init__(
        self, settings: AgentSettings, handover: Handover | None = None, clock: Clock = SYSTEM
    ) -> None:
        self.settings = settings
        self.clock = clock
        """What every timing rule of the engine and its watchers reads (see clock.py)."""
        self.host_id = settings.host_id
        self.reaper = Reaper()
        self.reaper.spared = self._stop_in_progress
        self.sockets = SocketPool()
        self.logs = LogHub(
            settings.logs_dir,
            settings.ship_lines,
            settings.max_line_bytes,
            settings.ship_rate,
            file_mode=0o600 if settings.log_group is None else 0o640,
            file_group=settings.log_group,
        )
        self.logs.on_problem = self._log_file_problem
        self.stats = StatsSampler(time.monotonic)
        self._stats_wanted_until = 0.0
        """time.monotonic() until which someone looks at the figures (see want_stats)."""
        self._stats_wake = asyncio.Event()
        self.watchers: dict[str, Watcher] = {}
        self._removed: list[Watcher] = []
        self.generation = 0
        self.fencing_token = 0
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.lines_shipped = 0
        """Output lines handed to the session for the controller, since the agent started."""
        self.lines_dropped = 0
        """Output lines dropped from shipping (over --ship-rate, or the buffer full)."""
        self._status_dirty = True
        self._observed: Observed | None = None
        """The last observed(), while it is still true (see there)."""
        self._records_dirty = False
        self._unsaved_assignment: Assignment | None = None
        """The assignment applied last, while its save has not succeeded yet."""
        self._save_error = ""
        """Why saving to the data dir fails ("" while it works): a full disk."""
        self._save_retry: asyncio.TimerHandle | None = None
        self._save_waiters: list[asyncio.Future[None]] = []
        """Those waiting in records_saved for the next save."""
        self._workers_changed = False
        """Records changed since the flush loop last gave freed heap back."""
        self._flush_due = asyncio.Event()
        """Set when output was written or records changed: the flush loop has work."""
        self._tg: aio.TaskGroup | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._wake_event: asyncio.Event | None = None
        self.updates = asyncio.Event()
        """Set whenever there is something new to send (status, events, log lines)."""
        self._assignment: Assignment | None = None
        self._leftovers: dict[Proc, asyncio.Task[None]] = {}
        """Workers of a previous life whose watcher is gone: being stopped."""
        self._handover = handover
        self._frozen = False
        self.started_at = handover.started_at if handover else clock.time()
        """Unix time this agent process started (kept across its re-executions)."""
        self.reexecs = handover.reexecs + 1 if handover else 0
        self.reexecuted_at = clock.time() if handover else 0.0
        """Unix time of the last re-execution in place; 0: never."""

    # ---- life cycle ----
    async def __aenter__(self) -> Engine:
        private_dir(self.settings.data_dir, persist.FILES)
        private_dir(self.settings.logs_dir)
        self.logs.keep_intents(self.settings.data_dir)
        self.updates = asyncio.Event()
        self.logs.on_lines.append(self.updates)
        self.logs.on_output.append(self._flush_due)
        self._wake_event = asyncio.Event()
        self.fencing_token = persist.load_state(self.settings.data_dir).fencing_token
        self._tg = aio.TaskGroup()
        await self._tg.__aenter__()
        loops = {
            "engine reconcile": self._reconcile_loop,
            "engine flush": self._flush_loop,
            "engine stats": self._stats_loop,
        }
        self._loops = [
            aio.start(self._tg, _forever(loop, name), name, logger=log)
            for name, loop in loops.items()
        ]
        if self._handover is not None:
            # Every worker is watched before the first reap: the exits that happened
            # during the exec are still zombies, reaped now with their real status.
            self._take_over(self._handover)
            self._handover = None
        self.reaper.install(asyncio.get_running_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        if self._frozen:  # handed over: leave every worker, pipe and socket as it is
            await self._wind_down()
            self.logs.close()
            self.sockets.release()
            return
        try:
            await self.shutdown()
        finally:
            await self._wind_down()
            self.logs.detach_all()
            self.logs.close()
            self.sockets.close()
            self._save_state()
            self.reaper.uninstall()

    async def _wind_down(self) -> None:
        """Cancel every task of the engine and wait for them."""
        assert self._tg is not None
        if self._save_retry is not None:
            self._save_retry.cancel()
            self._save_retry = None
        for task in self._loops:
            task.cancel()
        for watcher in [*self.watchers.values(), *self._removed]:
            watcher.close(stops=self._frozen)
        if self._frozen:
            for task in self._leftovers.values():
                task.cancel()
        await self._tg.__aexit__(None, None, None)

    async def shutdown(self) -> None:
        """Stop every worker gracefully (stop_signal, SIGKILL after graceful_timeout), with
        the before_stop and after_stop hooks of the watchers started here."""
        stops: list[Any] = list(self._leftovers.values())
        stops += [watcher.shut_down() for watcher in [*self.watchers.values(), *self._removed]]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        self.logs.flush()

    def _log_file_problem(self, watcher: str, message: str) -> None:
        self.event("log_file_error", watcher, 0, message, Severity.ERROR)

    # ---- the Host interface of watchers ----
    def event(self, kind: str, watcher: str, wid: int, message: str, severity: int) -> None:
        """Record an event of this host (`severity`: a Severity)."""
        severity = Severity(severity)
        level = _LEVELS.get(severity, logging.INFO)
        where = f"{watcher}[{wid}]" if wid else (watcher or "agent")
        log.log(level, "%s %s: %s", where, kind, message)
        self._events.append(
            Event(
                at=self.clock.time(),
                kind=kind,
                message=message,
                host_id=self.host_id,
                watcher=watcher,
                wid=wid,
                severity=severity,
            )
        )
        self.updates.set()

    def changed(self) -> None:
        self._status_dirty = True
        self.updates.set()
        self._records_changed()

    def _records_changed(self) -> None:
        """Save the worker records as soon as this burst of changes is done, so that
        a kill -9 right after a spawn still leaves the new pid on disk."""
        self._workers_changed = True
        if not self._records_dirty:
            self._records_dirty = True
            self._flush_due.set()
            with contextlib.suppress(RuntimeError):  # no running loop: the flush loop saves
                asyncio.get_running_loop().call_soon(self._save_if_dirty)

    def _save_if_dirty(self) -> None:
        if self._records_dirty and not self._frozen:
            self._save_state()

    async def records_saved(self) -> None:
        """Save the worker records as they stand now, with the other changes of this turn
        of the loop, and return once they are written: what a stop records before its
        signal (a new agent after a kill -9 finishes that stop). Not held up by a save
        that fails (a full disk: the retry saves), nor while handed over for an exec."""
        self._records_changed()
        if self._frozen or self._save_error:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._save_waiters.append(waiter)
        await waiter

    def wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def run_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coro` as a task of the engine's TaskGroup, named `name`: its failure is
        logged (never the cancel), and the engine waits for it when it winds down."""
        assert self._tg is not None
        return aio.start(self._tg, coro, name, reraise=False, logger=log)

    def _stop_in_progress(self, pid: int) -> bool:
        """The orphan sweep spares a child a graceful stop still waits for: a member of a
        stopping worker's process group, or a stop_children descendant given the stop signal."""
        watchers = (*self.watchers.values(), *self._removed)
        stopping = [proc for watcher in watchers for proc in watcher.stopping()]
        stopping.extend(self._leftovers)
        if not stopping:
            return False
        if any(pid == child for proc in stopping for child, _ in proc.stopping_children):
            return True
        pgid = _pgid(pid)
        return any(proc.pid == pgid for proc in stopping)

    # ---- desired state ----
    def note_fencing_token(self, token: int) -> None:
        if token > self.fencing_token:
            self.fencing_token = token
            self._records_changed()

    def apply(self, assignment: Assignment, *, restored: bool = False) -> bool:
        """Make `assignment` the whole desired state of this host; False if fenced off."""
        if assignment.fencing_token < self.fencing_token:
            log.warning(
                "ignoring assignment generation %d: fencing token %d < %d",
                assignment.generation,
                assignment.fencing_token,
                self.fencing_token,
            )
            return False
        self.note_fencing_token(assignment.fencing_token)
        for error in self._sync_sockets(assignment):
            self.event("socket_error", "", 0, error, Severity.ERROR)
        by_name = {sock.name: sock for sock in assignment.sockets}
        wanted: set[str] = set()
        for wa in assignment.watchers:
            spec = wa.spec
            wanted.add(spec.name)
            desired = self._desired(wa, spec, by_name)
            self.logs.configure(
                spec.name, spec.stdout_stream, spec.stderr_stream, _worker_uid(spec)
            )
            current = self.watchers.get(spec.name) or self._revive(spec.name)
            if current is None:
                self.watchers[spec.name] = Watcher(self, desired, self.clock)
            else:
                current.update(desired)
        for name in [name for name in self.watchers if name not in wanted]:
            watcher = self.watchers.pop(name)
            watcher.removed = True
            self._removed.append(watcher)
        self.generation = assignment.generation
        self._assignment = assignment
        if not restored:
            self._unsaved_assignment = assignment
            self._save_assignment()
        self.event(
            "assignment_applied",
            "",
            0,
            f"generation {assignment.generation}" + (" (restored)" if restored else ""),
            Severity.INFO,
        )
        self.changed()
        self.wake()
        return True

    def _revive(self, name: str) -> Watcher | None:
        """A removed watcher of that name whose workers still stop, taken back.

        A watcher leaves a host's Assignment when its last worker id there does
        (scaled down, drained, moved) and may come back moments later. Taking
        back the same watcher makes a returning worker id wait for its
        predecessor to stop, as it would had the watcher stayed with no ids; its
        slots (and their flapping counts) start afresh, as those of dropped ids do.
        """
        for watcher in self._removed:
            if watcher.name == name:
                self._removed.remove(watcher)
                watcher.revive()
                self.watchers[name] = watcher
                return watcher
        return None

    def _sync_sockets(self, assignment: Assignment) -> list[str]:
        """Bind every socket the assignment's versions inherit that is new, moved or
        failed before, before any worker is replaced; the errors of those that failed
        now. An earlier version's socket that moved stays bound for its workers."""
        changed = self.sockets.sync(_socket_specs(assignment))
        return [bound.error for bound in changed if bound.error]

    def _desired(
        self,
        wa: WatcherAssignment,
        spec: WatcherSpec,
        by_name: Mapping[str, SocketSpec],
    ) -> Desired:
        sockets = _inherited(spec, by_name)
        pinned: dict[int, Version] = {}
        for earlier in wa.pinned:
            earlier_spec = earlier.spec
            # (none from a controller that did not send them: the same names as now)
            earlier_sockets = earlier.sockets or _inherited(earlier_spec, by_name)
            version = Version(
                spec=earlier_spec,
                restart_token=earlier.restart_token,
                sockets=earlier_sockets,
                socket_key=self._socket_key(earlier_sockets),
                fingerprint=earlier_spec.process_fingerprint(),
            )
            pinned.update(dict.fromkeys(earlier.wids, version))
        return Desired(
            spec=spec,
            wids=tuple(wa.wids),
            active=wa.active,
            restart_token=wa.restart_token,
            graceful=wa.graceful,
            reset_token=wa.reset_token,
            sockets=sockets,
            socket_key=self._socket_key(sockets),
            fingerprint=spec.process_fingerprint(),
            pinned=pinned,
            probation=frozenset(wa.probation),
        )

    def _socket_key(self, sockets: tuple[SocketSpec, ...]) -> tuple[Any, ...]:
        """A key that changes when one of `sockets` is bound anew (another binding)."""
        key = []
        for sock in sockets:
            bound = self.sockets.lookup(sock)
            key.append((sock.name, bound.serial if bound else 0))
        return tuple(key)

    # ---- restarts of the agent ----
    async def restore(self) -> bool:
        """After a crash (or at a first start): adopt what the previous agent left
        running, then run the persisted Assignment (if any) around it."""
        started = time.monotonic()
        assignment = persist.load_assignment(self.settings.data_dir)
        records = persist.load_state(self.settings.data_dir)
        same_boot = bool(records.boot_id) and records.boot_id == boot_id()
        found = [(r, identify(r.pid, r.start_ticks)) for r in records.workers if same_boot]
        alive = [(r, f) for r, f in found if f.fate is not Fate.GONE]
        self._restore_sockets(assignment, records.sockets, alive)
        if assignment is not None:
            self.apply(assignment, restored=True)
        for flapping in records.flapping if same_boot else ():
            if flapping.watcher in self.watchers:
                self.watchers[flapping.watcher].restore_flapping(flapping)
        for record, identified in alive:
            if identified.fate is Fate.CHILD:  # an exec whose handover could not be read
                out, err = _own_pipe(record.out), _own_pipe(record.err)
            else:
                out = _regain_pipe(record.pid, identified, record.out)
                err = _regain_pipe(record.pid, identified, record.err)
            self._adopt(record, identified.pidfd, out, err, {})
        for record in [r for r, f in found if f.fate is Fate.GONE and r.stopping]:
            self._adopt(record, None, None, None, {}, gone=True)  # its stop goes on
        gone = [(r, f.status) for r, f in found if f.fate is Fate.GONE and r.stopping is None]
        for record, status in gone:
            watcher = self.watchers.get(record.watcher)
            if watcher is not None:
                watcher.exited_while_away(record, status)
        self.logs.forget_left_intents()
        self._records_changed()
        if records.workers:
            took = sum(1 for b in self.sockets.all() if b.sock is not None)
            text = (
                f"adopted {len(alive)} of {len(records.workers)} workers left by the previous "
                f"agent in {(time.monotonic() - started) * 1000:.0f} ms; {len(gone)} exited "
                f"while it was down; {took} sockets kept"
            )
            if not same_boot:
                text = "worker records of another boot ignored: nothing to adopt"
            self.event("agent_restarted", "", 0, text, Severity.INFO)
        return assignment is not None

    def _restore_sockets(
        self,
        assignment: Assignment | None,
        records: tuple[SocketRecord, ...],
        alive: list[tuple[WorkerRecord, Identified]],
    ) -> None:
        """Take back each recorded socket from a worker that holds it, else bind it anew,
        under its recorded serial; before the Assignment is applied (which would bind
        every socket afresh)."""
        specs = _socket_specs(assignment)
        for record in records:
            spec = _spec_of(record, specs)
            if spec is None:
                continue
            fd = None
            if record.fd >= 0 and same_file(record.fd, record.inode, Kind.SOCKET):
                fd = record.fd  # still ours: an exec whose handover could not be read
            holders = [(r, f.pidfd) for r, f in alive if f.pidfd is not None and fd is None]
            for worker, pidfd in sorted(holders, key=lambda h: record.name not in _sockets(h[0])):
                assert pidfd is not None
                names = _sockets(worker)
                at = 3 + names.index(record.name) if record.name in names else -1
                fd = regain(pidfd, worker.pid, at, record.inode, Kind.SOCKET)
                if fd is not None:
                    break
            self.sockets.restore(spec, record.serial, fd, record.file)

    def _take_over(self, handover: Handover) -> None:
        """Carry on from the previous image of this agent (an exec; same process)."""
        self.fencing_token = max(self.fencing_token, handover.records.fencing_token)
        assignment = handover.assignment
        specs = _socket_specs(assignment)
        for kept in handover.records.sockets:
            spec = _spec_of(kept, specs)
            usable = kept.fd >= 0 and same_file(kept.fd, kept.inode, Kind.SOCKET)
            if spec is not None and usable:
                self.sockets.restore(spec, kept.serial, kept.fd, kept.file)
            elif usable:
                os.close(kept.fd)
        if assignment is not None:
            self.apply(assignment, restored=True)
            saved = persist.load_assignment(self.settings.data_dir)
            if saved != assignment:
                self._unsaved_assignment = assignment  # the previous image could not save it
                self._save_assignment()
        for state in handover.watchers:
            watcher = self.watchers.get(state.name)
            if watcher is not None:
                watcher.graceful_replace = state.graceful_replace
        for slot in handover.slots:
            if slot.watcher in self.watchers:
                self.watchers[slot.watcher].restore_slot(slot)
        for record in handover.records.workers:
            identified = identify(record.pid, record.start_ticks)
            out = _own_pipe(record.out)
            err = _own_pipe(record.err)
            if identified.fate is Fate.GONE and record.stopping is not None:
                self._adopt(record, None, out, err, handover.partials, gone=True)
                continue  # it exited while being stopped: its stop goes on
            if identified.fate is Fate.GONE:
                # An adopted worker that exited during the exec: what it wrote last is
                # still in its pipes, read to their end.
                for stream, pipe in (("out", out), ("err", err)):
                    if pipe is not None:
                        partial = handover.partials.get(pipe.fd, b"")
                        self.logs.attach(record.watcher, record.wid, stream, pipe.fd, partial)
                watcher = self.watchers.get(record.watcher)
                if watcher is not None and record.stopping is None:
                    watcher.exited_while_away(record, identified.status)
                continue
            self._adopt(record, identified.pidfd, out, err, handover.partials)
        self._events.extend(handover.events)
        self.logs.take_over(list(handover.lines), handover.dropped)
        took = (time.monotonic() - handover.requested_mono) * 1000
        self.event(
            "agent_reloaded",
            "",
            0,
            f"re-executed in place ({handover.version} -> {stack.__version__}, "
            f"{took:.0f} ms after the request); {len(handover.records.workers)} workers kept",
            Severity.INFO,
        )
        self._records_changed()

    def _adopt(
        self,
        record: WorkerRecord,
        pidfd: int | None,
        out: PipeEnd | None,
        err: PipeEnd | None,
        partials: Mapping[int, bytes],
        gone: bool = False,
    ) -> None:
        """Take back a recorded worker (`gone`: one that exited while being stopped,
        whose stop goes on) into its watcher, or stop it if its watcher is gone."""
        watcher = self.watchers.get(record.watcher)
        if watcher is not None:
            watcher.adopt(record, pidfd=pidfd, out=out, err=err, partials=partials, gone=gone)
            return
        # Its watcher is gone: stop it (it was being stopped, or should have been).
        proc = Proc.from_record(
            record, generation=-1, out=out, err=err, child=pidfd is None, gone=gone
        )
        for stream, pipe in (("out", out), ("err", err)):
            if pipe is not None:
                partial = partials.get(pipe.fd, b"")
                self.logs.attach(record.watcher, record.wid, stream, pipe.fd, partial)

        def exited(status: int | None) -> None:
            if not proc.exited.done():
                proc.exited.set_result(status)

        if pidfd is not None:
            self.reaper.follow(pidfd, proc, exited)
        elif not gone:
            self.reaper.watch(proc.pid, exited)
        stop = record.stopping  # (Proc.from_record took its deadline and children)
        if stop is None:
            proc.stop_reason = ExitReason.STOPPED
        self._leftovers[proc] = self.run_task(
            self._stop_leftover(proc, resume=bool(stop and stop.deadline > 0)),
            name=f"stop leftover {record.watcher}[{record.wid}] {record.pid}",
        )

    async def _stop_leftover(self, proc: Proc, resume: bool) -> None:
        # Not the agent's child: its orphans would go to init, not to the sweep.
        orphans = [] if proc.child else descendants_outside_group(proc.pid)
        try:
            timeout = self.settings.stale_timeout
            await stop_process(
                proc, signal.SIGTERM, timeout, False, resume=resume, clock=self.clock
            )
            for pid, ticks in orphans:
                if (pid, ticks) not in proc.stopping_children:
                    signal_if_same(pid, ticks, signal.SIGKILL)
        finally:
            self._leftovers.pop(proc, None)
            self.reaper.sweep_soon()
            self.changed()
        self.event(
            "stale_worker_stopped",
            proc.watcher,
            proc.wid,
            f"stopped pid {proc.pid} left by a previous agent (its watcher is gone)",
            Severity.WARNING,
        )

    def hand_over(self, requested_mono: float, controller: str, notify_socket: str) -> Handover:
        """Freeze the engine for an exec of the agent and return what the next image needs.

        From here on nothing is reaped (an exit stays a zombie for the next image to
        reap with its real status), no output is read (it waits in the pipes) and
        nothing is stopped or closed; leave the `async with` block next.
        """
        self.reaper.uninstall()
        partials, lines, dropped = self.logs.hand_over()
        self._frozen = True
        watchers, slots = [], []
        for watcher in [*self.watchers.values(), *self._removed]:
            state, its_slots = watcher.snapshot()
            watchers.append(state)
            slots.extend(its_slots)
        records = self._save_state()  # (also what a crash of the next image would adopt)
        events = tuple(self._events)
        self._events.clear()
        return Handover(
            records=records,
            assignment=self._assignment,
            slots=tuple(slots),
            watchers=tuple(watchers),
            partials=partials,
            events=events,
            lines=tuple(lines),
            dropped=dropped,
            controller=controller,
            notify_socket=notify_socket,
            started_at=self.started_at,
            reexecs=self.reexecs,
            version=stack.__version__,
            requested_mono=requested_mono,
        )

    def _leftover_records(self) -> list[WorkerRecord]:
        return [proc.record(stopping=True) for proc in self._leftovers]

    def _socket_records(self) -> tuple[SocketRecord, ...]:
        return tuple(
            SocketRecord(
                bound.spec.name,
                bound.serial,
                os.fstat(bound.fd).st_ino,
                bound.fd,
                (bound.place.dev, bound.place.ino) if bound.place else None,
                socket_binding(bound.spec),
            )
            for bound in self.sockets.all()
            if bound.sock is not None
        )

    # ---- loops ----
    async def _reconcile_loop(self) -> None:
        assert self._wake_event is not None
        wake = self._wake_event
        while True:
            wake.clear()
            now = self.clock.monotonic()
            order = sorted(self.watchers.values(), key=lambda w: (-w.spec.priority, w.name))
            for watcher in [*order, *self._removed]:
                try:
                    watcher.reconcile(now)
                except Exception as exc:
                    log.exception("reconciling %s failed", watcher.name)
                    self.event("error", watcher.name, 0, str(exc), Severity.ERROR)
            for watcher in [w for w in self._removed if w.idle()]:
                self._removed.remove(watcher)
                if watcher.name not in self.watchers:
                    self.logs.forget(watcher.name)
                self.changed()
            deadlines = [d for w in self.watchers.values() if (d := w.next_deadline(now))]
            with contextlib.suppress(TimeoutError):
                async with self.clock.timeout_at(min(deadlines) if deadlines else None):
                    await wake.wait()

    async def _flush_loop(self) -> None:
        """Flush the output files (and save records the burst's own save missed) at most
        every flush_interval, and sleep while there is nothing to flush."""
        due = self._flush_due
        while True:
            await due.wait()
            await asyncio.sleep(self.settings.flush_interval)
            due.clear()
            self.logs.flush()
            dropped = self.logs.take_dropped()
            if dropped:
                self.lines_dropped += dropped
                cap = self.settings.ship_rate
                why = f"buffer full or over {cap} lines/s" if cap else "buffer full"
                self.event(
                    "logs_dropped",
                    "",
                    0,
                    f"{dropped} log lines dropped from shipping ({why}); files keep them",
                    Severity.WARNING,
                )
            self._save_if_dirty()
            if self._workers_changed:  # a burst of spawns or exits: give back what it freed
                self._workers_changed = False
                give_back_freed_heap()

    def want_stats(self, seconds: float) -> None:
        """Someone looks at this host's figures (a status, a metrics scrape): sample every
        `stats_interval` for `seconds` from now, and at once if the sampler was at rest.
        Nobody looking, it samples every `stats_rest_interval`: at 100 workers the reads
        of /proc are most of what an idle agent does."""
        now = time.monotonic()
        at_rest = now >= self._stats_wanted_until
        self._stats_wanted_until = max(self._stats_wanted_until, now + seconds)
        if at_rest:
            self._stats_wake.set()

    async def _stats_loop(self) -> None:
        wake = self._stats_wake
        while True:
            wake.clear()
            pairs = [
                (proc.pid, proc.start_ticks)
                for watcher in self.watchers.values()
                for proc in watcher.procs()
                if proc.alive()
            ]
            if pairs or self.stats.latest:
                self.stats.sample(pairs)
                self._status_dirty = True
                self.updates.set()
            watched = time.monotonic() < self._stats_wanted_until
            interval = self.settings.stats_interval
            if not watched:
                interval = max(interval, self.settings.stats_rest_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await wake.wait()

    def _save_state(self) -> Records:
        """Write the worker records (see records.py); returns them."""
        self._records_dirty = False
        workers = [r for w in [*self.watchers.values(), *self._removed] for r in w.records()]
        workers.extend(self._leftover_records())
        flapping = tuple(f for w in self.watchers.values() for f in w.flapping_records())
        records = Records(
            self.fencing_token, boot_id(), tuple(workers), self._socket_records(), flapping
        )
        try:
            persist.save_state(self.settings.data_dir, records)
        except OSError as exc:
            self._records_dirty = True  # saved by the retry
            self._save_failed("the worker records", exc)
        else:
            self._save_works()
        waiters, self._save_waiters = self._save_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return records

    def _save_assignment(self) -> None:
        """Save the assignment applied last, if it is not on disk yet."""
        assignment = self._unsaved_assignment
        if assignment is None:
            return
        try:
            persist.save_assignment(self.settings.data_dir, assignment)
        except OSError as exc:
            self._save_failed(f"assignment generation {assignment.generation}", exc)
            return
        self._unsaved_assignment = None
        self._save_works()

    def _save_failed(self, what: str, exc: OSError) -> None:
        """A save failed (a full disk): nothing else changes, workers run on as they are
        told. The first failure of a streak is an event; the saves are tried again every
        SAVE_RETRY_SECONDS until they work."""
        if not self._save_error:
            self.event(
                "save_failed",
                "",
                0,
                f"cannot save {what} in {self.settings.data_dir}: {exc.strerror or exc}; "
                f"workers run on as told, saving again every {SAVE_RETRY_SECONDS:g}s",
                Severity.ERROR,
            )
        self._save_error = str(exc)
        if self._save_retry is None and not self._frozen:
            with contextlib.suppress(RuntimeError):  # no running loop: the agent is ending
                loop = asyncio.get_running_loop()
                self._save_retry = loop.call_later(SAVE_RETRY_SECONDS, self._retry_saves)

    def _retry_saves(self) -> None:
        self._save_retry = None
        if self._frozen:
            return
        self._save_assignment()
        self._save_if_dirty()

    def _save_works(self) -> None:
        """A save succeeded: once nothing is left unsaved, say that saving works again."""
        if self._save_error and self._unsaved_assignment is None and not self._records_dirty:
            self._save_error = ""
            self.event("save_works", "", 0, f"saving in {self.settings.data_dir} works again",
                       Severity.INFO)  # fmt: skip

    # ---- what the session reads ----
    def observed(self) -> Observed:
        """What this host runs now, as the controller is told (it has been told now).

        Unchanged since the last call (nothing marked the status dirty, and nothing in it
        reads the clock: no watcher is flapping), it is the same object as last time, so
        that a heartbeat of 100 workers costs no rebuilding and no re-encoding."""
        if not self._status_dirty and self._observed is not None:
            return self._observed
        self._status_dirty = False
        observed, timed = self._build()
        self._observed = None if timed else observed
        return observed

    def snapshot(self) -> Observed:
        """What this host runs now, for a reader other than the session (metrics)."""
        return self._build()[0]

    def _build(self) -> tuple[Observed, bool]:
        """(what this host runs now, whether that reads the clock)."""
        now_mono, now = self.clock.monotonic(), self.clock.time()
        watchers: list[WatcherObserved] = []
        processes: list[ProcessStatus] = []
        timed = False
        for name in sorted(self.watchers):
            watcher = self.watchers[name]
            summary = watcher.flapping(now_mono)
            timed = timed or bool(summary.retry_at) or watcher.flapping_now()
            retry_at = now + (summary.retry_at - now_mono) if summary.retry_at else 0.0
            watchers.append(
                WatcherObserved(
                    name=name,
                    phase=watcher.phase(summary),
                    retry_at=retry_at,
                    flapping_retries=summary.retries,
                    message=summary.message or watcher.rest_note,
                )
            )
            processes.extend(self._status(watcher, wid, now_mono) for wid in sorted(watcher.slots))
        sockets = tuple(
            SocketStatus(bound.spec.name, bound.fd, bound.address, bound.error)
            for bound in self.sockets.all()
        )
        return Observed(self.generation, tuple(processes), tuple(watchers), sockets), timed

    def _status(self, watcher: Watcher, wid: int, now_mono: float) -> ProcessStatus:
        run = watcher.slots[wid]
        slot, proc = run.state, run.proc
        health, health_message = watcher.health_of(run)
        stats = self.stats.get(proc.pid) if proc is not None else ProcStats()
        return ProcessStatus(
            watcher=watcher.name,
            wid=wid,
            pid=proc.pid if proc is not None else 0,
            state=ProcessState(slot.state),
            started_at=proc.started_at if proc is not None else 0.0,
            restarts=slot.restarts,
            cpu_percent=stats.cpu_percent,
            rss_bytes=stats.rss_bytes,
            cpu_seconds=stats.cpu_seconds,
            num_fds=stats.num_fds,
            num_children=stats.num_children,
            last_exit=slot.last_exit,
            host_id=self.host_id,
            message=flap_message(slot.flap, now_mono) or slot.message,
            health=health,
            health_message=health_message,
            version=slot.version,
            blocked=slot.blocked,
            replacements=slot.replacements,
        )

    def status_dirty(self) -> bool:
        return self._status_dirty

    def take_events(self, limit: int = 500) -> list[Event]:
        events = self._events
        return [events.popleft() for _ in range(min(limit, len(events)))]

    def take_logs(self, limit: int = 500) -> list[LogLine]:
        taken = [self._line(line) for line in self.logs.take_shipping(limit)]
        self.lines_shipped += len(taken)
        return taken

    def pending(self) -> bool:
        """True when events or log lines wait to be shipped."""
        return bool(self._events) or self.logs.pending_shipping() > 0

    def tail(self, watcher: str, stream: str, lines: int) -> list[LogLine]:
        """The last `lines` output lines, read from the watcher's files (see LogHub.tail)."""
        return [self._line(line) for line in self.logs.tail(watcher, stream, lines)]

    def _line(self, line: Line) -> LogLine:
        return LogLine(line.at, self.host_id, line.watcher, line.wid, line.stream, line.text)

    def signal(self, watcher: str, wid: int, signame: str, children: bool) -> int:
        """Send a signal to a watcher's processes (wid 0: all); returns how many got it."""
        target = self.watchers.get(watcher)
        if target is None:
            raise KeyError(f"no watcher {watcher!r} on this host")
        return target.send_signal(wid, signal_number(signame), children)


async def _forever(loop: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Run one of the engine's loops, which end only when cancelled: a loop that fails or
    returns ends the engine (its TaskGroup; aio.start's guard logs why) rather than leave
    it half alive; a restarted agent adopts every worker."""
    await loop()
    raise RuntimeError(f"{name} has finished unexpectedly")


def _worker_uid(spec: WatcherSpec) -> int | None:
    """The uid a watcher's workers run as (None: the agent's, or not known here)."""
    try:
        return worker_ids(spec)[0]
    except SpawnError:
        return None


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def _socket_specs(assignment: Assignment | None) -> list[SocketSpec]:
    """Every socket the assignment's versions inherit: the earlier versions' first,
    then the current ones (whose options win for a binding both share)."""
    if assignment is None:
        return []
    pinned = [earlier for wa in assignment.watchers for earlier in wa.pinned]
    return [sock for earlier in pinned for sock in earlier.sockets] + list(assignment.sockets)


def _spec_of(record: SocketRecord, specs: list[SocketSpec]) -> SocketSpec | None:
    """The spec a recorded socket was bound for: by its binding, or (recorded by an
    agent that did not keep it) by its name among the current sockets."""
    if record.binding:
        found = [spec for spec in specs if socket_binding(spec) == record.binding]
    else:
        found = [spec for spec in specs if spec.name == record.name]
    return found[-1] if found else None


def _inherited(spec: WatcherSpec, by_name: Mapping[str, SocketSpec]) -> tuple[SocketSpec, ...]:
    """The sockets `spec`'s processes need from the assignment's (version_sockets); a
    name it inherits that the assignment lacks stays, unbound (its workers then get a
    clear spawn error)."""
    if spec.sockets:
        missing = {name: SocketSpec(name=name) for name in spec.sockets if name not in by_name}
        return version_sockets(spec, {**by_name, **missing})
    return version_sockets(spec, by_name)


def _sockets(record: WorkerRecord) -> list[str]:
    """The sockets a recorded worker inherited, in fd order (3, 4, ...)."""
    return [name for name, _ in record.version_key[1]] if record.version_key else []


def _regain_pipe(pid: int, identified: Identified, pipe: PipeRecord | None) -> PipeEnd | None:
    """The read end of a recorded pipe, taken back from the adopted worker's copy."""
    if pipe is None or identified.pidfd is None:
        return None
    fd = regain(identified.pidfd, pid, pipe.child_fd, pipe.inode, Kind.PIPE_READ_END)
    if fd is None:
        log.warning("output of pid %d not taken back: it no longer holds its pipe", pid)
        return None
    return PipeEnd(fd=fd, child_fd=pipe.child_fd, inode=pipe.inode)


def _own_pipe(pipe: PipeRecord | None) -> PipeEnd | None:
    """A read end the agent kept open across its exec (checked, close-on-exec again)."""
    if pipe is None or pipe.fd < 0 or not same_file(pipe.fd, pipe.inode, Kind.PIPE_READ_END):
        return None
    os.set_inheritable(pipe.fd, False)
    return PipeEnd(fd=pipe.fd, child_fd=pipe.child_fd, inode=pipe.inode)
