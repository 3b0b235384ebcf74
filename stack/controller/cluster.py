"""The group of controllers one belongs to, as `stackctl controllers` shows it.

A controller on the embedded store is a group of one; on etcd, ha.py describes the
group from the leader key, the roster and each store member's health. The admin
service turns the answer into its reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ControllerInfo:
    """One controller of the group."""

    controller_id: str
    address: str
    leader: bool
    version: str


@dataclass(frozen=True)
class StoreMember:
    """One member of the store, as a client sees it."""

    endpoint: str
    healthy: bool
    error: str = ""


@dataclass(frozen=True)
class ClusterView:
    """Every controller, which one leads with which fencing token, and the store's health."""

    leader_address: str
    fencing_token: int
    store: str
    """"sqlite" or "etcd"."""
    answered_by: str
    """The id of the controller that answered."""
    controllers: tuple[ControllerInfo, ...]
    members: tuple[StoreMember, ...]


class Cluster(Protocol):
    """The group of controllers this one belongs to (see ha.py)."""

    async def describe(self) -> ClusterView: ...
