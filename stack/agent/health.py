"""Health checks of running workers: is the process not just alive but answering?

A watcher with a `[health]` table has each of its running processes checked every
`interval` seconds, the first time one interval after the spawn (a process that has
just started is rarely ready at once). Each check is bounded by `timeout`:

- tcp: connect to 127.0.0.1:PORT, or to the bound address of one of the agent's
  sockets (a path for a unix socket). Mind that the agent itself listens on its
  sockets: the kernel completes a connect into the backlog even when no worker calls
  accept, so a tcp check by socket name only proves the socket is bound and its backlog
  not full. To know that a worker answers, use http on such a socket, a port of the
  worker's own, or exec.
- http: GET a path on the watcher's first inherited TCP socket, or a full http:// URL;
  a 2xx or 3xx status passes. All workers share an inherited socket, so a check through
  it says "some worker of the watcher answers", not "this worker answers" (the process
  whose check fails may be a healthy one); for a per-worker verdict give each worker
  its own port (e.g. 8000 + wid in an exec check) or use exec. Plain asyncio streams,
  no thread.
- exec: run a command with the worker's environment plus STACK_PID (the worker's pid)
  in the worker's working_dir; exit 0 passes. The command is a child of the agent, so it
  is registered with the reaper (which would otherwise reap it, or sweep it as an
  orphan) and its process group is SIGKILLed on timeout or when the check is cancelled.

What the results mean is decided by `record`, a pure function; the loop around it
is a hook of the slot's runner (runner.HealthChecks), a task of the engine's TaskGroup
per process. Intervals and timeouts are measured on the clock passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from stack.agent.clock import SYSTEM, Clock
from stack.agent.control_signals import unblocked_for_child
from stack.agent.process import SpawnError, as_user
from stack.agent.reaper import Reaper, describe
from stack.agent.sockets import BoundSocket
from stack.spec.model import HealthSpec
from stack.spec.observed import Health

MIN_INTERVAL = 0.05
"""Seconds; a shorter (or zero) interval is taken as this, never as a busy loop."""


@dataclass(frozen=True)
class HealthState:
    """What the checks of one process have found so far."""

    health: Health = Health.STARTING
    failures: int = 0
    """Failed checks in a row."""
    message: str = ""
    """The last failure, kept after later checks pass."""


def record(state: HealthState, failure: str | None, retries: int) -> tuple[HealthState, bool]:
    """One check's result (None: passed, else why it failed) -> the new state and whether
    the process must be restarted now (the `retries`-th failure in a row)."""
    if state.health is Health.UNHEALTHY:
        return state, False  # already being restarted
    if failure is None:
        return replace(state, health=Health.HEALTHY, failures=0), False
    failures = state.failures + 1
    if failures >= max(1, retries):
        return HealthState(Health.UNHEALTHY, failures, failure), True
    return replace(state, failures=failures, message=failure), False


@dataclass(frozen=True)
class CheckContext:
    """What a check needs to know about the process it checks."""

    sockets: Mapping[str, BoundSocket]
    """The sockets the checked process inherits, as the agent bound them, by name."""
    inherited: tuple[str, ...]
    """Names of the sockets the process inherits, in fd order."""
    env: Mapping[str, str]
    """The worker's environment (an exec check gets it, plus STACK_PID)."""
    pid: int
    cwd: str
    reaper: Reaper
    uid: int | None = None
    """The worker's user: an exec check runs as the worker it checks, not as the agent."""
    gid: int | None = None
    clock: Clock = SYSTEM
    """What a check's `timeout` is measured on."""


class CheckFailed(Exception):
    """One check did not pass; str() is the reason without the check's label."""


def label(spec: HealthSpec) -> str:
    """`tcp 8080`, `http /health`, `exec ./check`: how messages name the check."""
    return f"{spec.type} {spec.target}"


async def check(spec: HealthSpec, ctx: CheckContext) -> str | None:
    """Run one check bounded by `spec.timeout`: None when it passed, else the message
    for status, e.g. `tcp 127.0.0.1:8080: connection refused`."""
    name = label(spec)
    try:
        if spec.type == "tcp":
            where = tcp_endpoint(spec.target, ctx)
            name = f"tcp {where}"
            await _bounded(ctx.clock, spec.timeout, _tcp(where))
        elif spec.type == "http":
            await _bounded(ctx.clock, spec.timeout, _http(spec.target, ctx))
        elif spec.type == "exec":
            await _bounded(ctx.clock, spec.timeout, _exec(spec.target, ctx))
        else:
            raise CheckFailed(f"unknown check type {spec.type!r}")
    except TimeoutError:
        return f"{name}: timed out after {spec.timeout:g}s"
    except CheckFailed as exc:
        return f"{name}: {exc}"
    return None


