"""One worker slot's runner: its process, and every task and resource that process needs.

The watcher decides which slot starts or stops when (watcher.py); the runner of a slot
does it, and owns what follows from it. It spawns the slot's process, watches its exit
(the reaper calls `on_exit` in the same turn of the event loop as SIGCHLD, so a crash
is respawned in a few milliseconds), stops it in a task of its own (stop signal, grace
period, SIGKILL, reap: the process lives exactly as long as that task), and keeps the
processes of this worker id that are still stopping. Each step of the slot's state
goes through a pure rule of slot.py; the runner applies what the rule returns.

What a process needs beside being spawned and stopped comes from hooks, run at fixed
points of its life: `after_spawn` (this agent started it), `after_adopt` (a previous
agent, or image of this one, left it running), `before_stop`, `after_reap`, and
`close` when the agent winds down. The built-in hooks attach its output pipes, set its
warm-up and max_age deadlines, run its health checks and the watcher's after_spawn and
after_reap commands; a new concern of a process is one more hook, not a change to the
watcher's reconcile. The commands that must pass before a step (before_spawn before a
spawn, before_signal before a signal: hook_commands.py) are awaited in a task of the
runner, never in the event loop's turn. Every task a hook starts runs in the
engine's TaskGroup (`Host.run_task`) and is cancelled by the hook that started it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from stack.agent import health, hook_commands, slot
from stack.agent.adoption import alive_as, descendants_outside_group, signal_if_same
from stack.agent.clock import Clock
from stack.agent.health import CheckContext, HealthState
from stack.agent.output import LogHub
from stack.agent.process import (
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
from stack.agent.slot import Policy, Report, Respawn, Retire, SlotState, Step, Wake
from stack.agent.sockets import BoundSocket, SocketPool
from stack.agent.states import ProcessState
from stack.spec.model import SocketSpec, WatcherSpec
from stack.spec.observed import ExitReason, LastExit
from stack.spec.reports import Severity


class Host(Protocol):
    """What a watcher and its runners need from the engine that owns them."""

    reaper: Reaper
    logs: LogHub
    sockets: SocketPool

    def event(
        self, kind: str, watcher: str, wid: int, message: str, severity: Severity
    ) -> None: ...
    def changed(self) -> None: ...
    async def records_saved(self) -> None: ...
    def wake(self) -> None: ...
    def run_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...


class VersionView(Protocol):
    """What a runner reads of the version a worker must run (watcher.Version)."""

    @property
    def spec(self) -> WatcherSpec: ...
    @property
    def key(self) -> tuple[Any, ...]: ...
    @property
    def label(self) -> str: ...
    @property
    def fds(self) -> tuple[Any, ...]: ...
    @property
    def sockets(self) -> tuple[SocketSpec, ...]: ...
    @property
    def names(self) -> tuple[str, ...]: ...


class Owner(Protocol):
    """What a runner needs from its watcher: the desired state, as it is for one wid."""

    host: Host
    clock: Clock
    agent_env: Mapping[str, str]

    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> WatcherSpec: ...
    def policy(self) -> Policy: ...
    def version_of(self, wid: int) -> VersionView: ...
    def generation_of_version(self, version: VersionView) -> int: ...
    def on_probation_version(self, wid: int, version: VersionView) -> bool: ...
    def keeps_down(self, wid: int, generation: int, failed_start: bool = False) -> bool: ...
    def bound_of(self, version: VersionView) -> dict[str, BoundSocket]: ...
    def spawned_late(self, run: SlotRunner) -> None: ...


class Hook:
    """One concern of a slot's processes, run by its runner at fixed points of each
    process's life. Every method does nothing unless a hook overrides it."""

    def after_spawn(self, run: SlotRunner, proc: Proc) -> None:
        """`proc` was just spawned by this agent (before the slot records it)."""

    def after_adopt(self, run: SlotRunner, proc: Proc, partials: Mapping[int, bytes]) -> None:
        """`proc`, left by a previous agent, was taken back: into the slot
        (`run.proc is proc`) or on with its stop. `partials`: lines begun before an exec."""

    def before_stop(self, run: SlotRunner, proc: Proc) -> None:
        """`proc` is about to be stopped on purpose."""

    def after_reap(self, run: SlotRunner, proc: Proc, status: int | None) -> None:
        """`proc` exited (None: its status is not known)."""

    def restart(self, run: SlotRunner) -> None:
        """The watcher's spec changed in what this hook does: start over with it."""

    def close(self, run: SlotRunner) -> None:
        """The agent winds down (a shutdown, or an exec): end what the hook runs."""

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks this hook runs now."""
        return []


class Output(Hook):
    """Read the process's stdout and stderr pipes into the watcher's log files."""

    def after_spawn(self, run: SlotRunner, proc: Proc) -> None:
        self._attach(run, proc, {})

    def after_adopt(self, run: SlotRunner, proc: Proc, partials: Mapping[int, bytes]) -> None:
        self._attach(run, proc, partials)

    @staticmethod
    def _attach(run: SlotRunner, proc: Proc, partials: Mapping[int, bytes]) -> None:
        for stream, pipe in (("out", proc.out), ("err", proc.err)):
            if pipe is not None:
                partial = partials.get(pipe.fd, b"")
                run.host.logs.attach(run.owner.name, proc.wid, stream, pipe.fd, partial)


class WarmUp(Hook):
    """A process is STARTING for its version's warmup_delay and startsecs: it sets
    `ready_at` and `settled_at`."""

    def after_spawn(self, run: SlotRunner, proc: Proc) -> None:
        warmup = proc.spec.warmup_delay if proc.spec is not None else 0.0
        proc.ready_at = proc.started_mono + warmup if warmup > 0 else 0.0
        startsecs = proc.spec.startsecs if proc.spec is not None else 0.0
        proc.settled_at = proc.started_mono + startsecs if startsecs > 0 else 0.0


class MaxAge(Hook):
    """A process is recycled after max_age (+ up to max_age_variance): sets `deadline`."""

    def after_spawn(self, run: SlotRunner, proc: Proc) -> None:
        spec = proc.spec
        if spec is not None and spec.max_age > 0:
            variance = int.from_bytes(os.urandom(2)) / 65535 * spec.max_age_variance
            proc.deadline = proc.started_mono + spec.max_age + variance
            run.host.wake()

    def after_adopt(self, run: SlotRunner, proc: Proc, partials: Mapping[int, bytes]) -> None:
        if proc.deadline:
            run.host.wake()


class HealthChecks(Hook):
    """Check the slot's process every interval while it is in the slot; after `retries`
    failures in a row it is stopped as unhealthy (see health.py). One task per process."""

    def __init__(self) -> None:
        self._checks: dict[Proc, asyncio.Task[None]] = {}

    def after_spawn(self, run: SlotRunner, proc: Proc) -> None:
        self._start(run, proc)

    def after_adopt(self, run: SlotRunner, proc: Proc, partials: Mapping[int, bytes]) -> None:
        if run.proc is proc:
            self._start(run, proc)

    def before_stop(self, run: SlotRunner, proc: Proc) -> None:
        self._cancel(proc)

    def after_reap(self, run: SlotRunner, proc: Proc, status: int | None) -> None:
        self._cancel(proc)

    def restart(self, run: SlotRunner) -> None:
        self.close(run)
        proc = run.proc
        if proc is not None and proc.alive():
            run.set_health(HealthState())
            self._start(run, proc)

    def close(self, run: SlotRunner) -> None:
        for proc in list(self._checks):
            self._cancel(proc)

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._checks.values())

    def _start(self, run: SlotRunner, proc: Proc) -> None:
        if not run.spec.health.type or proc in self._checks:
            return
        name = f"health {run.owner.name}[{run.wid}] {proc.pid}"
        self._checks[proc] = run.host.run_task(self._loop(run, proc), name=name)

    def _cancel(self, proc: Proc) -> None:
        task = self._checks.pop(proc, None)
        if task is not None:
            task.cancel()

    async def _loop(self, run: SlotRunner, proc: Proc) -> None:
        """Check `proc` every interval until it leaves the slot or is found unhealthy."""
        clock = run.clock
        try:
            while True:
                spec = run.spec.health
                await clock.sleep_until(clock.monotonic() + max(spec.interval, health.MIN_INTERVAL))
                if run.proc is not proc:
                    return
                if run.state.state is not ProcessState.RUNNING:
                    continue  # still in its warmup_delay
                failure = await health.check(spec, run.check_context(proc))
                if run.proc is not proc:
                    return
                if run.checked(proc, failure, spec.retries):
                    del self._checks[proc]  # this task ends here; nothing to cancel
                    run.unhealthy(proc)
                    return
        finally:
            if self._checks.get(proc) is asyncio.current_task():
                del self._checks[proc]


ORPHAN_POLL = 1.0
"""Seconds between two reads of an adopted worker's descendants outside its group."""


