"""Ports for tests, without the bind-close-reuse race.

The first choice is always the kernel's: a daemon or a stack socket binds port 0 and the
test reads back what it got (`listening_ports` of the process, or the `serving on`
line the controller prints). Only where a port must be known before anything binds it (an
etcd cluster names its members' URLs up front, a controller is restarted at the address
its agents were given, the demo prints the URL of its stack file) does a test reserve one.

A reservation is not "bind port 0, close, hope nobody takes it": the kernel hands out
ports of its ephemeral range (`ip_local_port_range`) to every outgoing connection on
the machine, so such a port is soon taken by anyone. A reserved port lies below that
range, where the kernel never picks one on its own; an exclusive lock on a file named
after it keeps other test processes (this run's and any other suite's on the machine) off
it for as long as the reservation is held; and a bind proves that nothing else uses it
at the moment it is taken.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

import psutil

LOCKS = Path(tempfile.gettempdir()) / "stack-test-ports"
SPAN = 10_000
"""How many ports below the ephemeral range reservations come from."""
AVOID = frozenset({8000, 8008, 8080, 8081, 8443, 8888, 9000, 9090, 7450})
"""Ports people's own programs often bind (the demo's 8080 among them)."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (where it picks ports on its own)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


class ReservedPort:
    """A TCP port on 127.0.0.1 held for this test until `close` (or the process's end)."""

    def __init__(self, port: int, lock: int) -> None:
        self.port = port
        self._lock: int | None = lock

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReservedPort({self.port})"


def reserve_port(host: str = "127.0.0.1") -> ReservedPort:
    """A port below the ephemeral range that no test holds and nothing binds now."""
    low, _ = ephemeral_range()
    first = max(1024, low - SPAN)
    LOCKS.mkdir(mode=0o700, exist_ok=True)
    candidates = [p for p in range(first, low) if p not in AVOID]
    for port in random.sample(candidates, min(500, len(candidates))):
        lock = os.open(LOCKS / str(port), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue
        if _unused(host, port):
            return ReservedPort(port, lock)
        os.close(lock)
    raise RuntimeError(f"no free port in {first}..{low - 1} after 500 tries")


def _unused(host: str, port: int) -> bool:
    """Nothing is bound to `port` (SO_REUSEADDR: a connection of the past in TIME_WAIT
    does not count, as it does not for the daemons, which all set it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (in its own network namespace)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return {
            conn.laddr.port
            for conn in psutil.Process(pid).net_connections("tcp")
            if conn.status == psutil.CONN_LISTEN
        }
    return set()
