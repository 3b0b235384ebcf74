"""Re-executing the agent in place (SIGHUP): check the new program, then exec it.

Like systemd's daemon-reexec and HAProxy's master, the agent runs its own command line
again in the same process. The pid stays the same, so every worker stays its child
(and it stays their subreaper), and the fds it keeps open pass through: the listening
sockets and the read ends of the workers' output pipes. Everything else goes in a
handover (handover.py), written to a memfd whose fd number the new image finds in
$STACK_AGENT_HANDOVER.

Before anything is stopped, the new program must prove it can start: the same command
line with `--check` appended (a newly installed version, the flags file as it is now)
imports everything the agent uses, parses its flags, loads its TLS files and prints
what it found. If that fails, or names another host id or data dir, or cannot read
this handover's format, the agent says why in one line, raises a `reload_failed`
event and carries on as it is. The check is spawned without fork handlers (no
preexec_fn, no user change: Popen's vfork path) and reaped by the agent's reaper.

Signals that would change the agent's course (HUP, TERM, INT) are read from a signalfd
(control_signals.py). From the moment the agent commits to the exec it reads none:
a second HUP or a TERM sent meanwhile stays pending across the exec and the new image
reads it, instead of being lost or killing the agent with the default action.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from stack.agent.handover import FORMAT, READS, Handover, from_bytes, to_bytes
from stack.agent.helpers import HelperError, run_helper
from stack.agent.reaper import Reaper, describe

HANDOVER_ENV = "STACK_AGENT_HANDOVER"
CHECK_FLAG = "--check"
CHECK_TIMEOUT = 60.0
"""Seconds the new program's check may take (importing on a loaded host is slow)."""


class ReexecError(Exception):
    """The new program cannot take over; str() is the one-line reason."""


@dataclass(frozen=True)
class Program:
    """What to execute: the program file and its argv (argv[0] included)."""

    path: str
    argv: list[str]


def this_program(orig_argv: list[str] | None = None, executable: str = "") -> Program:
    """The command line that started this agent, to run again.

    `stack-agent ...` (a script with a #! line) is run again as a script, so that a newly
    installed one may name another interpreter; `python -m stack.agent.main ...` and
    the like again with this interpreter.
    """
    argv = list(sys.orig_argv if orig_argv is None else orig_argv)
    executable = executable or sys.executable
    if len(argv) >= 2 and not argv[1].startswith("-") and _is_script(argv[1]):
        return Program(argv[1], argv[1:])
    return Program(executable, [executable, *argv[1:]])


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!" and os.access(path, os.X_OK)
    except OSError:
        return False


@dataclass(frozen=True)
class CheckReport:
    """What the new program's `--check` printed."""

    version: str
    host_id: str
    data_dir: str
    formats: tuple[int, ...]
    """Handover formats it reads."""


def check_report(host_id: str, data_dir: Path) -> str:
    """The line `--check` prints (the new program's side)."""
    import stack

    return json.dumps(
        {
            "version": stack.__version__,
            "host_id": host_id,
            "data_dir": str(data_dir.resolve()),
            "handover_formats": list(READS),
        }
    )


async def check(program: Program, reaper: Reaper, host_id: str, data_dir: Path) -> CheckReport:
    """Run the new program with --check; ReexecError says why it cannot take over."""
    env = dict(os.environ)
    env.pop(HANDOVER_ENV, None)
    argv = [*program.argv, CHECK_FLAG]
    try:
        output, status = await run_helper(
            argv, reaper, CHECK_TIMEOUT, executable=program.path, env=env,
            what=f"the check of {program.path}",
        )  # fmt: skip
    except HelperError as exc:
        raise ReexecError(str(exc)) from None
    return _verdict(output.decode("utf-8", "replace"), status, host_id, data_dir)


def _verdict(output: str, status: int, host_id: str, data_dir: Path) -> CheckReport:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    code, sig = describe(status)
    if code or sig:
        how = f"killed by signal {sig}" if sig else f"exit code {code}"
        said = f": {lines[-1]}" if lines else ""
        raise ReexecError(f"the new program failed its check ({how}){said}")
    try:
        doc: Any = json.loads(lines[-1]) if lines else None
        report = CheckReport(
            version=str(doc["version"]),
            host_id=str(doc["host_id"]),
            data_dir=str(doc["data_dir"]),
            formats=tuple(int(f) for f in doc["handover_formats"]),
        )
    except (ValueError, TypeError, KeyError, IndexError):
        shown = lines[-1][:200] if lines else "nothing"
        raise ReexecError(f"the new program's check printed {shown!r}, not its report") from None
    if report.host_id != host_id:
        raise ReexecError(
            f"the new flags change the host id from {host_id} to {report.host_id}: "
            "a host id cannot change in place (restart the agent)"
        )
    if report.data_dir != str(data_dir.resolve()):
        raise ReexecError(
            f"the new flags change the data dir to {report.data_dir}: "
            "it cannot change in place (restart the agent)"
        )
    if FORMAT not in report.formats:
        raise ReexecError(
            f"version {report.version} cannot read this agent's handover (format {FORMAT})"
        )
    return report


def exec_into(program: Program, handover: Handover, keep: list[int]) -> NoReturn:
    """Exec `program` with `handover` and the fds `keep` passed on; OSError when the exec
    itself fails (everything is then as it was, this image may carry on)."""
    memfd = os.memfd_create("stack-agent-handover", 0)  # no MFD_CLOEXEC: it passes on
    try:
        data = to_bytes(handover)
        view = memoryview(data)
        while view:
            view = view[os.write(memfd, view) :]
        os.lseek(memfd, 0, os.SEEK_SET)
        env = dict(os.environ)
        env[HANDOVER_ENV] = str(memfd)
        if handover.notify_socket:
            env["NOTIFY_SOCKET"] = handover.notify_socket
        for fd in keep:
            os.set_inheritable(fd, True)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(program.path, program.argv, env)
    except OSError:
        for fd in keep:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        os.close(memfd)
        raise
    raise AssertionError("unreachable: execve returned")  # pragma: no cover


def take_handover() -> Handover | None:
    """The handover of the previous image, if this one was started by `exec_into`.

    Raises ReexecError when it is named but cannot be read.
    """
    value = os.environ.pop(HANDOVER_ENV, None)
    if value is None:
        return None
    try:
        fd = int(value)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        os.close(fd)
    except (ValueError, OSError) as exc:
        raise ReexecError(f"cannot read the handover at ${HANDOVER_ENV}={value}: {exc}") from None
    try:
        return from_bytes(b"".join(chunks))
    except ValueError as exc:
        raise ReexecError(str(exc)) from None


def kept_fds(handover: Handover) -> list[int]:
    """The fds named in `handover` that must survive the exec."""
    fds = [s.fd for s in handover.records.sockets if s.fd >= 0]
    for worker in handover.records.workers:
        for pipe in (worker.out, worker.err):
            if pipe is not None and pipe.fd >= 0:
                fds.append(pipe.fd)
    return fds
