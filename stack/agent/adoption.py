"""What a new agent needs to take over the workers a crashed agent left running.

A worker outlives its agent (`kill -9`, OOM, a crash): it keeps its pid, its group, its
listening sockets and its output pipes, of which it holds a copy of the read ends (see
process.py). A new agent with the same data dir reads the worker records its
predecessor kept and, for each:

- proves the process is the one recorded: same pid AND same start time in clock ticks
  since boot, on the same boot (a pid alone may have been reused). Anything else is
  not ours and is left alone;
- opens a pidfd on it, which is readable once it exits: it is not the new agent's
  child, so no SIGCHLD comes (the exit status is known only if the new agent reads it
  from /proc while the process is still a zombie);
- takes back the read ends of its stdout/stderr pipes, and the listening sockets it
  inherited, with pidfd_getfd(2) (Linux >= 5.6; needs the ptrace "attach" right over
  the worker, which root has). Each fd taken is checked against the inode recorded
  when it was made, so a worker that closed or reused the fd number cannot hand over
  something else; when the number does not match, the worker's fds are searched
  for the inode.

A worker's descendants that left its process group (a `setsid` grandchild) are known
by (pid, start ticks) too: those a graceful stop gave the stop signal (stop_children),
for the stop to go on after a restart of the agent, and those of an adopted worker,
which become orphans of init, not of the agent, when that worker exits.

These are thin wrappers over the kernel interfaces, with no decisions: the engine
decides what to adopt.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import fcntl
import functools
import glob
import os
import signal
import stat
from dataclasses import dataclass

SYS_PIDFD_GETFD = 438
"""The syscall number of pidfd_getfd(2), the same on every Linux architecture."""
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class ProcessStat:
    """The fields of /proc/PID/stat that identify a process and tell how it ended."""

    state: str
    """R, S, D, Z (zombie), ..."""
    ppid: int
    pgrp: int
    start_ticks: int
    exit_status: int
    """The raw wait status once it is a zombie (0 before it exits)."""
    cpu_ticks: int = 0
    """User and system time so far, in clock ticks."""
    rss_pages: int = 0
    """Resident set size, in pages."""


def read_stat(pid: int) -> ProcessStat | None:
    """/proc/PID/stat, or None when no such process exists (any more)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state; ppid 4, pgrp 5, utime 14, stime 15,
    # starttime 22, rss 24, exit_code 52.
    exit_status = int(fields[49]) if len(fields) > 49 else 0
    return ProcessStat(
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        start_ticks=int(fields[19]),
        exit_status=exit_status,
        cpu_ticks=int(fields[11]) + int(fields[12]),
        rss_pages=int(fields[21]),
    )


@functools.cache
def boot_id() -> str:
    """This boot's random id: start ticks recorded on another boot prove nothing."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class Fate(enum.Enum):
    CHILD = "child"
    """Our own child (the agent re-executed itself): the reaper gets its exit status."""
    ADOPTED = "adopted"
    """Alive, not our child: watched and taken over through a pidfd."""
    GONE = "gone"
    """Exited (or the pid is someone else's now): not ours to touch."""


@dataclass(frozen=True)
class Identified:
    fate: Fate
    pidfd: int | None = None
    """For ADOPTED: a pidfd on exactly the recorded process."""
    status: int | None = None
    """For GONE: its wait status when it could still be read."""


def identify(pid: int, start_ticks: int) -> Identified:
    """What became of the process recorded as (`pid`, `start_ticks`) on this boot."""
    found = read_stat(pid)
    if found is None or found.start_ticks != start_ticks:
        return Identified(Fate.GONE)
    if found.ppid == os.getpid():
        return Identified(Fate.CHILD)
    if found.state == "Z":
        return Identified(Fate.GONE, status=found.exit_status)
    pidfd = pidfd_open(pid)
    if pidfd is None:
        return Identified(Fate.GONE)
    # The pid may have been reused between the two looks: the pidfd names what runs
    # under the pid now, which must still be the recorded process.
    again = read_stat(pid)
    if again is None or again.start_ticks != start_ticks or again.state == "Z":
        os.close(pidfd)
        status = again.exit_status if again and again.start_ticks == start_ticks else None
        return Identified(Fate.GONE, status=status)
    return Identified(Fate.ADOPTED, pidfd=pidfd)


def pidfd_open(pid: int) -> int | None:
    """A pidfd on `pid` (close-on-exec), or None when it is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A copy of fd `target_fd` of the process behind `pidfd`, close-on-exec; OSError else."""
    result = _libc.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(result)


def exit_status(pid: int, start_ticks: int) -> int | None:
    """The wait status of `pid` if it is still an unreaped zombie of that start time."""
    found = read_stat(pid)
    if found is None or found.start_ticks != start_ticks or found.state != "Z":
        return None
    return found.exit_status


def children_of(pid: int | None = None) -> list[int]:
    """Pids of the children of `pid` (None: this process), from /proc/PID/task/*/children
    (no scan of /proc); [] when it is gone."""
    paths = glob.glob(f"/proc/{'self' if pid is None else pid}/task/*/children")
    if not paths:  # a kernel without CONFIG_PROC_CHILDREN, or no such process
        if pid is not None and not os.path.exists(f"/proc/{pid}"):
            return []
        import psutil  # only on such a kernel: the agent does without it

        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(pid).children()]
        return []
    found: list[int] = []
    for path in paths:
        with contextlib.suppress(OSError), open(path) as file:
            found.extend(int(word) for word in file.read().split())
    return found


