"""What runs, as the kernel says it: processes by network namespace, read from /proc.

The chaos checks never take Stack's word for what runs. A worker is a process in a
host's namespace whose environment names its watcher and worker id (`STACK_WATCHER`,
`STACK_WID`, set by the agent at spawn) and the version of the stack it was started for
(`CHAOS_VERSION`, from the stack file's env). Its identity is its pid with its start
time in clock ticks, so a pid the kernel gave again is never taken for the same worker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Proc:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    state: str
    """R, S, D, T (stopped), Z (zombie)..."""
    start: int
    """Start time in clock ticks since boot: with the pid, the process's identity."""
    comm: str
    watcher: str = ""
    wid: int = 0
    version: str = ""

    @property
    def ident(self) -> tuple[int, int]:
        return (self.pid, self.start)

    @property
    def worker(self) -> bool:
        return bool(self.watcher)


@dataclass(frozen=True)
class Snapshot:
    """Every process of the run's namespaces at one moment."""

    at: float
    """time.monotonic() when it was read."""
    by_node: Mapping[str, tuple[Proc, ...]] = field(default_factory=dict)

    def workers(self, host: str, watcher: str = "") -> list[Proc]:
        return [
            p for p in self.by_node.get(host, ())
            if p.worker and p.state != "Z" and (not watcher or p.watcher == watcher)
        ]  # fmt: skip

    def all_workers(self, hosts: Iterable[str]) -> list[tuple[str, Proc]]:
        return [(host, p) for host in hosts for p in self.workers(host)]


def _stat(pid: int) -> tuple[str, int, int, str] | None:
    """(state, ppid, start ticks, comm) of `pid`, or None once it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    comm_end = raw.rindex(b")")
    comm = raw[raw.index(b"(") + 1 : comm_end].decode(errors="replace")
    fields = raw[comm_end + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[19]), comm


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key in (b"STACK_WATCHER", b"STACK_WID", b"CHAOS_VERSION"):
            env[key.decode()] = value.decode(errors="replace")
    return env


def namespace_inode(pid: int) -> int | None:
    try:
        return os.stat(PROC / str(pid) / "ns" / "net").st_ino
    except OSError:
        return None


def snapshot(inodes: Mapping[int, str], at: float) -> Snapshot:
    """The processes of the namespaces `inodes` (namespace inode -> node name).

    A zombie has no namespace left to read; it is found through its parent, the agent
    that has not reaped it. (The workers a killed agent left are the harness's children
    meanwhile, and its reaper takes those.)"""
    found: dict[str, list[Proc]] = {name: [] for name in inodes.values()}
    zombies: list[tuple[int, tuple[str, int, int, str]]] = []
    node_of_pid: dict[int, str] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        inode = namespace_inode(pid)
        if inode is not None and inode not in inodes:
            continue  # most of the machine: not worth reading
        stat = _stat(pid)
        if stat is None:
            continue
        if inode is None:  # a zombie has no namespace left (or the process just ended)
            if stat[0] == "Z":
                zombies.append((pid, stat))
            continue
        node = inodes[inode]
        node_of_pid[pid] = node
        env = _environ(pid)
        wid = env.get("STACK_WID", "0")
        found[node].append(Proc(pid, stat[1], stat[0], stat[2], stat[3],
                                env.get("STACK_WATCHER", ""), int(wid) if wid.isdigit() else 0,
                                env.get("CHAOS_VERSION", "")))  # fmt: skip
    for pid, (state, ppid, start, comm) in zombies:
        parent = node_of_pid.get(ppid)
        if parent is not None:
            found.setdefault(parent, []).append(Proc(pid, ppid, state, start, comm))
    return Snapshot(at, {name: tuple(procs) for name, procs in found.items()})


def listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on `port` in the network namespace of `pid`."""
    wanted = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / str(pid) / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(wanted) and fields[3] == "0A":
                    return True
    return False


@dataclass(frozen=True)
class Usage:
    """What one daemon holds: resident memory, open fds, threads."""

    rss: int
    fds: int
    """Its open fds less those that serve a live process beside it (see `usage`)."""
    tasks: int
    fd_kinds: Mapping[str, int] = field(default_factory=dict)
    """The fds counted by kind ("file", "pipe", "socket", "pidfd", "anon"), to tell
    what grew."""


def _fd_kind(link: str) -> str:
    if link.startswith("/"):
        return "file"
    if link == "anon_inode:[pidfd]":
        return "pidfd"
    return link.split(":", 1)[0].split("_", 1)[0]


def _fd_links(pid: int) -> dict[str, str]:
    """fd number -> what it points at ("pipe:[123]", "socket:[45]", a path...)."""
    links = {}
    fd_dir = PROC / str(pid) / "fd"
    for name in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            links[name] = os.readlink(fd_dir / name)
    return links


def _pidfd_target(pid: int, fd: str) -> int:
    """The pid a pidfd refers to (0 if unknown or gone)."""
    with contextlib.suppress(OSError, ValueError):
        for line in (PROC / str(pid) / "fdinfo" / fd).read_text().splitlines():
            if line.startswith("Pid:"):
                return int(line.split()[1])
    return 0


def usage(
    pid: int, beside: Iterable[int] = (), files_beside: Mapping[str, int] | None = None
) -> Usage | None:
    """What daemon `pid` holds. Its fds are counted less those that serve a live process
    `beside` it (the other processes of its namespace: an agent's workers, adopted ones
    included): a pipe or socket that process holds too, a pidfd on it, and up to
    `files_beside[path]` fds open on each path (an agent's log files of the watchers
    that run there, and their directory). An agent's fds then stay level while its
    workers and watchers change; a leaked one (a pipe of a worker gone, a pidfd never
    closed, a log file rotated away and kept open) is still counted."""
    try:
        pages = int((PROC / str(pid) / "statm").read_text().split()[1])
        links = _fd_links(pid)
        tasks = len(os.listdir(PROC / str(pid) / "task"))
    except (OSError, ValueError, IndexError):
        return None
    peers = {other for other in beside if other != pid}
    shared: set[str] = set()
    for other in peers:
        with contextlib.suppress(OSError):
            links_there = _fd_links(other).values()
            shared.update(v for v in links_there if v.startswith(("pipe:", "socket:")))
    kinds: dict[str, int] = {}
    serving = dict(files_beside or {})
    for fd, link in links.items():
        if link in shared:
            continue
        if serving.get(link, 0) > 0:
            serving[link] -= 1
            continue
        if link == "anon_inode:[pidfd]" and _pidfd_target(pid, fd) in peers:
            continue
        kind = _fd_kind(link)
        kinds[kind] = kinds.get(kind, 0) + 1
    return Usage(pages * PAGE, sum(kinds.values()), tasks, kinds)
