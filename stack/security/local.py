"""The controller's local socket: how stackctl and agents on its host reach it without
TLS, and why only the controller's user (and an operator group) can.

Without certificates a caller cannot be told apart from any other, and whoever talks
to the controller runs commands as root on every agent. So the certificate-less mode is
a unix socket, `controller.sock` in the controller's data dir (`--socket`), that only
its owner can open: the kernel checks, on every connect(2), search permission on each
directory of the path and write permission on the socket. The controller makes those
permissions right before it serves: the socket's directory belongs to its user, is
0700 (0750 with `--socket-group`, whose members may then connect too), and no
directory above it can be written by other users; the socket itself is 0600 (0660).
A lock next to the socket (`.controller.sock.lock`), held while the controller runs,
tells a socket a dead controller left (replaced) from a live one's (never taken).

The permissions are not the only lock: the controller accepts the socket's connections
itself and checks each peer's credentials (SO_PEERCRED) before relaying it to gRPC (see
stack.controller.local_relay), so a socket or directory loosened by mistake still lets
no other user in. gRPC's real listener is a second socket, in a directory next to the
public one (`.controller.sock.grpc/`) that only the controller's user can enter. A
refused client is sent one line (REFUSAL) before the connection closes, which stackctl
reads back to say why (`refusal`). gRPC's local credentials, used on that socket, mark
a call as having come over it, which is how the role check tells a local caller
(trusted as an admin) from a TLS peer.

`stackctl` and `stack-agent` take `unix:PATH` wherever they take HOST:PORT, and
without `--controller` (or `STACK_CONTROLLER`) they dial the default controller's
socket: `/var/lib/stack-controller/controller.sock` as root, else
`~/.local/state/stack/controller/controller.sock`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

UNIX = "unix:"
"""The prefix of a unix socket address: `unix:/var/lib/stack-controller/controller.sock`."""
SOCKET_NAME = "controller.sock"
MAX_PATH_BYTES = 107
"""The longest path a unix socket may have on Linux (sun_path, less its NUL)."""
ADDRESS_RULE = "unix:PATH or HOST:PORT (several: comma-separated)"
GRPC_SOCKET = "grpc.sock"
"""gRPC's real listener, in the private directory next to the public socket."""

REFUSAL = b"stack-controller: "
"""How the line starts that the controller sends a connection it refuses, before closing
it: `stack-controller: KIND: REASON` (KIND is DENIED or BUSY)."""
DENIED = "denied"
"""The peer is not the controller's user, root, or in its operator group."""
BUSY = "busy"
"""The peer's uid holds as many connections as it may."""
REFUSAL_WAIT = 1.0
"""Seconds stackctl waits for the refusal line when it looks for one."""


def default_controller_dir() -> Path:
    """The controller's default data dir: /var/lib/stack-controller as root, else
    ~/.local/state/stack/controller."""
    if os.geteuid() == 0:
        return Path("/var/lib/stack-controller")
    return Path.home() / ".local" / "state" / "stack" / "controller"


def default_socket() -> Path:
    """Where the local controller serves, by default: its default data dir's socket."""
    return default_controller_dir() / SOCKET_NAME


def default_address() -> str:
    """The address stackctl and stack-agent dial when told none."""
    return f"{UNIX}{default_socket()}"


def is_unix(address: str) -> bool:
    """Whether `address` names a unix socket (`unix:PATH`)."""
    return address.startswith(UNIX)


def unix_path(address: str) -> str:
    """The path of a `unix:PATH` address (`unix:///run/x` is `/run/x` too)."""
    path = address[len(UNIX) :]
    return "/" + path.lstrip("/") if path.startswith("//") else path


def check_addresses(text: str) -> str:
    """A comma-separated list of controller addresses, cleaned; ValueError naming the
    problem when one is neither HOST:PORT nor unix:PATH."""
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        if is_unix(part):
            good = bool(unix_path(part))
        else:
            host, sep, port = part.rpartition(":")
            good = bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
        if not good:
            raise ValueError(f"expected {ADDRESS_RULE}, got {text!r}")
    return ",".join(parts)


