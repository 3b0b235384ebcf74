"""Helpers for the agent's integration tests: build Assignments, run an Engine.

The tests drive `stack.agent.engine.Engine` directly with Assignment protos and real
processes; nothing sleeps blindly, everything polls a condition with a deadline
(`until` in tests/support/wait.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from stack.agent.settings import AgentSettings
from stack.spec.model import SocketSpec, WatcherSpec
from stack.v1 import agent_pb2, types_pb2
from stack.wire.spec import socket_to_proto, watcher_to_proto
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
    **options: Any,
) -> agent_pb2.WatcherAssignment:
    spec = WatcherSpec(name=name, cmd=cmd, numprocesses=len(wids), **options)
    return agent_pb2.WatcherAssignment(
        spec=watcher_to_proto(spec),
        wids=wids,
        active=active,
        restart_token=restart_token,
        graceful=graceful,
        reset_token=reset_token,
    )


def assignment(
    *watchers: agent_pb2.WatcherAssignment,
    sockets: tuple[SocketSpec, ...] = (),
    generation: int = 1,
    fencing_token: int = 1,
) -> agent_pb2.Assignment:
    msg = agent_pb2.Assignment(generation=generation, fencing_token=fencing_token)
    msg.watchers.extend(watchers)
    msg.sockets.extend(socket_to_proto(s) for s in sockets)
    return msg


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


def statuses(observed: agent_pb2.Observed, name: str) -> dict[int, types_pb2.ProcessStatus]:
    return {p.wid: p for p in observed.processes if p.watcher == name}


def running_pids(observed: agent_pb2.Observed, name: str) -> dict[int, int]:
    return {
        p.wid: p.pid
        for p in observed.processes
        if p.watcher == name and p.state == types_pb2.PROCESS_STATE_RUNNING and p.pid
    }
