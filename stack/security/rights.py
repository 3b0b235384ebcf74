"""What a caller of the HTTP ports (metrics and web console) may do, by who it is.

The same rule as the AdminService's (roles.py): an `admin` certificate may read and
act, a `viewer` certificate may only read, an agent's or a controller's certificate
may do neither. A plaintext port knows nobody: what its callers may do is the port's
own setting (read on a loopback metrics port, everything with --insecure).
"""

from __future__ import annotations

import enum

from stack.security.layout import Identity, Role


class Right(enum.IntEnum):
    """What a caller may do; each right includes the ones below it."""

    NONE = 0
    READ = 1
    """Metrics, status, agents, events, logs."""
    ACT = 2
    """Scale, start, stop, restart, drain too."""


_BY_ROLE = {Role.admin: Right.ACT, Role.viewer: Right.READ}


def right_of(identity: Identity | None, plaintext: Right) -> Right:
    """The right of a caller with certificate `identity` (None: a plaintext port, whose
    callers all have `plaintext`)."""
    if identity is None:
        return plaintext
    return _BY_ROLE.get(identity.role, Right.NONE)


def refusal(right: Right, needed: Right, who: str) -> str | None:
    """Why `who` (with `right`) may not do what needs `needed`; None when it may."""
    if right >= needed:
        return None
    if needed is Right.ACT and right is Right.READ:
        return f"permission denied: {who} may only read"
    return f"permission denied: {who} may not use this port"


class ExposureError(Exception):
    """A plaintext HTTP port that would expose too much; the message says what to do."""


def plaintext_right(address: str, acts: bool, insecure: bool, flag: str) -> Right:
    """What callers of a plaintext HTTP port at `address` (given as `flag`) may do, or
    ExposureError when it may not be served so.

    A metrics port (`acts` False) shows figures and names: on a loopback address it
    needs no TLS, elsewhere it needs --insecure. A console port (`acts` True) also shows
    workers' output and acts on the fleet: like the gRPC port, it is served in
    plaintext only with --insecure, and then everyone who reaches it is an admin.
    """
    from stack.security.tls_files import is_loopback

    host = address.rpartition(":")[0]
    if insecure:
        return Right.ACT if acts else Right.READ
    if acts:
        raise ExposureError(
            f"refusing to serve the web console in plaintext on {address} ({flag}): whoever "
            f"reaches it could act on the fleet and read workers' output; use --tls-dir, "
            f"or --insecure"
        )
    if not is_loopback(host):
        raise ExposureError(
            f"refusing to serve metrics in plaintext on {address} ({flag}), which is not a "
            f"loopback address; use --tls-dir, a loopback address, or --insecure"
        )
    return Right.READ
