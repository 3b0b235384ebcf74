"""Hosts as Linux network namespaces on one bridge, for tests across real hosts.

A `Network` owns a "switch" namespace holding a bridge, and one namespace per
node (the controller, each agent host). A veth pair joins each node to the
switch; the node's end is `eth0` with an address from 198.18.0.0/15, a range
set aside for benchmarking networks and never routed. Nothing is added to the
machine's own namespace: the test reaches a node by opening sockets inside the
node's namespace (`connect`, `Relay`) and runs programs there with
`ip netns exec`.

Every name carries the test process's pid and a random suffix, so concurrent
runs never meet. `close` kills every process still inside the namespaces and
then deletes them; a fixture finalizer calls it, and `atexit` is the backstop.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import reap

NETNS_DIR = Path("/run/netns")
SUBNET = "198.18.0.0/24"
PREFIX_LEN = 24
CLONE_NEWNET = 0x40000000


class NetnsError(Exception):
    """An `ip` command failed; the message is its stderr."""


def ip(*args: str) -> str:
    """Run `ip ARGS` and return its stdout; raise NetnsError with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


@functools.cache
def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (the fleet tests run as root in CI)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"stkprobe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", "name", "br0", "type", "bridge")
    except NetnsError as exc:
        return f"cannot create a network namespace with a bridge: {exc}"
    finally:
        with contextlib.suppress(NetnsError):
            ip("netns", "del", probe)
    return None


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the block with this thread in namespace `netns`.

    A socket keeps the namespace it was created in, so a socket made in the
    block talks on that namespace's network for the rest of its life. Only the
    calling thread moves; it always comes back.
    """
    with open(NETNS_DIR / netns) as target, open("/proc/thread-self/ns/net") as home:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def connect(netns: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to host:port made from inside namespace `netns`."""
    with inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def namespace_of(pid: int) -> int:
    """The inode of the network namespace process `pid` is in."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


@dataclass(frozen=True)
class Node:
    """One host of the test network: a namespace with `eth0` on the switch."""

    name: str
    """Short name, unique in its Network ("controller", "h1")."""
    netns: str
    """The namespace's name (what `ip netns` lists)."""
    address: str
    """Its IPv4 address on the switch."""

    def argv(self, command: Sequence[str]) -> list[str]:
        """`command` run inside this node's namespace (ip execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *command]

    @property
    def inode(self) -> int:
        """The inode of the node's namespace, to compare with `namespace_of(pid)`."""
        return os.stat(NETNS_DIR / self.netns).st_ino

    def pids(self) -> set[int]:
        """Every live process inside the node's namespace."""
        return {int(word) for word in ip("netns", "pids", self.netns).split()}

    def link(self, up: bool) -> None:
        """Plug (True) or unplug (False) the node's cable: `ip link set eth0 up|down`."""
        ip("-n", self.netns, "link", "set", "eth0", "up" if up else "down")


@dataclass
class Network:
    """A switch namespace with a bridge, and nodes plugged into it."""

    run_id: str = field(default_factory=lambda: f"stk{os.getpid()}-{uuid.uuid4().hex[:6]}")
    nodes: dict[str, Node] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _closed: bool = False

    def __post_init__(self) -> None:
        atexit.register(self.close)
        self.switch = self._namespace("switch")
        ip("-n", self.switch, "link", "add", "name", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def _namespace(self, name: str) -> str:
        netns = f"{self.run_id}-{name}"
        ip("netns", "add", netns)
        self._namespaces.append(netns)
        ip("-n", netns, "link", "set", "lo", "up")
        return netns

    def add(self, name: str, address: str) -> Node:
        """A new node `name` with `address` on the switch (lo and eth0 up)."""
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        netns = self._namespace(name)
        port = f"p-{name}"[:15]
        ip("-n", self.switch, "link", "add", "name", port, "type", "veth",
           "peer", "name", "eth0", "netns", netns)  # fmt: skip
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", netns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        node = Node(name, netns, address)
        self.nodes[name] = node
        return node

    def close(self) -> None:
        """Kill every process inside the namespaces, then delete them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        nodes = [Node(ns, ns, "") for ns in self._namespaces]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = set().union(*(_pids_or_none(node) for node in nodes))
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            reap()
            time.sleep(0.05)
        reap()
        errors = []
        for netns in reversed(self._namespaces):
            try:
                ip("netns", "del", netns)
            except NetnsError as exc:
                errors.append(str(exc))
        if errors:
            raise NetnsError("; ".join(errors))


def _pids_or_none(node: Node) -> set[int]:
    try:
        return node.pids()
    except NetnsError:
        return set()


class Relay:
    """A unix socket here whose connections go on to host:port inside namespace `netns`.

    Lets a gRPC channel of the test process reach a daemon on the test network
    (`grpc.insecure_channel(relay.target)`) without giving the machine's own
    namespace an address on it. Abstract unix sockets live in the namespace
    that bound them, so the name cannot clash with another run's.
    """

    def __init__(self, netns: str, host: str, port: int) -> None:
        self.netns, self.host, self.port = netns, host, port
        self.name = f"stack-relay-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind("\0" + self.name)
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._accepter = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._accepter.start()

    @property
    def target(self) -> str:
        """The gRPC target for this relay."""
        return f"unix-abstract:{self.name}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = connect(self.netns, self.host, self.port)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        self._stopped.set()
        self._accepter.join(5)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()
