"""The controller's own errors.

The desired-state transitions and the services raise these. Each names its status
`code` in gRPC's words; the admin servicer turns it into a gRPC status, the web console
into an HTTP one, so the core never imports grpc. Every message is one line that names
what was wrong.
"""

from __future__ import annotations


class ControllerError(Exception):
    """Base of every error the controller reports to a caller."""

    code = "INTERNAL"
    """The status a caller is told, by its gRPC name."""


class InvalidArgument(ControllerError):
    """A bad stack file, count, signal or request shape."""

    code = "INVALID_ARGUMENT"


class NotFound(ControllerError):
    """An unknown watcher."""

    code = "NOT_FOUND"


class Conflict(ControllerError):
    """The desired state is no longer what the request was made against."""

    code = "ABORTED"


class ResourceExhausted(ControllerError):
    """The caller holds as much as it may (follow streams, say)."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(ControllerError):
    """The controller cannot serve the request now (not ready, fenced out)."""

    code = "UNAVAILABLE"


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
