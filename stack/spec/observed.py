"""What an agent observes on its host: processes, watchers' phases, sockets.

The agent reports an `Observed` after every change and as its heartbeat; the controller
screens it, keeps it per host, and builds status, placement and rollouts from it. The
enums mirror the wire's (same numbers, see proto/stack/v1/types.proto), so that a value
crosses the edge as an int without a lookup.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ON_DEMAND_REST = "on demand: waiting for a connection"
"""How status begins the note of an on_demand watcher (and its workers) at rest."""


class ProcessState(enum.IntEnum):
    """The life cycle of one worker process (wire: stack.v1.ProcessState)."""

    UNSPECIFIED = 0
    STARTING = 1
    """Spawned, inside warmup_delay."""
    RUNNING = 2
    STOPPING = 3
    """Stop signal sent, waiting for the exit."""
    EXITED = 4
    """Exited, about to be respawned."""
    BACKOFF = 5
    """Held back by flapping detection: waiting retry_in."""
    FATAL = 6
    """Given up (flapping max_retry, or spawn errors)."""
    STOPPED = 7
    """Stopped on purpose."""
    UNKNOWN = 8
    """Its agent is not reachable (set by the controller, never by an agent)."""


class Health(enum.IntEnum):
    """What a process's health check says (wire: stack.v1.Health)."""

    UNSPECIFIED = 0
    """No health check."""
    STARTING = 1
    """Checked, not passed yet."""
    HEALTHY = 2
    UNHEALTHY = 3


class ExitReason(enum.IntEnum):
    """Why a process last exited or is not running (wire: stack.v1.ExitReason)."""

    UNSPECIFIED = 0
    CRASHED = 1
    """Exited on its own."""
    STOPPED = 2
    """Stopped by the user or a scale down."""
    FLAPPING = 3
    """Held back by flapping detection."""
    SPAWN_ERROR = 4
    """Could not be started at all."""
    KILLED = 5
    """SIGKILLed after graceful_timeout."""
    MAX_AGE = 6
    """Recycled after max_age."""
    RESTARTED = 7
    """Replaced by a restart, reload or spec change."""
    UNHEALTHY = 8
    """Restarted after failing its health check."""

    @property
    def words(self) -> str:
        """`crashed`, `spawn error`... for messages."""
        return self.name.lower().replace("_", " ")


class WatcherPhase(enum.IntEnum):
    """Where a watcher is on a host (wire: stack.v1.WatcherPhase)."""

    UNSPECIFIED = 0
    ACTIVE = 1
    STOPPED = 2
    FLAPPING = 3
    """Waiting retry_in before trying again."""
    FATAL = 4


@dataclass(frozen=True, slots=True)
class LastExit:
    """How and why a worker slot's last process ended."""

    code: int = 0
    """The exit code when it exited normally."""
    signal: int = 0
    """The signal that killed it (0: none)."""
    reason: ExitReason = ExitReason.UNSPECIFIED
    at: float = 0.0
    """Unix time."""
    message: str = ""
    """e.g. the spawn error."""
    code_unknown: bool = False
    """The exit status could not be known (a worker adopted after an agent crash is not
    the agent's child); `code` and `signal` are then 0."""

    def describe(self) -> str:
        """`killed by signal 9` or `exit code 3`."""
        return f"killed by signal {self.signal}" if self.signal else f"exit code {self.code}"


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One worker id of a watcher on a host, as its agent sees it."""

    watcher: str
    wid: int
    pid: int = 0
    """0 when not running."""
    state: ProcessState = ProcessState.UNSPECIFIED
    started_at: float = 0.0
    """Unix time of the current spawn, 0 if none."""
    restarts: int = 0
    """Unplanned restarts of this worker id: after a crash, a kill, a failed health check
    or a failed start."""
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0
    """User and system CPU time of the process so far (it only grows while the pid lives)."""
    num_fds: int = 0
    num_children: int = 0
    last_exit: LastExit | None = None
    host_id: str = ""
    message: str = ""
    """Why it is where it is ("flapping, retry in 5s")."""
    health: Health = Health.UNSPECIFIED
    health_message: str = ""
    """The last failed check."""
    version: str = ""
    """The label of the watcher version it runs (see stack.spec.version)."""
    blocked: str = ""
    """Why the version this worker must run cannot start on its host (it keeps the
    process it runs)."""
    replacements: int = 0
    """Planned replacements of this worker id: restart, reload, a change of its watcher,
    max_age."""


@dataclass(frozen=True, slots=True)
class WatcherObserved:
    """One watcher's phase on a host."""

    name: str
    phase: WatcherPhase = WatcherPhase.UNSPECIFIED
    retry_at: float = 0.0
    """Unix time of the next flapping retry."""
    flapping_retries: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class SocketStatus:
    """One socket the agent holds."""

    name: str
    fd: int = -1
    address: str = ""
    """`127.0.0.1:8080` or the unix path."""
    error: str = ""
    """Why the bind failed ("" when bound)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """An agent's whole observed state, with the generation of the Assignment it applied."""

    generation: int = 0
    processes: tuple[ProcessStatus, ...] = ()
    watchers: tuple[WatcherObserved, ...] = ()
    sockets: tuple[SocketStatus, ...] = ()
