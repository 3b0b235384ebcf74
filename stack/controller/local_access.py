"""Who may use the controller's local socket, decided from the peer's credentials.

The kernel already keeps other users off the socket by its permissions (see
stack.security.local). This is the second lock, for the day an operator loosens those
by mistake (a `chmod 666` on the socket, a 0755 data dir): the controller reads each
connection's SO_PEERCRED and lets it through only when its uid is root's, the
controller's own, or that of a user in `--socket-group` (by the account's primary group
or a supplementary one, looked up when the connection comes in, so a membership change
counts from the next connection).

Pure: the group lookup is passed in, and the refusal log's clock too. The relay that
applies it lives in local_relay.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from stack.controller.containment import TokenBucket


@dataclass(frozen=True)
class PeerCredentials:
    """What the kernel says about the process at the other end of a connection
    (SO_PEERCRED: its ids when it connected)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class LocalAccess:
    """Who may use the local socket, and how much of the controller one uid may hold."""

    owner_uid: int
    """The controller's own uid (root is always allowed too)."""
    group: int | None = None
    """--socket-group: a gid whose members are allowed; None for none."""
    max_connections_per_uid: int = 64
    """Connections one uid may hold open at once (stackctl takes one per run, a local
    agent one, `logs -f` one): a broken client looping on connect stops there."""
    buffer_bytes: int = 64 * 1024
    """Bytes relayed one way and not yet taken by the other end, after which the relay
    stops reading from the sender until the receiver catches up."""
    refusals_per_second: float = 1.0
    """Refusal lines logged per second at most (bursts of `refusals_burst`); the others
    are counted and the count told by the next line logged."""
    refusals_burst: int = 5


def allowed(uid: int, access: LocalAccess, groups_of: Callable[[int], Collection[int]]) -> bool:
    """Whether `uid` may use the socket. `groups_of(uid)` gives the gids of the uid's
    account (primary and supplementary; none when there is no such account), and is
    asked only when the group decides."""
    if uid in (0, access.owner_uid):
        return True
    if access.group is None:
        return False
    return access.group in groups_of(uid)


class RefusalLog:
    """Whether a refusal gets its own log line: a local user who connects in a loop
    must not fill the controller's log. Counts the refusals it keeps quiet about."""

    def __init__(self, access: LocalAccess) -> None:
        self._bucket = TokenBucket(access.refusals_per_second, access.refusals_burst)
        self._quiet = 0

    def note(self, now: float) -> int | None:
        """A refusal at `now`: None to log nothing, else how many went unlogged since
        the last line (to tell with this one)."""
        if not self._bucket.take(1, now):
            self._quiet += 1
            return None
        quiet, self._quiet = self._quiet, 0
        return quiet
