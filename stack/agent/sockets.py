"""The sockets the agent binds once and lends to workers by file descriptor.

Binding in the agent (not in each worker) means a socket outlives every worker restart:
while no worker accepts, clients queue in the backlog instead of being refused. Each
bound fd is moved to a number >= FD_FLOOR so that the exec step in the child can put
the inherited sockets at 3, 4, ... without colliding with them.

A unix socket's `path` may lie under a directory that another user controls, who could
swap a directory for a symlink to make the root agent bind, replace (unlink) or, on
close, unlink something in a directory of theirs choosing. So its parent directory is
opened the way `safe_files` walks paths and held open while the socket lives; the
`replace` unlink and the final unlink happen relative to it, the final one only if the
name is still the socket inode the agent bound (device and inode compared). When the
path could be redirected between a check and the bind (a directory on the way is
writable by someone else), the bind itself goes through `/proc/self/fd/N/NAME`, the
held directory; workers then see that name from getsockname().

The pool holds one socket per binding (socket_binding: where it listens), not per
name. During a rolling change that moves a socket to another port, the workers not
yet replaced keep the old one and the new ones get the new one: both are bound, the
new one before any worker is replaced. A change that keeps the address (backlog,
blocking) is applied to the bound socket, which every worker keeps.

A socket also outlives the agent: across an exec of the agent its fd stays open, and
after a crash the new agent takes it back from a worker that inherited it (see
adoption.py). `restore` puts it back in the pool under its old serial, so that the
workers that hold it are not replaced for a "new" socket.

A watcher with `on_demand` starts no worker until one of its sockets gets a connection:
`on_connection` watches the socket for readability from the event loop without
accepting, so the first client stays queued for the worker that is then started.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stack.security.safe_files import UnsafeFile, unlink_if_same, walk_dir
from stack.spec.model import SocketSpec, socket_binding

log = logging.getLogger(__name__)

FD_FLOOR = 100
"""Agent-side socket fds are at least this number (children get them at 3, 4, ...)."""


class SocketBindError(Exception):
    """A socket could not be bound; the message says which and why."""


@dataclass(frozen=True)
class UnixPlace:
    """Where the agent bound a unix socket: its directory (held open), name and inode."""

    dir_fd: int
    name: str
    dev: int
    ino: int

    def remove(self) -> None:
        """Unlink the socket if its name is still the inode bound, and let go of the dir."""
        try:
            unlink_if_same(self.dir_fd, self.name, self.dev, self.ino)
        except OSError as exc:
            log.warning("cannot remove unix socket %s: %s", self.name, exc)
        finally:
            os.close(self.dir_fd)


@dataclass
class BoundSocket:
    spec: SocketSpec
    sock: socket.socket | None
    error: str = ""
    serial: int = 0
    """Distinguishes successive bindings of the same name (workers follow a re-bind)."""
    place: UnixPlace | None = None
    """A unix socket's file, removed when the socket is closed."""

    @property
    def fd(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    @property
    def address(self) -> str:
        if self.spec.path:
            return self.spec.path
        if self.sock is None:
            return f"{self.spec.host}:{self.spec.port}"
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(spec: SocketSpec) -> socket.AddressFamily:
    if spec.path:
        return socket.AF_UNIX
    name = spec.family or "AF_INET"
    if name == "AF_INET" and ":" in spec.host:
        return socket.AF_INET6
    return socket.AddressFamily[name]


def bind(spec: SocketSpec) -> tuple[socket.socket, UnixPlace | None]:
    """Bind and listen on one SocketSpec; raises SocketBindError with a one-line reason."""
    try:
        family = _family(spec)
        kind = socket.SocketKind[spec.type or "SOCK_STREAM"]
    except KeyError as exc:
        raise SocketBindError(f"socket {spec.name}: unknown family or type {exc}") from None
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise SocketBindError(f"socket {spec.name}: {exc}") from None
    place = None
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.so_reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((spec.host, spec.port))
        else:
            place = _bind_unix(sock, spec)
        if kind == socket.SOCK_STREAM:
            sock.listen(spec.backlog or 2048)
        sock.setblocking(spec.blocking)
        return _move_high(sock), place
    except OSError as exc:
        sock.close()
        if place is not None:
            place.remove()
        where = spec.path or f"{spec.host}:{spec.port}"
        reason = str(exc) if isinstance(exc, UnsafeFile) else exc.strerror
        raise SocketBindError(f"socket {spec.name}: cannot bind {where}: {reason}") from None


def _move_high(sock: socket.socket) -> socket.socket:
    """The same socket at an fd >= FD_FLOOR (close-on-exec); `sock` is closed."""
    try:
        moved = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    finally:
        sock.close()
    return socket.socket(fileno=moved)


def _bind_unix(sock: socket.socket, spec: SocketSpec) -> UnixPlace:
    parent, name = os.path.split(os.path.abspath(spec.path))
    if not name:
        raise OSError(errno.EISDIR, "path names a directory")
    dir_fd, stable = walk_dir(parent)
    try:
        if spec.replace:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=dir_fd)
        address = os.path.join(parent, name) if stable else f"/proc/self/fd/{dir_fd}/{name}"
        old = os.umask(spec.umask) if spec.umask >= 0 else None
        try:
            sock.bind(address)
        finally:
            if old is not None:
                os.umask(old)
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(errno.EEXIST, "replaced by something else right after the bind")
        return UnixPlace(dir_fd, name, info.st_dev, info.st_ino)
    except BaseException:
        os.close(dir_fd)
        raise