def descendants_outside_group(pid: int) -> list[tuple[int, int]]:
    """(pid, start ticks) of the live descendants of `pid` that left its process group
    (`pid` leads it), walking /proc/PID/task/*/children down from `pid`."""
    found: list[tuple[int, int]] = []
    todo, seen = [pid], {pid}
    while todo:
        for child in children_of(todo.pop()):
            if child in seen:
                continue
            seen.add(child)
            todo.append(child)
            info = read_stat(child)
            if info is not None and info.pgrp != pid and info.state != "Z":
                found.append((child, info.start_ticks))
    return found


def alive_as(pid: int, start_ticks: int) -> bool:
    """Whether the process (`pid`, `start_ticks`) still runs (a zombie does not)."""
    found = read_stat(pid)
    return found is not None and found.start_ticks == start_ticks and found.state != "Z"


def signal_if_same(pid: int, start_ticks: int, signum: int) -> bool:
    """Send `signum` to the process (`pid`, `start_ticks`) if it still runs: through a
    pidfd, so that a pid reused meanwhile is never signalled. True if it was sent."""
    pidfd = pidfd_open(pid)
    if pidfd is None:
        return False
    try:
        if not alive_as(pid, start_ticks):  # the pidfd names what runs under pid now
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)


def live_group_member(pgid: int) -> bool:
    """Whether any process of group `pgid` is alive (zombies do not count).

    For the group of an adopted worker: its exited members are some other process's
    zombies, which the agent cannot reap, so `killpg(pgid, 0)` would see them forever.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        found = read_stat(int(name))
        if found is not None and found.pgrp == pgid and found.state != "Z":
            return True
    return False


class Kind(enum.Enum):
    PIPE_READ_END = "pipe"
    SOCKET = "socket"


def regain(pidfd: int, pid: int, fd: int, inode: int, kind: Kind) -> int | None:
    """Take back from the worker the fd with this inode (tried at `fd` first); None if
    the worker holds it nowhere (it closed it, or cannot be inspected)."""
    if inode <= 0:
        return None
    if fd >= 0:
        found = _take(pidfd, fd, inode, kind)
        if found is not None:
            return found
    for other in _fds_with_inode(pid, inode, kind):
        if other != fd:
            found = _take(pidfd, other, inode, kind)
            if found is not None:
                return found
    return None


def _take(pidfd: int, fd: int, inode: int, kind: Kind) -> int | None:
    try:
        copy = pidfd_getfd(pidfd, fd)
    except OSError:
        return None
    if same_file(copy, inode, kind):
        return copy
    os.close(copy)
    return None


def same_file(fd: int, inode: int, kind: Kind) -> bool:
    """Whether our `fd` is that pipe's read end, or that socket."""
    try:
        info = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return False
    if info.st_ino != inode:
        return False
    if kind is Kind.SOCKET:
        return stat.S_ISSOCK(info.st_mode)
    return stat.S_ISFIFO(info.st_mode) and flags & os.O_ACCMODE == os.O_RDONLY


def _fds_with_inode(pid: int, inode: int, kind: Kind) -> list[int]:
    """The worker's fd numbers that name `kind:[inode]` (both ends, for a pipe)."""
    wanted = f"{kind.value}:[{inode}]"
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{name}") == wanted:
                    found.append(int(name))
    return found


def close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
