"""Which controllers share an etcd prefix: each says where it is, on a lease of its own.

Every controller, leader or follower, keeps `{prefix}/controllers/{id}` alive with
its advertised address and version; the entry vanishes with its lease when the
controller dies. `stackctl controllers` lists them beside the leader key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import stack
from stack.controller.store.base import StoreError
from stack.controller.store.etcd_client import REQUEST_TIMEOUT, EtcdTls, call, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One controller as it registered itself."""

    controller_id: str
    address: str
    version: str


class Roster:
    """This controller's entry in the roster, and a reader of everyone's."""

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str,
        controller_id: str,
        address: str,
        ttl: float,
        timeout: float = REQUEST_TIMEOUT,
        tls: EtcdTls | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.prefix = f"{prefix.rstrip('/')}/controllers/"
        self.key = self.prefix + controller_id
        self.value = json.dumps(
            {"controller_id": controller_id, "address": address, "version": stack.__version__}
        )
        self.ttl = max(1, math.ceil(ttl))
        self._client = connect(self.endpoints, timeout, tls)
        self._lock = threading.Lock()

    async def run(self) -> None:
        """Keep our entry alive for as long as this runs (re-registering after an outage)."""
        lease_id: int | None = None
        while True:
            try:
                if lease_id is None:
                    lease_id = await asyncio.to_thread(self._register)
                elif not await asyncio.to_thread(self._refresh, lease_id):
                    lease_id = None
                    continue
            except StoreError as exc:
                log.warning("cannot keep this controller in the roster: %s", exc)
                lease_id = None
            await asyncio.sleep(self.ttl / 3)

    async def members(self) -> list[Member]:
        """Every registered controller, by id."""
        return await asyncio.to_thread(self._members)

    def close(self) -> None:
        self._client.close()

    def _register(self) -> int:
        with self._lock:
            lease = call(
                self._client, self.endpoints, "roster lease", lambda: self._client.lease(self.ttl)
            )
            call(
                self._client,
                self.endpoints,
                "roster entry",
                lambda: self._client.put(self.key, self.value, lease=lease.id),
            )
        return int(lease.id)

    def _refresh(self, lease_id: int) -> bool:
        """Renew our lease; False once it has expired (register again)."""
        with self._lock:
            replies = call(
                self._client,
                self.endpoints,
                "roster keepalive",
                lambda: list(self._client.refresh_lease(lease_id)),
            )
        return bool(replies) and int(replies[0].TTL) > 0

    def _members(self) -> list[Member]:
        with self._lock:
            found = call(
                self._client,
                self.endpoints,
                "roster read",
                lambda: list(self._client.get_prefix(self.prefix)),
            )
        members = []
        for value, _ in found:
            try:
                data = json.loads(bytes(value))
                members.append(Member(data["controller_id"], data["address"], data["version"]))
            except (ValueError, KeyError, TypeError):
                continue  # not ours to judge; skip what we cannot read
        return sorted(members, key=lambda member: member.controller_id)
