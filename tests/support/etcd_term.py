"""An etcd store that takes its own term, for tests of the store without a controller.

A controller on etcd wins its term in an election (stack.controller.election) and
passes it to every commit. Tests of the store alone need the same thing in one
blocking call, like SqliteStore.acquire_term: `TermTakingEtcdStore.acquire_term`
campaigns for the leader key through an Election held on a private thread and event
loop, keeps its lease alive until the store is closed (or the next call resigns it),
and returns the token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

from stack import aio
from stack.controller.election import Election
from stack.controller.store.base import StoreError
from stack.controller.store.etcd import DEFAULT_PREFIX, EtcdStore
from stack.controller.store.etcd_client import REQUEST_TIMEOUT, EtcdTls

log = logging.getLogger(__name__)


class HeldLeadership:
    """An Election held on a private thread and event loop, for blocking callers:
    `start` blocks until the key is won and returns the token; the thread keeps the
    lease alive until `stop`."""

    def __init__(
        self,
        endpoints: Sequence[str],
        key: str,
        lease_ttl: float,
        timeout: float,
        advertise: str,
        tls: EtcdTls | None = None,
    ) -> None:
        self._election = Election(endpoints, key, advertise, lease_ttl, timeout=timeout, tls=tls)
        self._won: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._timeout = 0.0
        self._thread = threading.Thread(target=self._run, name=f"leader {key}", daemon=True)

    def start(self, timeout: float) -> int:
        """Campaign; the token once won, or StoreError after `timeout` seconds."""
        self._timeout = timeout
        self._thread.start()
        return self._won.result()

    def stop(self) -> None:
        """Resign and end the thread."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10.0)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        election = self._election
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    token = await election.campaign()
            except TimeoutError:
                holder = await election.leader()
                who = f"{holder.address} (token {holder.token})" if holder else "nobody"
                raise StoreError(f"etcd leader key {election.key} is held by {who}") from None
            self._won.set_result(token)
            await aio.race(election_keepalive=election.keep_alive(), stop=self._stop.wait())
        except Exception as exc:  # handed to the caller blocked in start()
            if not self._won.done():
                self._won.set_exception(exc)
            else:
                log.warning("leadership of %s ended: %s", election.key, exc)
        finally:
            with contextlib.suppress(StoreError):
                await election.resign()
            election.close()


class TermTakingEtcdStore(EtcdStore):
    """An EtcdStore with `acquire_term`, as a controller without the HA loop would hold
    one: campaign for the leader key (waiting up to 3 lease TTLs for it) and keep it
    until `close`. A second call resigns first, so it always returns a higher token and
    makes the previous one stale, as with the SQLite store."""

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = REQUEST_TIMEOUT,
        lease_ttl: float = 5.0,
        advertise: str = "",
        tls: EtcdTls | None = None,
    ) -> None:
        super().__init__(endpoints, prefix, timeout=timeout, tls=tls)
        self.lease_ttl = lease_ttl
        self.advertise = advertise or socket.gethostname()
        """The leader key's value while this store holds it."""
        self._holder: Any = None

    def acquire_term(self) -> int:
        self._release()
        holder = HeldLeadership(
            self.endpoints, self.leader_key, self.lease_ttl, self.timeout, self.advertise, self.tls
        )
        token = holder.start(timeout=3 * self.lease_ttl + self.timeout)
        self._holder = holder
        return token

    def close(self) -> None:
        self._release()
        super().close()

    def _release(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.stop()