def _place_of(spec: SocketSpec, file: tuple[int, int] | None) -> UnixPlace | None:
    """The recorded file of a unix socket taken back, if its name still is that file."""
    if not spec.path or file is None:
        return None
    parent, name = os.path.split(os.path.abspath(spec.path))
    try:
        dir_fd, _ = walk_dir(parent)
    except OSError:
        return None
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        info = None
    if info is None or (info.st_dev, info.st_ino) != file or not stat.S_ISSOCK(info.st_mode):
        os.close(dir_fd)
        return None
    return UnixPlace(dir_fd, name, info.st_dev, info.st_ino)


def _bound_or_error(spec: SocketSpec, serial: int, quiet: bool = False) -> BoundSocket:
    """`spec` bound, or its error; `quiet`: a retry, whose failure is logged at debug."""
    try:
        sock, place = bind(spec)
        return BoundSocket(spec, sock, serial=serial, place=place)
    except SocketBindError as exc:
        log.log(logging.DEBUG if quiet else logging.ERROR, "%s", exc)
        return BoundSocket(spec, None, str(exc), serial=serial)


Binding = tuple[str | int, ...]


class SocketPool:
    """Every socket the current Assignment's versions inherit, bound once per binding."""

    def __init__(self) -> None:
        self._bound: dict[Binding, BoundSocket] = {}
        self._last_serial = 0
        self._waiting: dict[Binding, dict[str, Callable[[], None]]] = {}
        """Bindings watched for a first connection: waiter -> what to call then."""

    def on_connection(self, spec: SocketSpec, waiter: str, call: Callable[[], None]) -> bool:
        """Call `call` once, from the event loop, when the socket of `spec` is readable
        (a connection or a datagram waits); nothing is accepted or read. `waiter`
        (a watcher's name) is told once, whatever it asked before. False when the
        socket is not bound."""
        key = socket_binding(spec)
        bound = self._bound.get(key)
        if bound is None or bound.sock is None:
            return False
        waiters = self._waiting.setdefault(key, {})
        if not waiters:
            asyncio.get_running_loop().add_reader(bound.fd, self._readable, key)
        waiters[waiter] = call
        return True

    def stop_waiting(self, waiter: str) -> None:
        """`waiter` no longer waits for a connection on any socket."""
        for key in [key for key, waiters in self._waiting.items() if waiter in waiters]:
            del self._waiting[key][waiter]
            if not self._waiting[key]:
                self._unwatch(key)

    def _readable(self, key: Binding) -> None:
        waiters = list(self._unwatch(key).values())
        for call in waiters:
            call()

    def _unwatch(self, key: Binding) -> dict[str, Callable[[], None]]:
        waiters = self._waiting.pop(key, {})
        bound = self._bound.get(key)
        if waiters and bound is not None and bound.sock is not None:
            asyncio.get_running_loop().remove_reader(bound.fd)
        return waiters

    def sync(self, specs: Iterable[SocketSpec]) -> list[BoundSocket]:
        """Make the pool hold one socket per binding of `specs` and no other; of specs
        with the same binding, the last one's options are applied to it in place.
        A binding that failed is tried again. Returns the bindings made, or tried
        again with another outcome (bound now, or another error)."""
        wanted: dict[Binding, SocketSpec] = {}
        for spec in specs:
            wanted[socket_binding(spec)] = spec
        for key in [key for key in self._bound if key not in wanted]:
            self._close(key)
        changed: list[BoundSocket] = []
        for key, spec in wanted.items():
            bound = self._bound.get(key)
            if bound is not None and bound.sock is not None:
                if bound.spec != spec:
                    _adjust(bound, spec)
                continue
            serial = bound.serial if bound is not None else self._next_serial()
            fresh = _bound_or_error(spec, serial, quiet=bound is not None)
            self._bound[key] = fresh
            if bound is None or fresh.error != bound.error:
                changed.append(fresh)
        return changed

    def _next_serial(self) -> int:
        self._last_serial += 1
        return self._last_serial

    def restore(
        self, spec: SocketSpec, serial: int, fd: int | None, file: tuple[int, int] | None = None
    ) -> BoundSocket:
        """Put back a socket bound before the agent restarted: `fd` (the agent's own
        across an exec, or taken back from a worker), or, when no one held it any more,
        a fresh binding, under the old serial either way. `file` is a unix socket's
        (device, inode) as recorded: removed at close if its name is still that file."""
        if fd is None:
            bound = _bound_or_error(spec, serial)
        else:
            sock = _move_high(socket.socket(fileno=fd))
            bound = BoundSocket(spec, sock, serial=serial, place=_place_of(spec, file))
        self._bound[socket_binding(spec)] = bound
        self._last_serial = max(self._last_serial, serial)
        return bound

    def release(self) -> None:
        """Forget every socket WITHOUT closing it or removing its file (they pass on to
        the next image of the agent)."""
        for key in list(self._waiting):
            self._unwatch(key)
        for bound in self._bound.values():
            if bound.sock is not None:
                bound.sock.detach()
            if bound.place is not None:
                os.close(bound.place.dir_fd)
        self._bound.clear()

    def lookup(self, spec: SocketSpec) -> BoundSocket | None:
        """The socket bound (or tried) for `spec`'s binding."""
        return self._bound.get(socket_binding(spec))

    def get(self, name: str) -> BoundSocket | None:
        """The newest socket called `name` (during a rolling change that moved it, an
        older one may still be bound for the workers not yet replaced)."""
        named = [bound for bound in self._bound.values() if bound.spec.name == name]
        return max(named, key=lambda bound: bound.serial, default=None)

    def all(self) -> list[BoundSocket]:
        return sorted(self._bound.values(), key=lambda bound: (bound.spec.name, bound.serial))

    def _close(self, key: Binding) -> None:
        self._unwatch(key)
        bound = self._bound.pop(key)
        if bound.sock is not None:
            bound.sock.close()
        if bound.place is not None:
            bound.place.remove()

    def close(self) -> None:
        for key in list(self._bound):
            self._close(key)


def _adjust(bound: BoundSocket, spec: SocketSpec) -> None:
    """Apply a changed spec of the same binding to the bound socket: its backlog and
    blocking mode now; umask, replace and so_reuseport matter only at the next bind."""
    assert bound.sock is not None
    kind = socket.SocketKind[spec.type or "SOCK_STREAM"]
    try:
        if kind == socket.SOCK_STREAM and spec.backlog != bound.spec.backlog:
            bound.sock.listen(spec.backlog or 2048)
        if spec.blocking != bound.spec.blocking:
            bound.sock.setblocking(spec.blocking)
    except OSError as exc:
        log.warning("socket %s: cannot apply its new options: %s", spec.name, exc)
    bound.spec = spec
