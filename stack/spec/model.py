"""The domain model of a stack: watchers and sockets as frozen dataclasses.

These are what the agent and the controller reason about. They are not wire
types: `stack.wire.spec` turns them into `stack.v1` messages and back. The
defaults follow Circus, so a Circus user finds the same names and meanings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stack.spec.plain import to_plain

# Limits shared by validation and the services.
MAX_PROCESSES = 10_000
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
NAME_RULE = f"must match {NAME_PATTERN}"
"""How every bad name's message ends: `host id 'a b' must match [A-Za-z0-9_.-]{1,64}`."""
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """Whether `name` may name a watcher, socket, host or label key.

    Names end up in file names, store keys, certificates and log lines, so every
    door they come in by (stack files, agent flags, admin requests) checks this.
    """
    return _NAME.fullmatch(name) is not None


STREAM_CLASSES = (
    "FileStream", "WatchedFileStream", "TimedRotatingFileStream", "StdoutStream",
    "FancyStdoutStream",
)  # fmt: skip
"""Circus's stream classes that Stack knows; the first is the default."""

COLORS = ("red", "green", "yellow", "blue", "magenta", "cyan", "white")
"""FancyStdoutStream's colours, as Circus names them. Here rather than in stack.spec.load,
which checks them, because the agent picks one (console.py) and must not import the stack
file loader (tomllib, difflib and the rest: about 0.7 MiB of its heap) for that."""

HOOKS = (
    "before_start", "after_start", "before_spawn", "after_spawn", "before_stop", "after_stop",
    "before_signal", "after_signal", "after_reap",
)  # fmt: skip
"""The moments of a watcher's life at which a hook command may run, in Circus's words."""


@dataclass(frozen=True)
class StreamSpec:
    """Where one output stream of a watcher is written, and how it rotates."""

    class_: str = "FileStream"
    """One of STREAM_CLASSES (the option `class`): how the lines are kept or shown."""
    filename: str = ""
    """Path of the file; empty means `<agent data dir>/logs/<watcher>.<out|err>.log`."""
    max_bytes: int = 10 * 1024 * 1024
    """Rotate when the file would grow past this size; 0 never rotates (FileStream)."""
    backup_count: int = 5
    """How many rotated files (`.1` ... `.N`) to keep."""
    rotate_when: str = ""
    """TimedRotatingFileStream: S, M, H, D, W0-W6 or MIDNIGHT."""
    rotate_interval: int = 1
    """TimedRotatingFileStream: rotate every this many `rotate_when` units."""
    color: str = ""
    """FancyStdoutStream: the colour of the watcher's lines; empty picks one per watcher."""


@dataclass(frozen=True)
class FlappingSpec:
    """Circus's flapping detection, per watcher."""

    attempts: int = 2
    """More than this many starts within `window` seconds is flapping."""
    window: float = 1.0
    """The sliding window, in seconds."""
    retry_in: float = 7.0
    """Seconds to wait before trying again once flapping is detected."""
    max_retry: int = 5
    """Retries before the watcher is fatal; -1 retries forever."""


@dataclass(frozen=True)
class PlacementSpec:
    """Where a watcher's processes may run across the fleet."""

    mode: str = "spread"
    """"spread": numprocesses is the fleet-wide total; "each": numprocesses per eligible agent."""
    max_per_host: int = 0
    """At most this many processes of the watcher on one agent; 0 is no limit."""
    labels: MappingProxyType[str, str] = field(default_factory=lambda: _frozen_map())
    """An agent is eligible when it has every one of these labels."""


@dataclass(frozen=True)
class UpdateSpec:
    """How processes are replaced when the watcher's spec changes (a rolling change)."""

    max_parallel: int = 1
    """Processes replaced per batch."""
    min_uptime: float = 2.0
    """Seconds a new process must stay up before the next batch, without a health check."""


@dataclass(frozen=True)
class HealthSpec:
    """A health check the agent runs against each process."""

    type: str = ""
    """"" (no check), "tcp", "http" or "exec"."""
    target: str = ""
    """tcp: a port or socket name; http: a URL path or a URL; exec: a command."""
    interval: float = 10.0
    """Seconds between checks."""
    timeout: float = 2.0
    """Seconds one check may take."""
    retries: int = 3
    """Failed checks in a row before the process is unhealthy and restarted."""


