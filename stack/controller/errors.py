"""The controller's own errors.

The desired-state transitions and the services raise these; only the admin servicer
turns them into gRPC status codes (admin_service.STATUS_CODES), so the core never
imports grpc. Every message is one line that names what was wrong.
"""

from __future__ import annotations


class ControllerError(Exception):
    """Base of every error the controller reports to a caller."""


class InvalidArgument(ControllerError):
    """A bad stack file, count, signal or request shape."""


class NotFound(ControllerError):
    """An unknown watcher."""


class Conflict(ControllerError):
    """The desired state is no longer what the request was made against."""


class ResourceExhausted(ControllerError):
    """The caller holds as much as it may (follow streams, say)."""


class Unavailable(ControllerError):
    """The controller cannot serve the request now (not ready, fenced out)."""


class FencedOut(Unavailable):
    """A newer controller took over the store: this one must not write."""


class NotLeader(Unavailable):
    """This controller follows: the caller should ask the leader (if one is known)."""

    def __init__(self, leader: str) -> None:
        where = f"the leader is at {leader}" if leader else "no controller leads right now"
        super().__init__(f"this controller is not the leader: {where}; nothing was changed")
        self.leader = leader


def unknown_watcher(name: str) -> NotFound:
    """The one wording of an unknown watcher, everywhere."""
    return NotFound(f"unknown watcher {name!r}")
