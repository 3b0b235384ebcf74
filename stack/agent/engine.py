"""All the watchers and sockets of this host: apply an Assignment, report what is observed.

The engine is the agent without the network. `apply` takes the WHOLE desired set for
this host (level-triggered) and records it; one reconcile task walks the watchers in
priority order and makes reality match. Exits come from the reaper (SIGCHLD), output
from the log hub, figures from the stats sampler. The session (or a test) reads
`observed()`, drains events and log lines, and waits on `updates` to know when there is
something new. Used as `async with Engine(settings) as engine:`; leaving the block
stops every worker gracefully and closes the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, cast

import psutil

from stack.agent import persist
from stack.agent.flapping import FlapPhase
from stack.agent.flapping import message as flap_message
from stack.agent.output import LogHub
from stack.agent.persist import WorkerRecord
from stack.agent.process import SpawnError, signal_number, start_ticks, worker_ids
from stack.agent.reaper import Reaper
from stack.agent.settings import AgentSettings
from stack.agent.sockets import SocketPool
from stack.agent.stats import StatsSampler
from stack.agent.watcher import Desired, Version, Watcher
from stack.agent.wire import fill_stats, line_to_proto
from stack.security.safe_files import private_dir
from stack.spec.convert import socket_from_proto, watcher_from_proto
from stack.spec.model import WatcherSpec
from stack.v1 import agent_pb2, types_pb2

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
_LEVELS = {types_pb2.SEVERITY_WARNING: logging.WARNING, types_pb2.SEVERITY_ERROR: logging.ERROR}


class Engine:
    """The per-host process and socket manager behind `stack-agent`."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
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
        self.stats = StatsSampler()
        self.watchers: dict[str, Watcher] = {}
        self._removed: list[Watcher] = []
        self.generation = 0
        self.fencing_token = 0
        self._events: deque[types_pb2.Event] = deque(maxlen=MAX_EVENTS)
        self._status_dirty = True
        self._records_dirty = False
        self._tg: asyncio.TaskGroup | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._wake_event: asyncio.Event | None = None
        self.updates = asyncio.Event()
        """Set whenever there is something new to send (status, events, log lines)."""

    # ---- life cycle ----
    async def __aenter__(self) -> Engine:
        private_dir(self.settings.data_dir, (persist.ASSIGNMENT_FILE, persist.STATE_FILE))
        private_dir(self.settings.logs_dir)
        self.updates = asyncio.Event()
        self.logs.on_lines.append(self.updates)
        self._wake_event = asyncio.Event()
        self.fencing_token, _ = persist.load_state(self.settings.data_dir)
        self.reaper.install(asyncio.get_running_loop())
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._loops = [
            self._tg.create_task(self._reconcile_loop(), name="engine reconcile"),
            self._tg.create_task(self._flush_loop(), name="engine flush"),
            self._tg.create_task(self._stats_loop(), name="engine stats"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        try:
            await self.shutdown()
        finally:
            for task in self._loops:
                task.cancel()
            for watcher in [*self.watchers.values(), *self._removed]:
                watcher.cancel_all_checks()
            await self._tg.__aexit__(None, None, None)
            self.logs.detach_all()
            self.logs.close()
            self.sockets.close()
            self._save_state()
            self.reaper.uninstall()

    async def shutdown(self) -> None:
        """Stop every worker gracefully (stop_signal, SIGKILL after graceful_timeout)."""
        tasks = []
        for watcher in [*self.watchers.values(), *self._removed]:
            tasks.extend(watcher.stop_everything())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.logs.flush()

    def _log_file_problem(self, watcher: str, message: str) -> None:
        self.event("log_file_error", watcher, 0, message, types_pb2.SEVERITY_ERROR)

    # ---- the Host interface of watchers ----
    def event(
        self, kind: str, watcher: str, wid: int, message: str, severity: types_pb2.Severity
    ) -> None:
        level = _LEVELS.get(severity, logging.INFO)
        where = f"{watcher}[{wid}]" if wid else (watcher or "agent")
        log.log(level, "%s %s: %s", where, kind, message)
        self._events.append(
            types_pb2.Event(
                at=time.time(),
                host_id=self.host_id,
                watcher=watcher,
                wid=wid,
                kind=kind,
                message=message,
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
        if not self._records_dirty:
            self._records_dirty = True
            with contextlib.suppress(RuntimeError):  # no running loop: the flush loop saves
                asyncio.get_running_loop().call_soon(self._save_if_dirty)

    def _save_if_dirty(self) -> None:
        if self._records_dirty:
            self._save_state()

    def wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def run_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        assert self._tg is not None
        task = self._tg.create_task(self._guard(coro, name), name=name)
        # A task cancelled before its first step never starts `coro`: close it quietly.
        task.add_done_callback(lambda _: coro.close())
        return task

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("task %s failed", name)

    def _stop_in_progress(self, pid: int) -> bool:
        """The orphan sweep spares a child a graceful stop still waits for: a member of a
        stopping worker's process group, or a stop_children descendant given the stop signal."""
        stopping = [proc for w in (*self.watchers.values(), *self._removed) for proc in w.retiring]
        if not stopping:
            return False
        if any(pid in proc.stopping_children for proc in stopping):
            return True
        pgid = _pgid(pid)
        return any(proc.pid == pgid for proc in stopping)

    # ---- desired state ----
    def note_fencing_token(self, token: int) -> None:
        if token > self.fencing_token:
            self.fencing_token = token
            self._records_changed()

    def apply(self, assignment: agent_pb2.Assignment, *, restored: bool = False) -> bool:
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
        for bound in self._sync_sockets(assignment):
            self.event("socket_error", "", 0, bound, types_pb2.SEVERITY_ERROR)
        wanted: set[str] = set()
        for wa in assignment.watchers:
            spec = watcher_from_proto(wa.spec)
            wanted.add(spec.name)
            desired = self._desired(wa, spec)
            self.logs.configure(
                spec.name, spec.stdout_stream, spec.stderr_stream, _worker_uid(spec)
            )
            current = self.watchers.get(spec.name) or self._revive(spec.name)
            if current is None:
                self.watchers[spec.name] = Watcher(self, desired)
            else:
                current.update(desired)
        for name in [name for name in self.watchers if name not in wanted]:
            watcher = self.watchers.pop(name)
            watcher.removed = True
            self._removed.append(watcher)
        self.generation = assignment.generation
        if not restored:
            persist.save_assignment(self.settings.data_dir, assignment)
        self.event(
            "assignment_applied",
            "",
            0,
            f"generation {assignment.generation}" + (" (restored)" if restored else ""),
            types_pb2.SEVERITY_INFO,
        )
        self.changed()
        self.wake()
        return True

    def _revive(self, name: str) -> Watcher | None:
        """A removed watcher of that name whose workers still stop, taken back.

        A watcher leaves a host's Assignment when its last worker id there does
        (scaled down, drained, moved) and may come back moments later. Taking
        back the same watcher keeps its flapping state and makes a returning
        worker id wait for its predecessor to stop, as it would had the watcher
        stayed with no ids; its slots start afresh, as those of dropped ids do.
        """
        for watcher in self._removed:
            if watcher.name == name:
                self._removed.remove(watcher)
                watcher.removed = False
                watcher.slots.clear()
                self.watchers[name] = watcher
                return watcher
        return None

    def _sync_sockets(self, assignment: agent_pb2.Assignment) -> list[str]:
        """Bind what is new or changed; the errors of those that failed to bind now."""
        changed = self.sockets.sync([socket_from_proto(msg) for msg in assignment.sockets])
        found = [self.sockets.get(name) for name in changed]
        return [bound.error for bound in found if bound is not None and bound.error]

    def _desired(self, wa: agent_pb2.WatcherAssignment, spec: WatcherSpec) -> Desired:
        names, key = self._sockets_of(spec)
        pinned: dict[int, Version] = {}
        for earlier in wa.pinned:
            earlier_spec = watcher_from_proto(earlier.spec)
            earlier_names, earlier_key = self._sockets_of(earlier_spec)
            version = Version(
                spec=earlier_spec,
                restart_token=earlier.restart_token,
                sockets=earlier_names,
                socket_key=earlier_key,
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
            sockets=names,
            socket_key=key,
            fingerprint=spec.process_fingerprint(),
            pinned=pinned,
            probation=frozenset(wa.probation),
        )

    def _sockets_of(self, spec: WatcherSpec) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        """The sockets `spec` inherits, in fd order, and a key that changes on a re-bind."""
        if spec.sockets:
            names = tuple(spec.sockets)
        elif spec.use_sockets:
            names = tuple(bound.spec.name for bound in self.sockets.all())
        else:
            names = ()
        key = []
        for name in names:
            bound = self.sockets.get(name)
            key.append((name, bound.serial if bound else 0))
        return names, tuple(key)

    # ---- restart of the agent ----
    async def restore(self) -> bool:
        """Stop leftovers of a previous life, then apply the persisted Assignment (if any)."""
        assignment = persist.load_assignment(self.settings.data_dir)
        _, records = persist.load_state(self.settings.data_dir)
        specs: dict[str, WatcherSpec] = {}
        if assignment is not None:
            for wa in assignment.watchers:
                specs[wa.spec.name] = watcher_from_proto(wa.spec)
        if records:
            await asyncio.gather(*(self._stop_stale(r, specs.get(r.watcher)) for r in records))
        self._records_changed()
        if assignment is None:
            return False
        return self.apply(assignment, restored=True)

    async def _stop_stale(self, record: WorkerRecord, spec: WatcherSpec | None) -> None:
        if start_ticks(record.pid) != record.start_ticks:
            return  # gone, or the pid now belongs to someone else
        try:
            proc = psutil.Process(record.pid)
        except psutil.Error:
            return
        signum = signal_number(spec.stop_signal) if spec else signal.SIGTERM
        timeout = spec.graceful_timeout if spec else self.settings.stale_timeout
        group = _pgid(record.pid) == record.pid
        _send(record.pid, signum, group)
        if not await _poll_gone(proc, time.monotonic() + timeout):
            _send(record.pid, signal.SIGKILL, group)
            await _poll_gone(proc, time.monotonic() + 5.0)
        if group:
            _send(record.pid, signal.SIGKILL, group)  # what is left of its group
        self.event(
            "stale_worker_stopped",
            record.watcher,
            record.wid,
            f"stopped pid {record.pid} left by a previous agent",
            types_pb2.SEVERITY_WARNING,
        )

    # ---- loops ----
    async def _reconcile_loop(self) -> None:
        assert self._wake_event is not None
        wake = self._wake_event
        while True:
            wake.clear()
            now = time.monotonic()
            order = sorted(self.watchers.values(), key=lambda w: (-w.spec.priority, w.name))
            for watcher in [*order, *self._removed]:
                try:
                    await watcher.reconcile(now)
                except Exception as exc:
                    log.exception("reconciling %s failed", watcher.name)
                    self.event("error", watcher.name, 0, str(exc), types_pb2.SEVERITY_ERROR)
            for watcher in [w for w in self._removed if w.idle()]:
                self._removed.remove(watcher)
                if watcher.name not in self.watchers:
                    self.logs.forget(watcher.name)
                self.changed()
            deadlines = [d for w in self.watchers.values() if (d := w.next_deadline())]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wake.wait()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            self.logs.flush()
            dropped = self.logs.take_dropped()
            if dropped:
                cap = self.settings.ship_rate
                why = f"buffer full or over {cap} lines/s" if cap else "buffer full"
                self.event(
                    "logs_dropped",
                    "",
                    0,
                    f"{dropped} log lines dropped from shipping ({why}); files keep them",
                    types_pb2.SEVERITY_WARNING,
                )
            self._save_if_dirty()

    async def _stats_loop(self) -> None:
        while True:
            pairs = [
                (proc.pid, proc.start_ticks)
                for watcher in self.watchers.values()
                for proc in watcher.procs()
                if proc.alive()
            ]
            if pairs:
                self.stats.sample(pairs)
                self._status_dirty = True
                self.updates.set()
            await asyncio.sleep(self.settings.stats_interval)

    def _save_state(self) -> None:
        self._records_dirty = False
        records = [
            WorkerRecord(proc.watcher, proc.wid, proc.pid, proc.start_ticks)
            for watcher in [*self.watchers.values(), *self._removed]
            for proc in watcher.procs()
            if proc.alive()
        ]
        try:
            persist.save_state(self.settings.data_dir, self.fencing_token, records)
        except OSError as exc:
            log.error("cannot persist worker records: %s", exc)

    # ---- what the session reads ----
    def observed(self) -> agent_pb2.Observed:
        self._status_dirty = False
        now_mono, now = time.monotonic(), time.time()
        out = agent_pb2.Observed(generation=self.generation)
        for name in sorted(self.watchers):
            watcher = self.watchers[name]
            flap_text = flap_message(watcher.flap, now_mono)
            retry_at = 0.0
            if watcher.flap.phase is FlapPhase.FLAPPING:
                retry_at = now + (watcher.flap.retry_at - now_mono)
            out.watchers.append(
                types_pb2.WatcherObserved(
                    name=name,
                    phase=watcher.phase(),
                    retry_at=retry_at,
                    flapping_retries=watcher.flap.retries,
                    message=flap_text,
                )
            )
            for wid in sorted(watcher.slots):
                slot = watcher.slots[wid]
                status = types_pb2.ProcessStatus(
                    watcher=name,
                    wid=wid,
                    state=cast(types_pb2.ProcessState, int(slot.state)),
                    restarts=slot.restarts,
                    host_id=self.host_id,
                    message=flap_text or slot.message,
                    version=slot.version,
                )
                if slot.proc is not None:
                    status.pid = slot.proc.pid
                    status.started_at = slot.proc.started_at
                    fill_stats(status, self.stats.get(slot.proc.pid))
                if slot.last_exit is not None:
                    status.last_exit.CopyFrom(slot.last_exit.to_proto())
                health, health_message = watcher.health_of(slot)
                status.health = cast(types_pb2.Health, int(health))
                status.health_message = health_message
                out.processes.append(status)
        for bound in self.sockets.all():
            out.sockets.append(
                types_pb2.SocketStatus(
                    name=bound.spec.name, fd=bound.fd, address=bound.address, error=bound.error
                )
            )
        return out

    def status_dirty(self) -> bool:
        return self._status_dirty

    def take_events(self, limit: int = 500) -> list[types_pb2.Event]:
        events = self._events
        return [events.popleft() for _ in range(min(limit, len(events)))]

    def take_logs(self, limit: int = 500) -> list[types_pb2.LogLine]:
        return [line_to_proto(line, self.host_id) for line in self.logs.take_shipping(limit)]

    def pending(self) -> bool:
        """True when events or log lines wait to be shipped."""
        return bool(self._events) or self.logs.pending_shipping() > 0

    def tail(self, watcher: str, stream: str, lines: int) -> list[types_pb2.LogLine]:
        """The last `lines` output lines, read from the watcher's files (see LogHub.tail)."""
        found = self.logs.tail(watcher, stream, lines)
        return [line_to_proto(line, self.host_id) for line in found]

    def signal(self, watcher: str, wid: int, signame: str, children: bool) -> int:
        """Send a signal to a watcher's processes (wid 0: all); returns how many got it."""
        target = self.watchers.get(watcher)
        if target is None:
            raise KeyError(f"no watcher {watcher!r} on this host")
        return target.send_signal(wid, signal_number(signame), children)


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


def _send(pid: int, signum: int, group: bool) -> None:
    with contextlib.suppress(OSError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


async def _poll_gone(proc: psutil.Process, deadline: float) -> bool:
    """Poll a process that is not our child until it is gone (or a zombie)."""
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
