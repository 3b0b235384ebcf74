"""What the controller gives one host to run: its Assignment, in domain terms.

Level-triggered: an Assignment is the host's whole share of the stack (the watchers
that have worker ids there and the sockets their versions inherit), never a delta.
The controller builds it (stack.controller.assignments), the agent reconciles to it;
stack.wire.agent carries it across.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.spec.model import SocketSpec, WatcherSpec


@dataclass(frozen=True, slots=True)
class PinnedVersion:
    """An earlier version of a watcher that some worker ids keep during a rolling change."""

    spec: WatcherSpec
    restart_token: int
    wids: tuple[int, ...]
    sockets: tuple[SocketSpec, ...] = ()
    """The sockets its processes inherit, in fd order, as they were when it was current.
    Empty from a controller that predates them: the Assignment's of the same names."""


@dataclass(frozen=True, slots=True)
class WatcherAssignment:
    """One watcher's share on one host."""

    spec: WatcherSpec
    wids: tuple[int, ...]
    """The worker ids this host runs (fleet-stable)."""
    active: bool = True
    """False: stopped by the user (the ids stay placed, nothing runs)."""
    restart_token: int = 0
    """A change restarts every process of the watcher on this host."""
    graceful: bool = False
    """With a restart_token change: start the new processes before stopping the old."""
    reset_token: int = 0
    """A change clears flapping and fatal state."""
    pinned: tuple[PinnedVersion, ...] = ()
    """Worker ids that keep an earlier version until the rollout moves them."""
    probation: tuple[int, ...] = ()
    """Worker ids of the rollout batch: a new process of theirs that exits or fails its
    health check is left stopped (the controller halts the rollout), not respawned."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """A host's whole share: generation, the writer's fencing token, watchers, sockets."""

    generation: int = 0
    fencing_token: int = 0
    watchers: tuple[WatcherAssignment, ...] = ()
    sockets: tuple[SocketSpec, ...] = ()
