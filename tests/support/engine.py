"""Helpers for the agent's integration tests: build Assignments, run an Engine.

The tests drive `stack.agent.engine.Engine` directly with (domain) Assignments and real
processes; nothing sleeps blindly, everything polls a condition with a deadline
(`until` in tests/support/wait.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from stack.agent.settings import AgentSettings
from stack.spec.assignment import Assignment, PinnedVersion, WatcherAssignment
from stack.spec.model import SocketSpec, WatcherSpec
from stack.spec.observed import Observed, ProcessState, ProcessStatus
from tests.support.processes import PYTHON

T = TypeVar("T")
HOST_ID = "test-host"


def settings(tmp_path: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "agent",
        "host_id": HOST_ID,
        "stats_interval": 0.2,
        "flush_interval": 0.05,
    }
    values.update(overrides)
    return AgentSettings(**values)


def watcher(
    name: str,
    cmd: str,
    wids: list[int],
    *,
    active: bool = True,
    restart_token: int = 0,
    graceful: bool = False,
    reset_token: int = 0,
    pinned: tuple[PinnedVersion, ...] = (),
    probation: tuple[int, ...] = (),
    **options: Any,
) -> WatcherAssignment:
    spec = WatcherSpec(name=name, cmd=cmd, numprocesses=len(wids), **options)
    return WatcherAssignment(
        spec=spec,
        wids=tuple(wids),
        active=active,
        restart_token=restart_token,
        graceful=graceful,
        reset_token=reset_token,
        pinned=pinned,
        probation=probation,
    )


def assignment(
    *watchers: WatcherAssignment,
    sockets: tuple[SocketSpec, ...] = (),
    generation: int = 1,
    fencing_token: int = 1,
) -> Assignment:
    return Assignment(generation, fencing_token, tuple(watchers), tuple(sockets))


def python_cmd(code: str) -> tuple[str, tuple[str, ...]]:
    """(cmd, args) running a Python snippet: use as `cmd=..., args=...`."""
    return PYTHON, ("-c", code)


def run(coro: Coroutine[Any, Any, T], timeout: float = 100.0) -> T:
    """Run a scenario on a new event loop; a hung one fails after `timeout` (before
    pytest-timeout's 120 s, with the scenario's own traceback)."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def statuses(observed: Observed, name: str) -> dict[int, ProcessStatus]:
    return {p.wid: p for p in observed.processes if p.watcher == name}


def running_pids(observed: Observed, name: str) -> dict[int, int]:
    return {
        p.wid: p.pid
        for p in observed.processes
        if p.watcher == name and p.state == ProcessState.RUNNING and p.pid
    }
