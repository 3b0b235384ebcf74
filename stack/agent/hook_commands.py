"""Hook commands: the programs a watcher's `[hooks]` table names, run around its workers.

Circus calls Python functions inside circusd at these moments; Stack runs a command,
which any language can write and which cannot take the agent down with it. What each
moment means on a host (see README, `[watchers.NAME.hooks]`):

- `before_start`, `after_start`: around a start of the watcher on this host (its first
  workers after an apply, a `start` after a `stop`), as Circus runs them around a
  watcher's start, not around each worker's. A failing `before_start` starts none of
  its workers here until `stackctl start`, `reset` or a new version; `after_start` runs
  once every worker of that start has been spawned (or has failed to be).
- `before_stop`, `after_stop`: around a stop of the watcher on this host (`stop`, its
  removal, the agent's shutdown); `after_stop` once every worker is gone. A stop always
  happens: as in Circus, their result does not change it.
- `before_spawn`, `after_spawn`: around each worker's spawn. A failing `before_spawn`
  aborts that spawn, which counts as a start that failed (max_retry, flapping).
- `before_signal`, `after_signal`: around each signal the agent sends a worker (its
  stop signal, `stackctl signal`, the SIGHUP of a send_hup reload), never SIGKILL. A
  failing `before_signal` keeps that signal from being sent.
- `after_reap`: after each worker's exit, with its exit status.

Each run gets the watcher's environment (its `env`, and the agent's with `copy_env`),
plus STACK_WATCHER, STACK_HOOK, STACK_WID and STACK_PID where there is a worker,
STACK_SIGNAL around a signal, and STACK_EXIT_CODE and STACK_EXIT_SIGNAL after a reap
whose status is known. It runs as the worker's user (through setpriv, as workers are),
in the worker's working_dir, in a process group of its own that is SIGKILLed at the
hook's timeout or when the agent gives up waiting for it. It is a child of the agent
awaited asynchronously through the reaper, so no hook ever holds up the event loop,
another worker or another watcher; its output is kept only to say how it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from stack.agent.clock import Clock
from stack.agent.control_signals import unblocked_for_child
from stack.agent.process import SpawnError, as_user, python_env, resolve_program, worker_ids
from stack.agent.reaper import Reaper, describe
from stack.spec.model import HookSpec, WatcherSpec
from stack.spec.reports import Severity

TAIL_BYTES = 4096
"""How much of a hook's output is kept to quote its last line when it fails."""
KILL_WAIT = 5.0
"""Seconds to wait for a killed hook's exit before giving up on its status."""


class Reporter(Protocol):
    """What running a hook needs from the engine."""

    reaper: Reaper

    def event(
        self, kind: str, watcher: str, wid: int, message: str, severity: Severity
    ) -> None: ...


@dataclass(frozen=True)
class Facts:
    """What a hook is told of the moment it runs at (0, None: nothing to tell)."""

    wid: int = 0
    pid: int = 0
    status: int | None = None
    """The wait status of the worker reaped (after_reap), when known."""
    signum: int = 0


def hook_env(
    spec: WatcherSpec, moment: str, agent_env: Mapping[str, str], facts: Facts = Facts()
) -> dict[str, str]:
    """The environment of one run of the hook `moment` (see the module docstring)."""
    env: dict[str, str] = dict(agent_env) if spec.copy_env else {}
    env.update(spec.env)
    env["STACK_WATCHER"] = spec.name
    env["STACK_HOOK"] = moment
    if facts.wid:
        env["STACK_WID"] = str(facts.wid)
    if facts.pid:
        env["STACK_PID"] = str(facts.pid)
    if facts.signum:
        env["STACK_SIGNAL"] = signal.Signals(facts.signum).name
    if facts.status is not None:
        code, sig = describe(facts.status)
        env["STACK_EXIT_CODE"] = str(code)
        env["STACK_EXIT_SIGNAL"] = str(sig)
    try:
        python_env(spec, env, agent_env)
    except SpawnError:
        pass  # a missing virtualenv fails the workers' spawns, not their hooks
    return env


