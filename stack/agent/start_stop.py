"""A watcher's start and stop on this host, and the hooks Circus runs around them.

Circus runs `before_start` and `after_start` around a watcher's start, `before_stop`
and `after_stop` around its stop, not around each worker's (those are `before_spawn`
and the others, see hook_commands.py). On a host, the watcher starts when its first
workers are to run there (an apply, a `start` after a `stop`) and stops when they are
all to stop (`stop`, its removal, the agent's shutdown); scaling, replacing or
respawning a worker is neither. `StartStop` keeps where the watcher is in that cycle
(`Phase`) and runs those four hooks, each in a task, so that the watcher's reconcile
never waits for one: it asks `may_start` or `may_stop` and does nothing for now when
the answer is no. A watcher that a restarted agent finds running (it adopts its
workers) is started already: its hooks do not run again.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from typing import Any, Protocol

from stack.agent import hook_commands
from stack.agent.runner import Host, SlotRunner
from stack.agent.states import ProcessState
from stack.spec.model import WatcherSpec


class Phase(enum.Enum):
    IDLE = "idle"
    """Not started on this host (or stopped, its after_stop run)."""
    BEFORE_START = "before_start"
    """Its before_start hook runs: no worker is started meanwhile."""
    REFUSED = "refused"
    """Its before_start hook failed: no worker is started until a start, a reset or a
    new version."""
    STARTED = "started"
    BEFORE_STOP = "before_stop"
    """Its before_stop hook runs: its workers are stopped once it is done."""
    STOPPING = "stopping"
    """Its workers stop; after_stop runs once they are all gone."""
    SHUTDOWN = "shutdown"
    """The agent shuts down: `shut_down` runs the stop hooks itself."""


class Owner(Protocol):
    """What StartStop reads of its watcher."""

    host: Host

    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> WatcherSpec: ...
    @property
    def agent_env(self) -> Any: ...
    @property
    def clock(self) -> Any: ...
    def runners(self) -> list[SlotRunner]: ...
    def wanted_runners(self) -> list[SlotRunner]: ...


class StartStop:
    """Where a watcher is between its start and its stop on this host (see the module)."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.phase = Phase.IDLE
        self.after_start_due = False
        self.runs: set[asyncio.Task[None]] = set()

    # ---- asked by the watcher's reconcile ----
    def may_start(self, has_workers: bool) -> bool:
        """The watcher is to run here: may its workers be started now?"""
        if self.phase is Phase.STOPPING:
            self.phase = Phase.IDLE  # wanted again before its stop was over: no after_stop
        if self.phase is Phase.IDLE and has_workers:
            if any(run.proc is not None for run in self.owner.runners()):
                self.phase = Phase.STARTED  # running already (adopted): its hooks ran
            elif "before_start" in self.owner.spec.hooks:
                self.phase = Phase.BEFORE_START
                self._run(self._before_start(), "before_start hook")
            else:
                self._started()
        return self.phase in (Phase.IDLE, Phase.STARTED)

    def may_stop(self) -> bool:
        """The watcher is to stop here: may its workers be stopped now?"""
        phase = self.phase
        if phase in (Phase.REFUSED, Phase.BEFORE_START):
            self._cancel()
            self.phase = Phase.IDLE
        elif phase is Phase.STARTED:
            running = any(run.proc is not None for run in self.owner.runners())
            if running and "before_stop" in self.owner.spec.hooks:
                self.phase = Phase.BEFORE_STOP
                self._run(self._before_stop(), "before_stop hook")
            else:
                self.phase = Phase.STOPPING
        return self.phase is not Phase.BEFORE_STOP

    def tend(self, stopping: bool) -> None:
        """After the reconcile's starts (or stops): run after_start once every worker of
        the start was spawned (or failed to be), after_stop once every one is gone."""
        if self.phase is Phase.STARTED and self.after_start_due and not stopping:
            runs = self.owner.wanted_runners()
            if all(not run.state.pending and run.preparing is None for run in runs):
                self.after_start_due = False
                self._hook_later("after_start")
        elif (
            self.phase is Phase.STOPPING
            and stopping
            and all(run.idle() for run in self.owner.runners())
        ):
            self.phase = Phase.IDLE
            self._hook_later("after_stop")

    def again(self) -> None:
        """A start, a reset or a new version: a refused start is tried again."""
        if self.phase is Phase.REFUSED:
            self.phase = Phase.IDLE

    def idle(self) -> bool:
        return not self.runs and self.phase not in (Phase.BEFORE_STOP, Phase.STOPPING)

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self.runs)

    def close(self) -> None:
        self._cancel()

    # ---- the agent's shutdown ----
    async def shut_down(self, stop_all: Callable[[], Iterable[asyncio.Task[None]]]) -> None:
        """Stop every worker for the agent's shutdown, with before_stop first and
        after_stop once they are gone when the watcher was started here; waits for
        the hook commands still running (each within its timeout)."""
        started = self.phase in (Phase.STARTED, Phase.BEFORE_STOP, Phase.STOPPING)
        running = any(run.proc is not None for run in self.owner.runners())
        before_stop = self.phase is Phase.STARTED and running
        self._cancel()
        self.phase = Phase.SHUTDOWN
        if before_stop:
            await self._hook("before_stop")
        stops = list(stop_all())
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        if started:
            await self._hook("after_stop")
        commands = [task for run in self.owner.runners() for task in run.commands]
        if commands:
            await asyncio.gather(*commands, return_exceptions=True)

    # ---- the hooks ----
    async def _before_start(self) -> None:
        failure = await self._hook("before_start")
        if self.phase is not Phase.BEFORE_START:
            return
        if not failure:
            self._started()
        else:
            self.phase = Phase.REFUSED
            text = f"not started: before_start hook {failure}"
            for run in self.owner.wanted_runners():
                state = replace(run.state, pending=False, message=text)
                run.apply((state.moved(ProcessState.STOPPED), []))
        self.owner.host.wake()

    async def _before_stop(self) -> None:
        await self._hook("before_stop")  # as in Circus, its result does not stop the stop
        if self.phase is Phase.BEFORE_STOP:
            self.phase = Phase.STOPPING
        self.owner.host.wake()

    def _started(self) -> None:
        self.phase = Phase.STARTED
        self.after_start_due = "after_start" in self.owner.spec.hooks

    async def _hook(self, moment: str) -> str:
        owner = self.owner
        return await hook_commands.fire(
            owner.host, owner.clock, owner.spec, moment, owner.agent_env
        )

    def _hook_later(self, moment: str) -> None:
        if moment in self.owner.spec.hooks:
            self._run(self._after(moment), f"{moment} hook")

    async def _after(self, moment: str) -> None:
        await self._hook(moment)
        self.owner.host.wake()

    def _run(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = self.owner.host.run_task(coro, name=f"{what} {self.owner.name}")
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)

    def _cancel(self) -> None:
        for task in list(self.runs):
            task.cancel()
        self.runs.clear()