async def _bounded(clock: Clock, timeout: float, work: Coroutine[Any, Any, None]) -> None:
    async with clock.timeout_at(clock.monotonic() + timeout):
        await work


# -- tcp and http ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: a TCP host and port, or a unix socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.path:
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def socket_endpoint(sockets: Mapping[str, BoundSocket], name: str) -> Endpoint:
    """The address one of the agent's bound sockets answers on (wildcards as loopback)."""
    bound = sockets.get(name)
    if bound is None or bound.sock is None:
        raise CheckFailed(f"socket {name!r} is not bound")
    if bound.sock.family == socket.AF_UNIX:
        return Endpoint(path=bound.spec.path)
    host, port = bound.sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return Endpoint(host=host, port=port)


def tcp_endpoint(target: str, ctx: CheckContext) -> Endpoint:
    """A tcp target: a port on 127.0.0.1, or the name of one of the agent's sockets."""
    text = target.strip()
    if text.isdigit():
        return Endpoint(host="127.0.0.1", port=int(text))
    return socket_endpoint(ctx.sockets, text)


def http_endpoint(target: str, ctx: CheckContext) -> tuple[Endpoint, str]:
    """An http target as (where to connect, request path)."""
    if target.startswith("/"):
        for name in ctx.inherited:
            bound = ctx.sockets.get(name)
            if bound is not None and bound.sock is not None and not bound.spec.path:
                return socket_endpoint(ctx.sockets, name), target
        raise CheckFailed("the watcher inherits no TCP socket to send the request to")
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise CheckFailed("the target must be a path like /health or an http:// URL")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise CheckFailed(str(exc)) from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Endpoint(host=parts.hostname, port=port), path


async def _connect(where: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        if where.path:
            return await asyncio.open_unix_connection(where.path)
        return await asyncio.open_connection(where.host, where.port)
    except OSError as exc:
        raise CheckFailed(_os_reason(exc)) from None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _tcp(where: Endpoint) -> None:
    _, writer = await _connect(where)
    await _close(writer)


async def _http(target: str, ctx: CheckContext) -> None:
    where, path = http_endpoint(target, ctx)
    reader, writer = await _connect(where)
    host = "localhost" if where.path else str(where)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: stack-agent health check\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    try:
        writer.write(request.encode("latin-1"))
        await writer.drain()
        line = await reader.readline()
    except (OSError, ValueError) as exc:
        raise CheckFailed(_os_reason(exc) if isinstance(exc, OSError) else str(exc)) from None
    finally:
        await _close(writer)
    status = parse_status_line(line)
    if not 200 <= status < 400:
        raise CheckFailed(f"status {status}")


def parse_status_line(line: bytes) -> int:
    """The status code of `HTTP/1.1 200 OK`; CheckFailed for anything else."""
    words = line.split(None, 2)
    if not line:
        raise CheckFailed("connection closed without a response")
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        shown = line[:60].decode("latin-1").strip()
        raise CheckFailed(f"not an HTTP response: {shown!r}")
    return int(words[1])


def _os_reason(exc: OSError) -> str:
    """`connection refused` rather than asyncio's `Connect call failed ('127.0.0.1', 1)`."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


# -- exec --------------------------------------------------------------------------


async def _exec(target: str, ctx: CheckContext) -> None:
    try:
        argv = shlex.split(target)
    except ValueError as exc:
        raise CheckFailed(f"bad command: {exc}") from None
    if not argv:
        raise CheckFailed("empty command")
    env = dict(ctx.env)
    env["STACK_PID"] = str(ctx.pid)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    try:
        argv = as_user(argv, ctx.uid, ctx.gid)
        with unblocked_for_child():
            popen = subprocess.Popen(  # no user/group: see stack.agent.process
                argv,
                env=env,
                cwd=ctx.cwd or None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=0,
            )
    except SpawnError as exc:
        raise CheckFailed(str(exc)) from None
    except (OSError, subprocess.SubprocessError) as exc:
        reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise CheckFailed(reason) from None

    def exited(status: int) -> None:
        code, sig = describe(status)
        popen.returncode = -sig if sig else code  # Popen must not wait for it again
        if not done.done():
            done.set_result(status)

    # Watched before the next turn of the loop: the reaper neither steals its exit
    # status unnoticed nor sweeps it as an orphan.
    ctx.reaper.watch(popen.pid, exited)
    try:
        status = await asyncio.shield(done)
    finally:
        if not done.done():  # timed out or cancelled: the whole group goes
            with contextlib.suppress(OSError):
                os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):  # what it left behind in its group
        os.killpg(popen.pid, signal.SIGKILL)
    code, sig = describe(status)
    if sig:
        raise CheckFailed(f"killed by signal {sig}")
    if code != 0:
        raise CheckFailed(f"exit {code}")
