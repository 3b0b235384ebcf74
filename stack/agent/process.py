"""Spawn, signal and stop one worker process.

No `preexec_fn` (grpcio runs threads): the session, cwd, env, umask, stdin and
the pipes go through Popen's own arguments. Only when a worker inherits sockets or
needs rlimits does it go through a tiny bash step that moves the sockets to fds 3, 4,
..., applies `ulimit`, exports LISTEN_PID=$$ and execs the real command (the pid stays
the same). Everything else is spawned directly: that is the fast path.

Never give Popen a user, group or extra groups: it then fork()s instead of vfork()ing,
and fork() runs gRPC's pthread_atfork handlers in the child, which restart gRPC's
threads there while the child is still root and not yet exec'd; those threads crashed
about one child in a hundred (SIGSEGV, SIGBUS, SIGABRT in ev_epoll1_linux.cc) while the
agent's gRPC session was busy. A worker that runs as another user is exec'd through
util-linux's `setpriv` instead (`as_user`), last in the chain, after the bash step: the
sockets and rlimits are set up as root, then the ids change and the command is exec'd,
still under the same pid.

A worker's stdout and stderr are pipes whose read ends the agent keeps at fds >= 100.
The worker inherits a copy of those read ends too, at the same numbers: while the
worker lives its pipes always have a reader, so a worker never gets SIGPIPE or EPIPE
because the agent died, and a new agent takes the read ends back from the worker
(see adoption.py). After the spawn a worker is known by its pid alone (`Proc`): the
reaper, or a pidfd for a worker adopted from a previous agent, reports its exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import grp
import os
import pwd
import shlex
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stack.agent.adoption import (
    alive_as,
    descendants_outside_group,
    live_group_member,
    read_stat,
    signal_if_same,
)
from stack.agent.clock import SYSTEM, Clock
from stack.agent.control_signals import unblocked_for_child
from stack.agent.pipe_peek import F_SETPIPE_SZ, PIPE_BYTES
from stack.agent.records import PipeRecord, StopRecord, WorkerRecord
from stack.agent.sockets import FD_FLOOR
from stack.spec.model import WatcherSpec, version_label
from stack.spec.substitute import SubstitutionError, expand


def which(program: str, path: str | None = None) -> str | None:
    """The first executable `program` on `path` (the agent's PATH when None), as
    shutil.which finds it on POSIX. Not shutil itself: it imports bz2 and lzma for its
    archives, about 0.4 MiB of the agent's RSS for a PATH search."""
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


BASH = which("bash") or "/bin/bash"
SETPRIV = which("setpriv") or "/usr/bin/setpriv"


_ULIMIT_FLAGS = {
    "as": "-v", "core": "-c", "cpu": "-t", "data": "-d", "fsize": "-f", "locks": "-x",
    "memlock": "-l", "msgqueue": "-q", "nice": "-e", "nofile": "-n", "nproc": "-u",
    "rss": "-m", "rtprio": "-r", "sigpending": "-i", "stack": "-s",
}  # fmt: skip


class SpawnError(Exception):
    """A worker could not be started; str() is the one-line reason shown in status."""


def signal_number(name: str | int) -> int:
    """A signal given as "TERM", "SIGTERM", "term" or "15", as its number (else ValueError)."""
    text = str(name).strip().upper()
    if text.isdigit():
        return int(signal.Signals(int(text)))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


@dataclass(frozen=True)
class Launch:
    """Exactly what is handed to Popen for one worker."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...]
    through_bash: bool


def build_launch(
    spec: WatcherSpec,
    wid: int,
    sockets: list[tuple[str, int]],
    agent_env: Mapping[str, str],
) -> Launch:
    """The argv/env/fds of one worker. `sockets` are (name, agent-side fd) in fd order."""
    env: dict[str, str] = dict(agent_env) if spec.copy_env else {}
    env.update(spec.env)
    env["STACK_WATCHER"] = spec.name
    env["STACK_WID"] = str(wid)
    python_env(spec, env, agent_env)
    child_fds = {name: 3 + index for index, (name, _) in enumerate(sockets)}
    if sockets:
        env["LISTEN_FDS"] = str(len(sockets))
        env["LISTEN_FDNAMES"] = ":".join(name for name, _ in sockets)
    try:
        cmd = expand(spec.cmd, watcher=spec.name, wid=wid, socket_fds=child_fds, env=env)
        args, shell_args = (
            [
                expand(arg, watcher=spec.name, wid=wid, socket_fds=child_fds, env=env)
                for arg in given
            ]
            for given in (spec.args, spec.shell_args)
        )
    except SubstitutionError as exc:
        raise SpawnError(f"spawn error: {exc}") from None
    if spec.shell:
        shell = resolve_program(spec.executable, env, agent_env) if spec.executable else "/bin/sh"
        argv = [shell, "-c", " ".join([cmd, *args]), *shell_args]
    else:
        try:
            argv = [*shlex.split(cmd), *args]
        except ValueError as exc:
            raise SpawnError(f"spawn error: bad cmd {cmd!r}: {exc}") from None
        if not argv:
            raise SpawnError("spawn error: empty cmd")
        if spec.executable:  # the first word of cmd is only the program's argv[0]
            program = shlex.quote(resolve_program(spec.executable, env, agent_env))
            argv = [BASH, "-c", f'exec -a "$0" {program} "$@"', *argv]
        else:
            argv[0] = resolve_program(argv[0], env, agent_env)
    steps: list[str] = []
    if sockets:
        moves = " ".join(f"{3 + i}<&{fd}" for i, (_, fd) in enumerate(sockets))
        closes = " ".join(f"{fd}<&-" for _, fd in sockets)
        steps.append(f"exec {moves} {closes}")
    for name, value in sorted(spec.rlimits.items()):
        flag = _ULIMIT_FLAGS.get(name.lower())
        if flag is None:
            raise SpawnError(f"spawn error: unknown rlimit {name!r}")
        steps.append(f"ulimit {flag} {'unlimited' if value < 0 else int(value)}")
    if not steps:
        return Launch(argv, env, (), False)
    if sockets:
        steps.append("export LISTEN_PID=$$")
    steps.append('exec "$0" "$@"')
    script = "; ".join(steps)
    return Launch([BASH, "-c", script, *argv], env, tuple(fd for _, fd in sockets), True)


def as_user(argv: list[str], uid: int | None, gid: int | None) -> list[str]:
    """`argv` run as `uid`/`gid` through setpriv; unchanged when both are None.

    As root, supplementary groups are cleared (the agent's must not leak into the
    worker); otherwise they are kept, since only root may change them.
    """
    if uid is None and gid is None:
        return argv
    if not os.access(SETPRIV, os.X_OK):
        raise SpawnError(f"spawn error: running as another user needs {SETPRIV} (util-linux)")
    options = [] if uid is None else [f"--reuid={uid}"]
    if gid is not None:
        options.append(f"--regid={gid}")
    options.append("--clear-groups" if uid is not None and os.geteuid() == 0 else "--keep-groups")
    return [SETPRIV, *options, "--", *argv]


def python_env(spec: WatcherSpec, env: dict[str, str], agent_env: Mapping[str, str]) -> None:
    """`virtualenv`: its bin directory leads PATH (so `python` and the programs installed
    in it are found first) and VIRTUAL_ENV names it, as `activate` does. `copy_path`:
    the workers' working directory leads PYTHONPATH (never the agent's own sys.path,
    which is Stack's installation, not the application's)."""
    if spec.virtualenv:
        venv = os.path.join(spec.working_dir or os.getcwd(), spec.virtualenv)
        bin_dir = os.path.join(venv, "bin")
        if not os.path.isdir(bin_dir):
            raise SpawnError(f"spawn error: virtualenv {venv!r} has no bin directory")
        env["VIRTUAL_ENV"] = venv
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", agent_env.get("PATH", os.defpath))])
        env.pop("PYTHONHOME", None)
    if spec.copy_path:
        here = spec.working_dir or os.getcwd()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH", "")]))


def resolve_program(program: str, env: Mapping[str, str], agent_env: Mapping[str, str]) -> str:
    """An absolute path for `program` (found on the PATH of `env`, else the agent's), or
    FileNotFoundError as execve would give it."""
    if "/" in program:
        return program
    path = env.get("PATH", agent_env.get("PATH", os.defpath))
    found = which(program, path)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return found


def worker_ids(spec: WatcherSpec) -> tuple[int | None, int | None]:
    """The (uid, gid) a worker runs as; None keeps the agent's own.

    Both must exist on this host, given by name or by number: a uid without a
    passwd entry would run with no home, no name in `ps` and, when the number is
    a typo, as some other account's files' owner. A user's primary group is the
    default gid.
    """
    uid: int | None = None
    gid: int | None = None
    if spec.uid:
        entry = _user(spec.uid)
        uid, gid = entry.pw_uid, entry.pw_gid
    if spec.gid:
        gid = _group(spec.gid).gr_gid
    return uid, gid


def _user(uid: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(uid)) if uid.isdigit() else pwd.getpwnam(uid)
    except KeyError:
        what = f"user id {uid} (no passwd entry)" if uid.isdigit() else f"user {uid!r}"
        raise SpawnError(f"spawn error: unknown {what}") from None
    except OverflowError:
        raise SpawnError(f"spawn error: user id {uid} is out of range") from None


def _group(gid: str) -> grp.struct_group:
    try:
        return grp.getgrgid(int(gid)) if gid.isdigit() else grp.getgrnam(gid)
    except KeyError:
        what = f"group id {gid} (no group entry)" if gid.isdigit() else f"group {gid!r}"
        raise SpawnError(f"spawn error: unknown {what}") from None
    except OverflowError:
        raise SpawnError(f"spawn error: group id {gid} is out of range") from None


@dataclass(frozen=True)
class PipeEnd:
    """The read end of one output pipe of a worker."""

    fd: int
    """The agent's fd for it."""
    child_fd: int
    """The fd number of the worker's own copy (equal to `fd` when this agent spawned it)."""
    inode: int
    """The pipe's inode: proves that a copy taken back from the worker is this pipe."""

    def record(self) -> PipeRecord:
        return PipeRecord(self.child_fd, self.inode, self.fd)


@dataclass(eq=False)
class Proc:
    """One worker process (a slot may see several over its life)."""

    watcher: str
    wid: int
    pid: int
    started_at: float
    """Unix time of the spawn."""
    started_mono: float
    generation: int
    """The watcher's process generation it was spawned for (replacement bookkeeping)."""
    deadline: float = 0.0
    """Monotonic time when max_age recycles it; 0: never."""
    ready_at: float = 0.0
    """Monotonic time its warmup_delay is over (0: none); it is STARTING until then."""
    settled_at: float = 0.0
    """Monotonic time its startsecs are over (0: none): it is STARTING until then, and
    an exit before is a start that failed."""
    exited: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """Resolved with the raw wait status when it exits; None when the status cannot be
    known (an adopted worker is not the agent's child, see `child`)."""
    start_ticks: int = 0
    """When the kernel started it, in clock ticks since boot (with the pid, its identity)."""
    spec: WatcherSpec | None = None
    """The spec it was started with (its stop signal and grace period)."""
    uid: int | None = None
    """The user it runs as (None: the agent's); exec health checks run as it too."""
    gid: int | None = None
    stopping_children: tuple[tuple[int, int], ...] = ()
    """(pid, start ticks) of the descendants outside the group that got the stop signal
    (stop_children): the stop waits for them too (after a restart of the agent as
    well), and the agent's orphan sweep leaves them to it."""
    out: PipeEnd | None = None
    """Its stdout pipe (None: not captured, e.g. adopted without it)."""
    err: PipeEnd | None = None
    child: bool = True
    """A child of this agent (its exit is reaped); False: adopted after an agent crash,
    its exit is seen through a pidfd and its exit status is usually unknown."""
    version_key: tuple[Any, ...] | None = None
    """The Version.key it was started for (None: not known)."""
    stop_deadline: float = 0.0
    """While a stop is in progress: the monotonic time it gets SIGKILL (0: not signalled)."""
    stop_reason: int = 0
    """While a stop is in progress: the ExitReason it is stopped for."""
    stop_note: str = ""
    own_group: bool = True
    """False when it exited while no agent ran and another process has its pid now: its
    process group (the pid's) is not its own any more, never to be signalled."""

    def alive(self) -> bool:
        return not self.exited.done()

    def record(
        self, stopping: bool, restarts: int = 0, spawned: int = 0, replacements: int = 0
    ) -> WorkerRecord:
        """What a later agent needs to adopt it (see records.py); `stopping`: a stop of it
        is in progress; `restarts`, `spawned` and `replacements` are its slot's."""
        key = self.version_key
        return WorkerRecord(
            watcher=self.watcher,
            wid=self.wid,
            pid=self.pid,
            start_ticks=self.start_ticks,
            started_at=self.started_at,
            started_mono=self.started_mono,
            restarts=restarts,
            replacements=replacements,
            spawned=spawned,
            version=version_label(key[2], key[0]) if key else "",
            version_key=key,
            deadline=self.deadline,
            out=self.out.record() if self.out else None,
            err=self.err.record() if self.err else None,
            uid=self.uid,
            gid=self.gid,
            stopping=StopRecord(
                self.stop_reason, self.stop_deadline, self.stop_note, self.stopping_children
            )
            if stopping
            else None,
        )

    @classmethod
    def from_record(
        cls,
        record: WorkerRecord,
        *,
        generation: int,
        out: PipeEnd | None,
        err: PipeEnd | None,
        child: bool,
        spec: WatcherSpec | None = None,
        gone: bool = False,
    ) -> Proc:
        """A worker that a previous agent (or image of this one) started and recorded,
        with the stop in progress it records (if any). `gone`: it exited meanwhile (its
        exit status is not known), and only its stop may still have something to do."""
        stop = record.stopping
        proc = cls(
            watcher=record.watcher,
            wid=record.wid,
            pid=record.pid,
            started_at=record.started_at,
            started_mono=record.started_mono,
            generation=generation,
            deadline=record.deadline,
            start_ticks=record.start_ticks,
            spec=spec,
            uid=record.uid,
            gid=record.gid,
            out=out,
            err=err,
            child=child,
            version_key=record.version_key,
        )
        if stop is not None:
            proc.stop_reason, proc.stop_deadline, proc.stop_note = (
                stop.reason,
                stop.deadline,
                stop.note,
            )
            proc.stopping_children = stop.children
        if gone:
            proc.exited.set_result(None)
            # Its group is still its own unless another process took its pid (the
            # kernel reuses no pid that a live group is named after).
            now = read_stat(record.pid)
            proc.own_group = now is None or now.start_ticks == record.start_ticks
        return proc


def start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None when it is gone.

    Read from /proc/PID/stat: unlike a wall-clock start time (boot time + ticks),
    it never moves when the system clock is adjusted, so a pid and its start
    ticks name one process across agent restarts.
    """
    found = read_stat(pid)
    return None if found is None else found.start_ticks


def spawn(
    launch: Launch,
    spec: WatcherSpec,
    wid: int,
    generation: int,
    clock: Clock = SYSTEM,
    stdin: int | None = None,
) -> Proc:
    """Start one worker in its own session, and so its own process group (its pid);
    raises SpawnError with the OS error.

    `stdin` is an fd of the agent (its stdin_socket) that becomes the worker's fd 0.

    A session of its own, as Circus gives its workers: with the kernel's autogroup
    scheduling (on by default in Debian and Ubuntu) each session is one group for the
    CPU scheduler, so N workers of a busy host get N shares of the CPU, as they would
    under Circus, rather than one share for all of them."""
    uid, gid = worker_ids(spec)
    head = 3 if launch.through_bash else 0  # bash, -c, script: setpriv is exec'd by it
    argv = [*launch.argv[:head], *as_user(launch.argv[head:], uid, gid)]
    pipes: list[tuple[int, int] | None] = []  # (read end, write end) of stdout, stderr
    try:
        for closed in (spec.close_child_stdout, spec.close_child_stderr):
            pipes.append(None if closed else _output_pipe())
    except OSError as exc:
        _close_ends(pipes, 0)
        _close_ends(pipes, 1)
        raise SpawnError(f"spawn error: output pipe: {exc}") from None
    out, err = pipes
    reads = tuple(pipe[0] for pipe in pipes if pipe is not None)
    try:
        with unblocked_for_child():  # the agent holds HUP/TERM/INT: the worker must not
            popen = subprocess.Popen(  # no user/group/extra_groups: see the module docstring
                argv,
                env=launch.env,
                cwd=spec.working_dir or None,
                stdin=stdin if stdin is not None else _closed_or_inherited(spec),
                stdout=subprocess.DEVNULL if out is None else out[1],
                stderr=subprocess.DEVNULL if err is None else err[1],
                pass_fds=(*launch.pass_fds, *reads),
                start_new_session=True,
                umask=spec.umask,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        _close_ends(pipes, 0)
        raise SpawnError(f"spawn error: {exc}") from None
    finally:
        _close_ends(pipes, 1)
    # The agent's reaper owns this pid from now on: Popen must never wait for it (a
    # Popen collected with no returncode queues its pid for a waitpid of its own).
    popen.returncode = 0
    ticks = start_ticks(popen.pid) or 0
    return Proc(
        watcher=spec.name,
        wid=wid,
        pid=popen.pid,
        started_at=clock.time(),
        started_mono=clock.monotonic(),
        generation=generation,
        start_ticks=ticks,
        spec=spec,
        uid=uid,
        gid=gid,
        out=None if out is None else _pipe_end(out[0]),
        err=None if err is None else _pipe_end(err[0]),
    )


def _close_ends(pipes: list[tuple[int, int] | None], end: int) -> None:
    """Close one end (0: read, 1: write) of each output pipe made."""
    for pipe in pipes:
        if pipe is not None:
            os.close(pipe[end])


def _closed_or_inherited(spec: WatcherSpec) -> int | None:
    """/dev/null (close_child_stdin) or None (the agent's own stdin)."""
    return subprocess.DEVNULL if spec.close_child_stdin else None


def _output_pipe() -> tuple[int, int]:
    """(read end at an fd >= FD_FLOOR, write end), both close-on-exec in the agent.

    The high number keeps the read end clear of the fds 3, 4, ... that the bash step
    gives inherited sockets in the worker, where the worker keeps its copy of it.
    """
    read_end, write_end = os.pipe()
    try:
        high = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    except OSError:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    if os.geteuid() == 0:  # unprivileged users have a budget of pipe pages: keep the default
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
    return high, write_end


def _pipe_end(fd: int) -> PipeEnd:
    return PipeEnd(fd=fd, child_fd=fd, inode=os.fstat(fd).st_ino)


def signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_all(procs: tuple[tuple[int, int], ...], signum: int) -> None:
    for pid, ticks in procs:
        signal_if_same(pid, ticks, signum)


KILL_WAIT = 5.0
"""Seconds a stop waits for the group to be gone after SIGKILL, before it gives up."""


async def stop_process(
    proc: Proc,
    signum: int,
    graceful_timeout: float,
    children: bool,
    *,
    resume: bool = False,
    send: bool = True,
    clock: Clock = SYSTEM,
    recorded: Callable[[], Awaitable[None]] | None = None,
) -> bool:
    """Stop signal to the group, SIGKILL after graceful_timeout; True if it had to SIGKILL.

    With `resume` the stop signal was sent before the agent restarted: only wait for
    the exit until `proc.stop_deadline`, then SIGKILL. Without `send` (a before_signal
    hook refused it) the stop signal is not sent: SIGKILL comes at the deadline. Either
    way the descendants
    outside the group that got the stop signal (`proc.stopping_children`) are waited
    for and killed with it. Returns once the worker has exited and no member of its
    group is left. The deadlines are `clock`'s. `recorded` returns once the stop's
    deadline and children are saved, before the signal: a worker that exits on it hands
    its children to init, and a new agent after a kill -9 could no longer find them.
    """
    pgid = proc.pid if proc.own_group else 0
    if not resume:
        extra = tuple(descendants_outside_group(proc.pid)) if children and pgid else ()
        proc.stopping_children = extra
        proc.stop_deadline = clock.monotonic() + graceful_timeout
        if recorded is not None:
            await recorded()
        if send and (proc.alive() or (pgid and group_alive(pgid))):
            if pgid:
                signal_group(pgid, signum)
            _signal_all(extra, signum)
    extra = proc.stopping_children
    killed = False
    if not await _wait_gone(proc, pgid, extra, proc.stop_deadline, clock):
        killed = True
        if pgid:
            signal_group(pgid, signal.SIGKILL)
        _signal_all(extra, signal.SIGKILL)
        await _wait_gone(proc, pgid, extra, clock.monotonic() + KILL_WAIT, clock)
    return killed


async def _wait_gone(
    proc: Proc, pgid: int, extra: tuple[tuple[int, int], ...], deadline: float, clock: Clock
) -> bool:
    """Wait for the leader's exit (event) then for the rest of the group (`pgid`; 0: not
    its own any more) and `extra` (short polls, on real time: they are no rule); False
    once `clock` reaches `deadline` first."""
    if not proc.exited.done() and clock.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            async with clock.timeout_at(deadline):
                await asyncio.shield(proc.exited)
    delay = 0.002
    group_left = group_alive if proc.child else live_group_member
    while True:
        alive = any(alive_as(pid, ticks) for pid, ticks in extra)
        if proc.exited.done() and not (pgid and group_left(pgid)) and not alive:
            return True
        if clock.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