@dataclass(frozen=True)
class HookSpec:
    """A command the agent runs at one moment of a watcher's life (see HOOKS)."""

    cmd: str
    """The command line, split like `cmd`."""
    ignore_errors: bool = False
    """A failing `before_*` hook does not abort the step it precedes."""
    timeout: float = 30.0
    """Seconds the hook may run before it is killed and counts as failed."""


@dataclass(frozen=True)
class SocketSpec:
    """A socket the agent binds once and hands to workers by file descriptor."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    path: str = ""
    """A unix socket path; when set, host and port are not used."""
    family: str = "AF_INET"
    type: str = "SOCK_STREAM"
    backlog: int = 2048
    umask: int = -1
    """Umask while binding a unix socket; -1 keeps the agent's."""
    replace: bool = False
    """Unlink an existing unix socket path before binding."""
    so_reuseport: bool = False
    blocking: bool = False


def _frozen_map(value: dict[str, Any] | None = None) -> MappingProxyType[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class WatcherSpec:
    """A program run as `numprocesses` identical workers."""

    name: str
    cmd: str
    args: tuple[str, ...] = ()
    numprocesses: int = 1
    warmup_delay: float = 0.0
    working_dir: str = ""
    shell: bool = False
    uid: str = ""
    gid: str = ""
    env: MappingProxyType[str, str] = field(default_factory=_frozen_map)
    copy_env: bool = False
    rlimits: MappingProxyType[str, int] = field(default_factory=_frozen_map)
    """Resource limits by name without the prefix: {"nofile": 1024}."""
    stop_signal: str = "TERM"
    stop_children: bool = False
    graceful_timeout: float = 30.0
    respawn: bool = True
    max_retry: int = 5
    autostart: bool = True
    priority: int = 0
    singleton: bool = False
    use_sockets: bool = False
    sockets: tuple[str, ...] = ()
    """Sockets the workers inherit, in fd order; empty with use_sockets: all."""
    close_child_stdin: bool = True
    max_age: float = 0.0
    max_age_variance: float = 30.0
    stdout_stream: StreamSpec = StreamSpec()
    stderr_stream: StreamSpec = StreamSpec()
    flapping: FlappingSpec = FlappingSpec()
    umask: int = -1
    """Umask of the workers; -1 keeps the agent's."""
    placement: PlacementSpec = PlacementSpec()
    update: UpdateSpec = UpdateSpec()
    health: HealthSpec = HealthSpec()
    # Options added after the first release: each is left out of the process
    # fingerprint while it has its default value (see _ADDED_LATER).
    hooks: MappingProxyType[str, HookSpec] = field(default_factory=_frozen_map)
    """Commands run around the workers' life, by moment (see HOOKS)."""
    on_demand: bool = False
    """Start the workers only when a socket of the watcher gets its first connection."""
    send_hup: bool = False
    """`reload` sends SIGHUP to the workers instead of replacing them."""
    stdin_socket: str = ""
    """A socket of the stack given to each worker as its stdin (fd 0)."""
    executable: str = ""
    """The program to run; the first word of `cmd` is then only its argv[0]."""
    shell_args: tuple[str, ...] = ()
    """With `shell`, more arguments for the shell (`$0`, `$1`... of the command)."""
    copy_path: bool = False
    """The agent's Python path in the workers' PYTHONPATH (needs copy_env)."""
    virtualenv: str = ""
    """A virtualenv whose bin directory leads the workers' PATH (needs copy_env)."""
    close_child_stdout: bool = False
    """Give workers /dev/null as stdout."""
    close_child_stderr: bool = False
    """Give workers /dev/null as stderr."""
    autorestart: str = ""
    """"" (respawn decides) or "unexpected": respawn only after an exit whose code is
    not in `exitcodes` (or a death by a signal Stack did not send)."""
    exitcodes: tuple[int, ...] = (0,)
    """The exit codes that are expected (for autorestart = "unexpected")."""
    startsecs: float = 0.0
    """Seconds a worker must stay up for its start to count as successful."""

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (maps become dicts, tuples lists)."""
        plain = to_plain(self)
        assert isinstance(plain, dict)
        return plain

    def process_fingerprint(self) -> str:
        """A digest of every option that needs new processes when it changes.

        numprocesses, priority, autostart, flapping, max_retry, placement,
        update, health, hooks, on_demand, send_hup, autorestart, exitcodes and
        startsecs can change without replacing running workers; everything else
        cannot. An option added later counts only when it is not at its default,
        so that a watcher that does not use it keeps its fingerprint (and its
        workers) across an upgrade.
        """
        data = self.to_dict()
        for key in _NOT_OF_THE_PROCESS:
            data.pop(key)
        for key, default in _ADDED_LATER.items():
            if data.get(key) == default:
                data.pop(key)
        for stream in ("stdout_stream", "stderr_stream"):
            for key, default in _STREAM_ADDED_LATER.items():
                if data[stream].get(key) == default:
                    data[stream].pop(key)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def version_label(restart_token: int, fingerprint: str) -> str:
    """How a version of a watcher's processes is named (ProcessStatus.version): the
    agent reports it, the controller's rollouts compare it, so both call this."""
    return f"{restart_token}-{fingerprint}"


def socket_binding(spec: SocketSpec) -> tuple[str | int, ...]:
    """Where a socket listens: what makes it another socket to its clients and workers.

    Two specs with the same binding are one kernel socket: a change of its other
    options (backlog, blocking, ...) is applied to the bound socket and replaces no
    worker. A port of 0 (the kernel chooses) is a socket of its own per name.
    """
    kind = spec.type or "SOCK_STREAM"
    if spec.path:
        return ("AF_UNIX", kind, spec.path)
    family = spec.family or "AF_INET"
    if family == "AF_INET" and ":" in spec.host:
        family = "AF_INET6"
    if spec.port == 0:
        return (family, kind, spec.host, 0, spec.name)
    return (family, kind, spec.host, spec.port)


def inherited(watcher: WatcherSpec, sockets: Mapping[str, SocketSpec]) -> tuple[SocketSpec, ...]:
    """The sockets `watcher`'s workers inherit from `sockets` (a stack's), in fd order:
    those it names, or with use_sockets every one in name order. A name `sockets`
    does not have is left out (a stack file that does so is refused when loaded)."""
    if watcher.sockets:
        return tuple(sockets[name] for name in watcher.sockets if name in sockets)
    if watcher.use_sockets:
        return tuple(sockets[name] for name in sorted(sockets))
    return ()


def version_sockets(
    watcher: WatcherSpec, sockets: Mapping[str, SocketSpec]
) -> tuple[SocketSpec, ...]:
    """Every socket a version of the watcher's processes needs: those they inherit, in
    fd order, then the stdin_socket when it is not one of them."""
    found = inherited(watcher, sockets)
    stdin = watcher.stdin_socket
    if stdin and stdin in sockets and all(sock.name != stdin for sock in found):
        found += (sockets[stdin],)
    return found


def passed_as_fds(watcher: WatcherSpec, needed: Sequence[SocketSpec]) -> tuple[SocketSpec, ...]:
    """Of a version's sockets (version_sockets), those its workers get as fds 3, 4, ..."""
    if watcher.sockets:
        return tuple(sock for sock in needed if sock.name in watcher.sockets)
    return tuple(needed) if watcher.use_sockets else ()


def version_fingerprint(watcher: WatcherSpec, sockets: Sequence[SocketSpec]) -> str:
    """The fingerprint of a version of the watcher's processes: its own options that
    need new processes (process_fingerprint) and the sockets it needs (version_sockets),
    by name and binding in order. A socket moved to another port is a new version; a
    socket whose backlog changed is not. Without sockets: process_fingerprint itself."""
    own = watcher.process_fingerprint()
    if not sockets:
        return own
    data = [own, [[spec.name, *socket_binding(spec)] for spec in sockets]]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


_NOT_OF_THE_PROCESS = (
    "numprocesses", "priority", "autostart", "flapping", "max_retry", "placement", "update",
    "health", "hooks", "on_demand", "send_hup", "autorestart", "exitcodes", "startsecs",
)  # fmt: skip
_ADDED_LATER = {
    "stdin_socket": "", "executable": "", "shell_args": [], "copy_path": False,
    "virtualenv": "", "close_child_stdout": False, "close_child_stderr": False,
}  # fmt: skip
"""Options of the process added after the first release, with their defaults as
`to_dict` writes them."""
_STREAM_ADDED_LATER = {"class_": "FileStream", "rotate_when": "", "rotate_interval": 1, "color": ""}


@dataclass(frozen=True)
class StackSpec:
    """A whole stack file: every watcher and socket, by name."""

    watchers: MappingProxyType[str, WatcherSpec] = field(default_factory=_frozen_map)
    sockets: MappingProxyType[str, SocketSpec] = field(default_factory=_frozen_map)

    def sockets_of(self, watcher: WatcherSpec) -> tuple[SocketSpec, ...]:
        """The sockets a watcher's workers inherit, in fd order (not its stdin_socket)."""
        return inherited(watcher, self.sockets)