def refusal_line(kind: str, reason: str) -> bytes:
    """The line the controller sends a connection it refuses."""
    return REFUSAL + f"{kind}: {reason}\n".encode()


def refusal(path: str) -> tuple[str, str] | None:
    """(KIND, REASON) when the controller at `path` refuses our connections, else None
    (it accepts them, or cannot be reached at all). stackctl asks only after a call
    failed, to say why in one line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(REFUSAL_WAIT)
        received = b""
        try:
            probe.connect(path)
            while len(received) < 512 and not received.endswith(b"\n"):
                chunk = probe.recv(512 - len(received))
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass  # unreachable, or a gRPC server that says nothing first: not a refusal
    if not received.startswith(REFUSAL) or not received.endswith(b"\n"):
        return None
    kind, _, reason = received[len(REFUSAL) : -1].decode(errors="replace").partition(": ")
    return kind, reason


class LocalSocketError(Exception):
    """The local socket cannot be served safely; str() is one line."""


class LocalSocket:
    """The controller's side of its local socket: a private place to bind it, its
    permissions once bound, and its removal (only the inode it bound) at the end."""

    def __init__(self, path: Path, group: int | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        self.group = group
        """A gid whose members may connect too; None: the owner only."""
        self._dir_fd: int | None = None
        self._private_fd: int | None = None
        self._lock_fd: int | None = None
        self._bound: tuple[int, int] | None = None

    @property
    def address(self) -> str:
        """What clients dial: `unix:PATH`."""
        return f"{UNIX}{self.path}"

    @property
    def private_dir(self) -> Path:
        """The directory of gRPC's real listener: the controller's user's alone (0700)."""
        return self.path.parent / f".{self.path.name}.grpc"

    @property
    def upstream(self) -> str:
        """The path the controller binds gRPC's real listener to and dials it at: through
        the private directory's descriptor, so that neither depends on the data dir's
        path (nor its length: a unix socket's path has at most 107 bytes)."""
        assert self._private_fd is not None, "prepare() first"
        return f"/proc/self/fd/{self._private_fd}/{GRPC_SOCKET}"

    @property
    def modes(self) -> tuple[int, int]:
        """(directory mode, socket mode)."""
        return (0o750, 0o660) if self.group is not None else (0o700, 0o600)

    def prepare(self) -> None:
        """Make the socket's directory private (0700 until `secure`), take the socket's
        lock, and clear a stale socket left by a controller that died; LocalSocketError
        if this cannot be done safely."""
        if len(os.fsencode(self.path)) > MAX_PATH_BYTES:
            raise LocalSocketError(
                f"socket path {self.path} is longer than {MAX_PATH_BYTES} bytes: "
                "give --socket a shorter one"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Where it really is (systemd's DynamicUser= makes the state dir a link into
            # /var/lib/private); every directory above both is checked below.
            directory = Path(os.path.realpath(self.path.parent))
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise LocalSocketError(f"cannot use {self.path.parent}: {exc.strerror}") from None
        self._dir_fd = fd
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise LocalSocketError(
                f"{directory} belongs to uid {info.st_uid}, not to this controller's user: "
                "its socket must be in a directory of its own"
            )
        _check_ancestors(self.path.parent)
        try:
            os.fchmod(fd, 0o700)  # the group, if any, comes in once the socket is secured
        except OSError as exc:
            raise LocalSocketError(f"cannot secure {directory}: {exc.strerror}") from None
        self._clear_stale()
        self._make_private()

    def _make_private(self) -> None:
        """The private directory, 0700 and ours, with no socket left in it."""
        name = self.private_dir.name
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=self._dir_fd)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=self._dir_fd,
            )  # fmt: skip
        except OSError as exc:
            raise LocalSocketError(f"cannot use {self.private_dir}: {exc.strerror}") from None
        self._private_fd = fd
        if os.fstat(fd).st_uid != os.geteuid():
            raise LocalSocketError(f"{self.private_dir} belongs to another user")
        os.fchmod(fd, 0o700)
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(GRPC_SOCKET, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISSOCK(info.st_mode):
                raise LocalSocketError(f"{self.private_dir / GRPC_SOCKET} is not a socket")
            os.unlink(GRPC_SOCKET, dir_fd=fd)  # a dead controller's (we hold the lock)

    def listen(self) -> socket.socket:
        """Bind and listen on the public socket (then `secure` it); the controller
        accepts its connections itself (see stack.controller.local_relay)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            listener.listen(256)
        except OSError as exc:
            listener.close()
            raise LocalSocketError(f"cannot listen on {self.address}: {exc.strerror}") from None
        listener.setblocking(False)
        return listener

    def _clear_stale(self) -> None:
        """Hold the socket's lock for as long as this controller lives; with it held,
        a socket left at the path is a dead controller's, and is removed."""
        name = self.path.name
        lock = os.open(
            f".{name}.lock",
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=self._dir_fd,
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise LocalSocketError(f"a controller already serves {self.address}") from None
        self._lock_fd = lock
        try:
            info = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise LocalSocketError(f"{self.path} exists and is not a socket")
        os.unlink(name, dir_fd=self._dir_fd)  # left by a controller that died

    def secure(self) -> None:
        """Once bound: the socket's mode and group, then its directory's (with a group,
        0750: the store keeps its own files 0600), and which inode is ours."""
        name = self.path.name
        try:
            info = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.geteuid():
                raise LocalSocketError(f"{self.path} is not the socket this controller bound")
            if self.group is not None:
                os.chown(name, -1, self.group, dir_fd=self._dir_fd, follow_symlinks=False)
            os.chmod(name, self.modes[1], dir_fd=self._dir_fd)
            if self.group is not None:
                assert self._dir_fd is not None
                os.fchown(self._dir_fd, -1, self.group)
                os.fchmod(self._dir_fd, self.modes[0])
        except OSError as exc:
            raise LocalSocketError(f"cannot secure {self.path}: {exc.strerror}") from None
        self._bound = (info.st_dev, info.st_ino)

    def remove(self) -> None:
        """Unlink the socket if it is still the one bound here; release the directory
        and the lock."""
        fd, self._dir_fd = self._dir_fd, None
        private, self._private_fd = self._private_fd, None
        lock, self._lock_fd = self._lock_fd, None
        if private is not None:
            with contextlib.suppress(OSError):
                os.unlink(GRPC_SOCKET, dir_fd=private)
            os.close(private)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(self.private_dir.name, dir_fd=fd)
        if fd is not None:
            try:
                info = os.stat(self.path.name, dir_fd=fd, follow_symlinks=False)
                if (info.st_dev, info.st_ino) == self._bound:
                    os.unlink(self.path.name, dir_fd=fd)
            except OSError:
                pass
            finally:
                os.close(fd)
        if lock is not None:
            os.close(lock)


def _check_ancestors(directory: Path) -> None:
    """LocalSocketError when another user could swap a directory above the socket's:
    each must belong to root or to us and not be writable by others (unless sticky)."""
    real = Path(os.path.realpath(directory))
    for above in sorted({*directory.parents, *real.parents}):
        try:
            info = os.stat(above)
        except OSError as exc:
            raise LocalSocketError(f"cannot check {above}: {exc.strerror}") from None
        if info.st_uid not in (0, os.geteuid()):
            raise LocalSocketError(
                f"{above} belongs to uid {info.st_uid}: it could move the controller's socket"
            )
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            raise LocalSocketError(
                f"{above} is writable by every user: it could move the controller's socket"
            )


def _answers(path: str) -> bool:
    """Whether something accepts connections on the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise LocalSocketError(f"cannot probe {path}: {exc.strerror}") from None
        return True


def answers(address: str) -> bool:
    """Whether a controller (or anything) accepts connections at `unix:PATH`."""
    with contextlib.suppress(LocalSocketError):
        return _answers(unix_path(address))
    return True