class AdoptedOrphans(Hook):
    """No orphans of adopted workers either. The descendants of the agent's own worker
    that left its process group come to the agent when the worker exits (it is their
    subreaper), and the reaper's sweep kills them. A worker adopted after a crash of
    the agent is not its child: its orphans go to init. So this hook keeps the list of
    an adopted worker's descendants outside its group (pid and start ticks, read from
    /proc when it is adopted and every ORPHAN_POLL seconds) and SIGKILLs those still
    running when the worker exits; those a graceful stop gave the stop signal are left
    to that stop, which kills them at its deadline. One started less than ORPHAN_POLL
    before its worker exited may be missed."""

    def __init__(self) -> None:
        self._known: dict[Proc, list[tuple[int, int]]] = {}
        self._polls: dict[Proc, asyncio.Task[None]] = {}

    def after_adopt(self, run: SlotRunner, proc: Proc, partials: Mapping[int, bytes]) -> None:
        if proc.child or not proc.alive():
            return  # the agent's child: the sweep sees its orphans
        self._known[proc] = descendants_outside_group(proc.pid)
        name = f"orphans of {run.owner.name}[{run.wid}] {proc.pid}"
        self._polls[proc] = run.host.run_task(self._poll(run, proc), name=name)

    def after_reap(self, run: SlotRunner, proc: Proc, status: int | None) -> None:
        task = self._polls.pop(proc, None)
        if task is not None:
            task.cancel()
        spared = set(proc.stopping_children)
        for pid, ticks in self._known.pop(proc, []):
            if (pid, ticks) not in spared:
                signal_if_same(pid, ticks, signal.SIGKILL)

    def close(self, run: SlotRunner) -> None:
        for task in self._polls.values():
            task.cancel()
        self._polls.clear()

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._polls.values())

    async def _poll(self, run: SlotRunner, proc: Proc) -> None:
        clock = run.clock
        while True:
            await clock.sleep_until(clock.monotonic() + ORPHAN_POLL)
            found = descendants_outside_group(proc.pid)
            # Read while it still ran: a worker that exits hands its children to init
            # before it is a zombie, so a list read then would miss them.
            if alive_as(proc.pid, proc.start_ticks):
                self._known[proc] = found


