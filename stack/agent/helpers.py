"""Short-lived helper programs the agent runs as its children, and reads the output of.

The agent is the subreaper and reaper of everything it starts (reaper.py): a helper
must be watched by the reaper before the next turn of the event loop, or its exit is
reaped unnoticed and an orphan sweep kills it. Its output is read from the event
loop, so the agent keeps respawning workers meanwhile. Two helpers use this: a new
program's `--check` before a reload (reexec.py) and the TLS checks (tls_check.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from stack.agent.control_signals import unblocked_for_child
from stack.agent.reaper import Reaper


class HelperError(Exception):
    """The helper could not be run, or did not finish in time; str() is one line."""


async def run_helper(
    argv: Sequence[str],
    reaper: Reaper,
    timeout: float,
    *,
    executable: str | None = None,
    env: Mapping[str, str] | None = None,
    what: str = "",
) -> tuple[bytes, int]:
    """(its stdout and stderr, its wait status); HelperError past `timeout` (the helper's
    group is killed) or when it cannot be started. `what` names it in the timeout's
    message (default: the program)."""
    program = executable or argv[0]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    try:
        with unblocked_for_child():
            popen = subprocess.Popen(
                list(argv),
                executable=executable,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
            )
    except OSError as exc:
        raise HelperError(f"cannot run {program}: {exc.strerror}") from None

    def exited(status: int) -> None:
        popen.returncode = 0  # the reaper waited for it: Popen must not
        if not done.done():
            done.set_result(status)

    reaper.watch(popen.pid, exited)
    assert popen.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            output = await read_all(popen.stdout.fileno())
            status = await asyncio.shield(done)
    except TimeoutError:
        raise HelperError(f"{what or program} took over {timeout:g}s") from None
    finally:
        if not done.done():
            with contextlib.suppress(OSError):
                os.killpg(popen.pid, signal.SIGKILL)
        popen.stdout.close()
    return output, status


async def read_all(fd: int, keep: int = 64 * 1024) -> bytes:
    """What a pipe gives until EOF (its last `keep` bytes), read from the event loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    got = bytearray()
    eof: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            got.extend(data)
            del got[:-keep]
        elif not eof.done():
            eof.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await eof
    finally:
        loop.remove_reader(fd)
    return bytes(got)
