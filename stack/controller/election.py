"""Leader election on etcd: one controller leads, the others stand by.

Leadership is a key (`{prefix}/leader`) bound to a lease and holding the
leader's advertised address. It is won first-come-first-served by a
transaction that puts the key only while its create revision is 0 (absent);
that create revision is the fencing token, which the etcd store compares in
every commit and every Assignment carries.

A leader steps down on its own deadline: the time it sent its last successful
keepalive, plus the lease TTL, minus a margin. It reads a monotonic clock, so
it steps down even when etcd is unreachable and it cannot learn that it lost;
by then etcd may give the key to another controller, never earlier.

Built for asyncio: blocking pyetcd calls run in threads (`asyncio.to_thread`),
each bounded by a request timeout; the deadline is enforced by the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from stack import aio
from stack.controller.store.base import StoreError
from stack.controller.store.etcd_client import (
    REQUEST_TIMEOUT,
    EndpointHealth,
    EtcdTls,
    call,
    connect,
    probe_endpoints,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class Leader:
    """Who leads: what followers redirect to, and the token its writes carry."""

    address: str
    token: int


class Election:
    """Campaign for, hold, and give up the leader key.

    `lead(work)` is the usual entry point: it waits to win, runs `work(token)`
    while the lease is kept alive, and cancels `work` the moment leadership is
    lost. The parts (`campaign`, `keep_alive`, `resign`) are public for callers
    that structure it differently.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        key: str,
        advertise: str,
        lease_ttl: float = 5.0,
        *,
        margin: float | None = None,
        timeout: float = REQUEST_TIMEOUT,
        clock: Clock = time.monotonic,
        tls: EtcdTls | None = None,
    ) -> None:
        if lease_ttl < 1.0:
            raise ValueError(f"lease TTL {lease_ttl}s is too short: etcd leases last 1 s or more")
        self.endpoints = list(endpoints)
        self.key = key
        self.advertise = advertise
        self.lease_ttl = lease_ttl
        self.margin = lease_ttl / 5 if margin is None else margin
        """Step down this long before the lease can expire on etcd."""
        self.interval = lease_ttl / 3
        """Seconds between keepalives."""
        self.poll_interval = min(0.25, lease_ttl / 4)
        """Seconds between looks at the leader key while another controller holds it."""
        self._clock = clock
        # Keepalives get their own client, so a slow read never delays them. The
        # deadline, not this timeout, bounds how long a stuck keepalive can take.
        self.tls = tls
        self._client = connect(self.endpoints, timeout, tls)
        self._reader = connect(self.endpoints, timeout, tls)
        self._client_lock = threading.Lock()
        self._reader_lock = threading.Lock()
        self._lease_id: int | None = None
        self.token: int | None = None
        """Our fencing token while we lead (or believe we do), else None."""
        self.deadline = 0.0
        """Monotonic time by which we step down unless a keepalive succeeds."""
        self.lost = asyncio.Event()
        """Set when leadership is lost (deadline passed, lease expired, key taken, resigned)."""

    # ---- campaign, hold, resign ----

    async def campaign(self) -> int:
        """Wait until we hold the leader key; return the fencing token."""
        self.lost.clear()
        while True:
            won = await asyncio.to_thread(self._try_win)
            if won is not None:
                self.token = won
                log.info("won the election for %s: token %d", self.key, won)
                return won
            await asyncio.sleep(self.poll_interval)

    async def keep_alive(self) -> None:
        """Renew the lease every TTL/3 until leadership is lost; then set `lost` and return.

        Cancelling it stops the keepalives but keeps the token, so `resign` can
        still delete the key.
        """
        reason = await self._hold()
        self.token = None
        self.lost.set()
        log.warning("stepped down from %s: %s", self.key, reason)

    async def lead(self, work: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        """Win, run `work(token)` while leading, and return when leadership is lost.

        `work` is cancelled as soon as the deadline passes (leader-only loops
        run in one task group that stepping down cancels). If `work` returns or
        raises first, we resign so another controller can take over at once.
        """
        token = await self.campaign()
        try:
            await aio.race(election_keepalive=self.keep_alive(), leader_work=work(token))
        finally:
            with contextlib.suppress(StoreError):
                await asyncio.shield(self.resign())

    async def resign(self) -> None:
        """Give up leadership: delete the key only if it is still ours, revoke the lease."""
        token, lease_id = self.token, self._lease_id
        self.token, self._lease_id = None, None
        self.lost.set()
        if token is not None or lease_id is not None:
            await asyncio.to_thread(self._give_up, token, lease_id)

    # ---- for followers and `stackctl controllers` ----

    async def leader(self) -> Leader | None:
        """The current leader's address and token, or None when nobody leads."""
        return await asyncio.to_thread(self._read)

    async def health(self) -> list[EndpointHealth]:
        """Each etcd endpoint: healthy, or why not."""
        return await asyncio.to_thread(self._health)

    async def depose(self, leader: Leader) -> bool:
        """Take the key from a leader known to be dead (its process is gone), without
        waiting for its lease to run out: delete the key only if it still has that
        token. True if deleted. A leader that was alive after all finds its key gone
        at its next keepalive and steps down; fencing keeps its writes out."""
        return await asyncio.to_thread(self._depose, leader.token)

    def close(self) -> None:
        """Release the clients (call `resign` first to hand over at once)."""
        self._client.close()
        self._reader.close()

    # ---- the keepalive loop ----

    async def _hold(self) -> str:
        """Keep the lease alive; return why leadership ended."""
        assert self._lease_id is not None and self.token is not None
        token, lease_id = self.token, self._lease_id
        while True:
            remaining = self.deadline - self._clock()
            if remaining <= 0:
                return "no successful keepalive before the deadline"
            sent = self._clock()
            try:
                renewed = await self._within(remaining, self._renew, lease_id)
            except StoreError as exc:
                log.warning("keepalive failed, retrying until the deadline: %s", exc)
                await self._pause(self.interval / 2)
                continue
            if renewed is None:
                return "no successful keepalive before the deadline"
            ttl, holder = renewed
            if ttl <= 0:
                return "the lease expired"
            if holder != token:
                return f"the leader key now has token {holder}" if holder else "the key is gone"
            self.deadline = sent + min(float(ttl), self.lease_ttl) - self.margin
            await self._pause(self.interval)

    @staticmethod
    async def _within(
        seconds: float, blocking: Callable[[int], tuple[int, int]], arg: int
    ) -> tuple[int, int] | None:
        """`blocking(arg)` in a thread; None if it takes longer than `seconds` (what it
        ends with later is dropped)."""
        future = asyncio.get_running_loop().run_in_executor(None, blocking, arg)
        return future.result() if await aio.finished_within(future, seconds) else None

    async def _pause(self, seconds: float) -> None:
        """Sleep, but never past the deadline."""
        await asyncio.sleep(max(0.0, min(seconds, self.deadline - self._clock())))

    # ---- blocking etcd operations (run in threads) ----

    def _try_win(self) -> int | None:
        """One attempt: if the key is free, put it on a fresh lease. The token, or None."""
        if self._read() is not None:
            return None
        started = self._clock()
        with self._client_lock:
            lease = call(
                self._client,
                self.endpoints,
                "lease grant",
                lambda: self._client.lease(math.ceil(self.lease_ttl)),
            )
            tx = self._client.transactions
            succeeded, responses = call(
                self._client,
                self.endpoints,
                "campaign",
                lambda: self._client.transaction(
                    compare=[tx.create(self.key) == 0],
                    success=[tx.put(self.key, self.advertise, lease=lease.id), tx.get(self.key)],
                    failure=[],
                ),
            )
            if not succeeded:
                with contextlib.suppress(Exception):
                    self._client.revoke_lease(lease.id)
                return None
        self._lease_id = lease.id
        self.deadline = started + min(float(lease.ttl), self.lease_ttl) - self.margin
        return int(responses[1][0][1].create_revision)

    def _renew(self, lease_id: int) -> tuple[int, int]:
        """Refresh the lease; return (its TTL now, 0 if expired; the key's create revision)."""
        with self._client_lock:
            replies = call(
                self._client,
                self.endpoints,
                "lease keepalive",
                lambda: list(self._client.refresh_lease(lease_id)),
            )
            _, meta = call(self._client, self.endpoints, "read", lambda: self._client.get(self.key))
        ttl = int(replies[0].TTL) if replies else 0
        return ttl, int(meta.create_revision) if meta is not None else 0

    def _give_up(self, token: int | None, lease_id: int | None) -> None:
        with self._client_lock:
            if token is not None:
                tx = self._client.transactions
                call(
                    self._client,
                    self.endpoints,
                    "resign",
                    lambda: self._client.transaction(
                        compare=[tx.create(self.key) == token],
                        success=[tx.delete(self.key)],
                        failure=[],
                    ),
                )
            if lease_id is not None:
                # Revoking also deletes the key if it is still on this lease.
                call(self._client, self.endpoints, "lease revoke", lambda: self._revoke(lease_id))

    def _depose(self, token: int) -> bool:
        with self._client_lock:
            tx = self._client.transactions
            succeeded, _ = call(
                self._client,
                self.endpoints,
                "depose",
                lambda: self._client.transaction(
                    compare=[tx.create(self.key) == token],
                    success=[tx.delete(self.key)],
                    failure=[],
                ),
            )
        return bool(succeeded)

    def _revoke(self, lease_id: int) -> None:
        try:
            self._client.revoke_lease(lease_id)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # already expired: nothing to give up
                raise

    def _read(self) -> Leader | None:
        with self._reader_lock:
            value, meta = call(
                self._reader, self.endpoints, "read leader", lambda: self._reader.get(self.key)
            )
        if meta is None:
            return None
        return Leader(bytes(value).decode(errors="replace"), int(meta.create_revision))

    def _health(self) -> list[EndpointHealth]:
        return probe_endpoints(self.endpoints, self._reader.timeout, self.tls)