class HookCommands(Hook):
    """The watcher's `after_spawn` and `after_reap` commands (hook_commands.py): each
    runs in a task of its own that nothing waits for."""

    def after_spawn(self, run: SlotRunner, proc: Proc) -> None:
        run.later("after_spawn", proc.spec, pid=proc.pid)

    def after_reap(self, run: SlotRunner, proc: Proc, status: int | None) -> None:
        run.later("after_reap", proc.spec, pid=proc.pid, status=status)


def default_hooks() -> tuple[Hook, ...]:
    """The hooks every slot runs, in the order they run."""
    return (Output(), WarmUp(), MaxAge(), HealthChecks(), AdoptedOrphans(), HookCommands())


class SlotRunner:
    """One worker id of a watcher on this host: its state, its process, its stops."""

    def __init__(self, owner: Owner, wid: int, hooks: Sequence[Hook] | None = None) -> None:
        self.owner = owner
        self.host = owner.host
        self.clock = owner.clock
        self.wid = wid
        self.hooks = tuple(default_hooks() if hooks is None else hooks)
        self.state = SlotState(wid)
        self.proc: Proc | None = None
        """The slot's process (None: none runs in it now)."""
        self.retiring: dict[Proc, asyncio.Task[None]] = {}
        """Processes of this wid being stopped, each with its stop task."""
        self.env: Mapping[str, str] = {}
        """The environment the current process was started with (exec checks get it)."""
        self.wanted = True
        """False once the wid left the watcher's list: only its stops go on."""
        self.preparing: asyncio.Task[None] | None = None
        """The before_spawn hook that runs before the slot's next spawn."""
        self.commands: set[asyncio.Task[None]] = set()
        """Hook commands that run on their own (after_spawn, after_reap, a signal's)."""

    @property
    def spec(self) -> WatcherSpec:
        """The spec this wid runs (an earlier one while pinned by a rolling change)."""
        return self.owner.version_of(self.wid).spec

    def idle(self) -> bool:
        return self.proc is None and not self.retiring and self.preparing is None

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every task the runner owns: its stops, its hook commands, its hooks' tasks."""
        preparing = [self.preparing] if self.preparing is not None else []
        hooks = [task for hook in self.hooks for task in hook.tasks()]
        return [*self.retiring.values(), *preparing, *self.commands, *hooks]

    def later(self, moment: str, spec: WatcherSpec | None, **facts: Any) -> None:
        """Run the hook command `moment` of `spec` (the slot's by default) in a task of
        its own, if the watcher has one; `facts`: pid, status, signum."""
        spec = spec or self.spec
        if moment in spec.hooks:
            self._command(self._fire(spec, moment, facts), f"{moment} hook")

    async def _fire(self, spec: WatcherSpec, moment: str, facts: Mapping[str, Any]) -> None:
        await self.hook(spec, moment, **facts)

    def _command(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = self.host.run_task(coro, name=f"{what} {self.owner.name}[{self.wid}]")
        self.commands.add(task)
        task.add_done_callback(self.commands.discard)

    async def hook(self, spec: WatcherSpec, moment: str, **facts: Any) -> str:
        """Run the hook command `moment` of `spec` now: "" when it passed (or has
        ignore_errors, or there is none), else how it failed."""
        told = hook_commands.Facts(wid=self.wid, **facts)
        return await hook_commands.fire(
            self.host, self.clock, spec, moment, self.owner.agent_env, told
        )

    # ---- applying the rules ----
    def apply(self, step: Step) -> bool:
        """Make `step` the slot's state and do its actions; True if one says respawn.
        A `Retire` stops the process the slot had (it leaves the slot)."""
        before = self.state
        self.state, actions = step
        respawn = False
        for action in actions:
            if isinstance(action, Report):
                name, message = self.owner.name, action.message
                self.host.event(action.kind, name, self.wid, message, action.severity)
            elif isinstance(action, Retire):
                proc, self.proc = self.proc, None
                if proc is not None:
                    self.retire(proc, action.reason, action.note)
            elif isinstance(action, Wake):
                self.host.wake()
            elif isinstance(action, Respawn):
                respawn = True
        if self.state != before:
            self.host.changed()
        return respawn

    def set_health(self, found: HealthState) -> None:
        self.apply((replace(self.state, health=found), []))

    # ---- starting ----
    def start(self) -> bool:
        """Spawn into the slot; a spawn error is a start that failed at once (the slot's
        flapping rules decide whether to try again now). True if running. With a
        before_spawn hook, the spawn waits for it in a task (False here)."""
        owner, clock = self.owner, self.clock
        while True:
            version = owner.version_of(self.wid)
            self.state = slot.starting(
                self.state, clock.monotonic(), version.label, owner.spec.flapping
            )
            if "before_spawn" in version.spec.hooks:
                self._prepare(version)
                return False
            started = self._spawn_into(version)
            if started is not None:
                return started

    def _spawn_into(self, version: VersionView) -> bool | None:
        """Spawn `version` into the slot: True if it runs, False if it failed and stays
        down for now, None if it failed and the rules say try again at once."""
        try:
            proc = self._spawn(version)
        except (SpawnError, OSError) as exc:
            text = str(exc) if isinstance(exc, SpawnError) else f"spawn error: {exc}"
            return self._not_started(version, text)
        self.proc = proc
        self.apply(slot.spawned(self.state, proc))
        self.host.changed()
        return True

    def _not_started(self, version: VersionView, text: str) -> bool | None:
        self.proc = None
        owner, clock = self.owner, self.clock
        probation = owner.on_probation_version(self.wid, version)
        step = slot.spawn_failed(
            self.state, text, clock.monotonic(), clock.time(), probation, owner.policy()
        )
        self.host.changed()
        return None if self.apply(step) else False

    def _prepare(self, version: VersionView) -> None:
        """Run the before_spawn hook in a task, then spawn (or count a failed start). A
        process being replaced leaves the slot now (the watcher stops it)."""
        self.proc = None
        state = replace(self.state, message="running its before_spawn hook")
        self.apply((state.moved(ProcessState.STARTING), []))
        name = f"before_spawn hook {self.owner.name}[{self.wid}]"
        self.preparing = self.host.run_task(self._before_spawn(version), name=name)

    async def _before_spawn(self, version: VersionView) -> None:
        try:
            failure = await self.hook(version.spec, "before_spawn")
        finally:
            if self.preparing is asyncio.current_task():
                self.preparing = None
        version = self.owner.version_of(self.wid)  # (it may have changed meanwhile)
        if failure:
            started = self._not_started(version, f"spawn aborted: before_spawn hook {failure}")
        else:
            started = self._spawn_into(version)
        if started is None:
            self.start()
        elif started:
            self.owner.spawned_late(self)
        self.host.wake()

    def cancel_prepare(self) -> None:
        """A spawn waiting for its before_spawn hook is not made (the hook is killed)."""
        if self.preparing is not None:
            self.preparing.cancel()
            self.preparing = None

    def _spawn(self, version: VersionView) -> Proc:
        spec = version.spec
        fds = {sock.name: self._bound_fd(sock) for sock in version.sockets}
        pairs = [(sock.name, fds[sock.name]) for sock in version.fds]
        launch = build_launch(spec, self.wid, pairs, self.owner.agent_env)
        generation = self.owner.generation_of_version(version)
        stdin = fds[spec.stdin_socket] if spec.stdin_socket else None
        proc = spawn(launch, spec, self.wid, generation, self.clock, stdin=stdin)
        proc.version_key = version.key
        self.env = launch.env
        self.host.reaper.watch(proc.pid, lambda status: self.on_exit(proc, status))
        for hook in self.hooks:
            hook.after_spawn(self, proc)
        return proc

    def _bound_fd(self, sock: SocketSpec) -> int:
        """The agent's fd of a socket the version needs; SpawnError when it is not bound."""
        bound = self.host.sockets.lookup(sock)
        if bound is None or bound.sock is None:
            why = bound.error if bound is not None else "not in the assignment"
            raise SpawnError(f"spawn error: socket {sock.name!r} is not bound: {why}")
        return bound.fd

    # ---- exits ----
    def on_exit(self, proc: Proc, status: int | None) -> None:
        """`proc` exited with this wait status (None: not known, it was adopted)."""
        code, sig = describe(status)
        if not proc.exited.done():
            proc.exited.set_result(status)
        for hook in self.hooks:
            hook.after_reap(self, proc, status)
        self.host.changed()
        if proc in self.retiring:
            return
        signal_group(proc.pid, signal.SIGKILL)  # leftovers of the group must not outlive it
        if not self.wanted or self.proc is not proc:
            return
        self.proc = None
        clock, owner, state = self.clock, self.owner, self.state
        known = status is not None
        last = LastExit(code, sig, ExitReason.CRASHED, clock.time(), "", not known)
        now, policy = clock.monotonic(), owner.policy()
        if state.state is ProcessState.STARTING and now < proc.settled_at:
            keep_down = owner.keeps_down(self.wid, proc.generation, failed_start=True)
            startsecs = proc.spec.startsecs if proc.spec is not None else 0.0
            step = slot.start_failed(
                state, proc.pid, how(status), last, keep_down, now, policy, startsecs
            )
        elif slot.expected_exit(policy, code, sig, known):
            step = slot.exited_as_expected(state, proc.pid, f"exit code {code}", last)
        else:
            keep_down = owner.keeps_down(self.wid, proc.generation)
            step = slot.exited(state, proc.pid, how(status), last, keep_down, now, policy)
        if self.apply(step):
            self.start()
        else:
            self.host.wake()  # the watcher decides what follows (an on_demand one rests)

    # ---- health ----
    def check_context(self, proc: Proc) -> CheckContext:
        """What a health check of `proc` needs to know."""
        version = self.owner.version_of(self.wid)
        return CheckContext(
            sockets=self.owner.bound_of(version),
            inherited=version.names,
            env=self.env,
            pid=proc.pid,
            cwd=version.spec.working_dir,
            reaper=self.host.reaper,
            uid=proc.uid,
            gid=proc.gid,
            clock=self.clock,
        )

    def checked(self, proc: Proc, failure: str | None, retries: int) -> bool:
        """A check of the slot's process `proc` found `failure` (None: passed); True when
        it must be restarted now."""
        state, restart = slot.checked(self.state, failure, retries)
        self.apply((state, []))
        return restart

    def unhealthy(self, proc: Proc) -> None:
        """Stop the slot's process `proc`, unhealthy; it counts as a crash."""
        keep_down = self.owner.keeps_down(self.wid, proc.generation)
        now, policy = self.clock.monotonic(), self.owner.policy()
        self.apply(slot.unhealthy(self.state, proc.pid, keep_down, now, policy))

    # ---- stopping ----
    def stop(self) -> None:
        """Stop the slot on purpose (a stop, a removal, the agent's shutdown)."""
        self.cancel_prepare()
        self.apply(slot.stop(self.state, self.proc is not None))

    def retire(self, proc: Proc, reason: ExitReason, note: str = "", resume: bool = False) -> None:
        """Stop `proc` in a task; `note` goes into its LastExit message. With `resume`, a
        previous image of the agent sent the stop signal already (see stop_process)."""
        for hook in self.hooks:
            hook.before_stop(self, proc)
        if proc in self.retiring:
            return
        proc.stop_reason, proc.stop_note = reason, note
        spec = proc.spec or self.owner.spec
        self.retiring[proc] = self.host.run_task(
            self._stop(proc, reason, spec, note, resume),
            name=f"stop {self.owner.name}[{proc.wid}] {proc.pid}",
        )
        self.host.changed()

    async def _stop(
        self, proc: Proc, reason: ExitReason, spec: WatcherSpec, note: str, resume: bool
    ) -> None:
        signum = signal_number(spec.stop_signal)
        try:
            send = resume or not await self.hook(spec, "before_signal", pid=proc.pid, signum=signum)
            killed = await stop_process(
                proc,
                signum,
                spec.graceful_timeout,
                spec.stop_children,
                resume=resume,
                send=send,
                clock=self.clock,
                recorded=self.host.records_saved,
            )
            if send and not resume:
                self.later("after_signal", spec, pid=proc.pid, signum=signum)
        finally:
            self.retiring.pop(proc, None)
            self.host.reaper.sweep_soon()  # what the stop spared and is still left over
            self.host.changed()
            self.host.wake()
        status = proc.exited.result() if proc.exited.done() else 0
        code, sig = describe(status)
        final = ExitReason.KILLED if killed else reason
        said = "SIGKILLed after graceful_timeout" if killed else final.words
        text = f"pid {proc.pid} {said}"
        self.host.event("stopped", self.owner.name, proc.wid, text, Severity.INFO)
        if self.wanted and self.proc is None:
            last = LastExit(code, sig, final, self.clock.time(), note, status is None)
            self.apply((slot.stopped(self.state, last), []))

    def close(self, stops: bool) -> None:
        """End the hooks' tasks; with `stops`, cancel the stops in progress too (the agent
        re-executes itself: the next image resumes them)."""
        for hook in self.hooks:
            hook.close(self)
        self.cancel_prepare()
        for task in self.commands:
            task.cancel()
        if stops:
            for task in self.retiring.values():
                task.cancel()

    # ---- after a restart of the agent ----
    def adopt(
        self,
        proc: Proc,
        record: WorkerRecord,
        pidfd: int | None,
        partials: Mapping[int, bytes],
        keeps_slot: bool,
    ) -> None:
        """Take back `proc`, which a previous agent (or image of this one) left running:
        on with its stop, or into the slot (`keeps_slot`: the one on the wanted
        version stays when two claim the slot). Its exit is watched by the reaper (a
        child of this agent: `pidfd` None) or through `pidfd` (which the reaper then
        owns), and its output read again. Never restarts it."""
        stop = record.stopping
        if stop is not None:  # (Proc.from_record took its deadline and children)
            self.retire(proc, ExitReason(stop.reason), stop.note, resume=stop.deadline > 0)
        elif self.proc is not None and not keeps_slot:
            self.retire(proc, ExitReason.RESTARTED)
        else:
            if self.proc is not None:
                self.retire(self.proc, ExitReason.RESTARTED)
            self.proc = proc
            self.env_again()
            self.apply((slot.adopted(self.state), []))
            self.host.changed()
        for hook in self.hooks:
            hook.after_adopt(self, proc, partials)
        if proc.exited.done():
            return  # it exited while no agent ran: only its stop goes on
        if pidfd is None:
            self.host.reaper.watch(proc.pid, lambda status: self.on_exit(proc, status))
        else:
            self.host.reaper.follow(pidfd, proc, lambda status: self.on_exit(proc, status))

    def env_again(self) -> None:
        """The environment the slot's process was started with, made again (for exec
        checks of a process taken back after a restart of the agent)."""
        version = self.owner.version_of(self.wid)
        try:
            pairs = [(name, -1) for name in version.names]
            self.env = build_launch(version.spec, self.wid, pairs, self.owner.agent_env).env
        except (SpawnError, OSError):
            self.env = {}

    def exited_away(self, record: WorkerRecord, status: int | None, generation: int) -> None:
        """A worker of this slot exited while no agent was running: report it and
        respawn it like any crash (flapping rules included)."""
        if self.proc is not None:
            return  # its replacement runs already
        code, sig = describe(status)
        at, unknown = self.clock.time(), status is None
        last = LastExit(code, sig, ExitReason.CRASHED, at, slot.AWAY, unknown)
        keep_down = self.owner.keeps_down(self.wid, generation)
        now, policy = self.clock.monotonic(), self.owner.policy()
        step = slot.exited_away(self.state, record.pid, how(status), last, keep_down, now, policy)
        self.apply(step)
        self.host.changed()

    # ---- what the watcher reports ----
    def records(self) -> list[WorkerRecord]:
        """A record of every live process of this slot (see records.py)."""
        found = []
        if self.proc is not None and self.wanted:
            state = self.state
            found.append(self.proc.record(False, state.restarts, state.spawned, state.replacements))
        found += [proc.record(True) for proc in self.retiring]  # (exited: its stop goes on)
        return found

    def signal(self, signum: int, children: bool) -> bool:
        """Send `signum` to the slot's process (its group with `children`); with a
        before_signal or after_signal hook, in a task that runs them around it."""
        proc = self.proc
        if proc is None:
            return False
        spec = proc.spec or self.spec
        if "before_signal" in spec.hooks or "after_signal" in spec.hooks:
            self._command(self._signal(proc, spec, signum, children), "signal")
            return proc.alive()
        return send_signal(proc.pid, signum, children)

    async def _signal(self, proc: Proc, spec: WatcherSpec, signum: int, children: bool) -> None:
        if await self.hook(spec, "before_signal", pid=proc.pid, signum=signum):
            return  # a failing before_signal keeps the signal from being sent
        if proc.alive() and send_signal(proc.pid, signum, children):
            await self.hook(spec, "after_signal", pid=proc.pid, signum=signum)


def send_signal(pid: int, signum: int, children: bool) -> bool:
    """Send `signum` to `pid` (its group with `children`); False when it is gone."""
    try:
        if children:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def how(status: int | None) -> str:
    """How a worker ended, for an exit event: `exit code 3 (crashed)`."""
    if status is None:
        return "exit status unknown (not the agent's child)"
    code, sig = describe(status)
    return f"killed by signal {sig} (crashed)" if sig else f"exit code {code} (crashed)"