async def fire(
    host: Reporter,
    clock: Clock,
    spec: WatcherSpec,
    moment: str,
    agent_env: Mapping[str, str],
    facts: Facts = Facts(),
) -> str:
    """Run `spec`'s hook `moment`, if it has one: "" when what follows it may go on (it
    passed, has ignore_errors, or there is none), else how it failed. A failure or a
    timeout raises one `hook_failed` event, whatever follows."""
    hook = spec.hooks.get(moment)
    if hook is None:
        return ""
    env = hook_env(spec, moment, agent_env, facts)
    failure = await run_hook(hook, spec, env, agent_env, host.reaper, clock)
    if not failure:
        return ""
    counts = moment.startswith("before_") and not hook.ignore_errors
    said = f"{moment} hook {failure}" + (" (ignore_errors)" if hook.ignore_errors else "")
    severity = Severity.ERROR if counts else Severity.WARNING
    host.event("hook_failed", spec.name, facts.wid, said, severity)
    return failure if not hook.ignore_errors else ""


async def run_hook(
    hook: HookSpec,
    spec: WatcherSpec,
    env: Mapping[str, str],
    agent_env: Mapping[str, str],
    reaper: Reaper,
    clock: Clock,
) -> str:
    """Run one hook command to its end or its timeout: "" when it exited 0, else how it
    failed, in words (`failed: exit code 2: no database`, `timed out after 5s`)."""
    try:
        argv = shlex.split(hook.cmd)
        argv[0] = resolve_program(argv[0], env, agent_env)
        uid, gid = worker_ids(spec)
        argv = as_user(argv, uid, gid)
    except SpawnError as exc:
        return f"could not run: {str(exc).removeprefix('spawn error: ')}"
    except (ValueError, IndexError, OSError) as exc:
        return f"could not run: {_reason(exc)}"
    read_end, write_end = os.pipe()
    try:
        with unblocked_for_child():
            popen = subprocess.Popen(  # no user/group: see stack.agent.process
                argv,
                env=dict(env),
                cwd=spec.working_dir or None,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                process_group=0,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(read_end)
        return f"could not run: {_reason(exc)}"
    finally:
        os.close(write_end)
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def exited(status: int) -> None:
        code, sig = describe(status)
        popen.returncode = -sig if sig else code  # Popen must not wait for it again
        if not done.done():
            done.set_result(status)

    # Watched before the next turn of the loop: the reaper neither steals its exit
    # status unnoticed nor sweeps it as an orphan.
    reaper.watch(popen.pid, exited)
    tail = _Tail(read_end)
    try:
        try:
            async with clock.timeout_at(clock.monotonic() + hook.timeout):
                status = await asyncio.shield(done)
        except TimeoutError:
            _kill_group(popen.pid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT):
                    await asyncio.shield(done)
            return f"timed out after {hook.timeout:g}s (its process group was killed)"
        code, sig = describe(status)
        if not sig and code == 0:
            return ""
        last = tail.last_line()
    finally:
        _kill_group(popen.pid)  # what it left behind in its group; all of it when cancelled
        tail.close()
    how = f"killed by signal {sig}" if sig else f"exit code {code}"
    return f"failed: {how}: {last}" if last else f"failed: {how}"


class _Tail:
    """The last TAIL_BYTES a hook wrote, read as they come without blocking the loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = b""
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(fd, self._read)
        self.open = True

    def _read(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.loop.remove_reader(self.fd)
            return
        self.data = (self.data + chunk)[-TAIL_BYTES:]

    def last_line(self) -> str:
        with contextlib.suppress(OSError):  # what is left in the pipe
            while chunk := os.read(self.fd, 65536):
                self.data = (self.data + chunk)[-TAIL_BYTES:]
        lines = [line.strip() for line in self.data.decode(errors="replace").splitlines()]
        found = [line for line in lines if line]
        return found[-1][:200] if found else ""

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.fd)
            os.close(self.fd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        name = f": {exc.filename}" if exc.filename else ""
        return f"{os.strerror(exc.errno).lower()}{name}"
    return str(exc) or type(exc).__name__
