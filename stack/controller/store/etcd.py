"""The etcd store: the controller's desired state in an etcd cluster, fenced by the leader key.

Several controllers share one etcd cluster for high availability. Only the
leader writes, and etcd itself enforces that: every commit is one transaction
that compares the leader key's create revision (the fencing token, see
`stack.controller.election`) with the writer's token, so a controller that lost
its lease (paused, partitioned) cannot write even before it learns it lost.

Layout under the prefix (default `/stack`):
    {prefix}/leader        the leader key: the leader's advertised address, on its lease
    {prefix}/kv/{key}      one store record per key (`stack/desired/...`)
    {prefix}/events/seq/N  one event of the history, N its seq in 20 digits
    {prefix}/events/next   the event numbers' reservation

Events go through a client of their own, so an event batch never queues an admin
commit behind it on this side; followers watch only `kv/`.

Its clients come from etcd_client.py, which translates failures (StoreError naming
the endpoints when no member answers in time; nothing hangs).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from pyetcd import exceptions as etcd_exceptions
from pyetcd.events import DeleteEvent

from stack.controller.events import EventWrite, StoredEvents
from stack.controller.store.base import StaleTerm, StoreError
from stack.controller.store.etcd_client import (
    REQUEST_TIMEOUT,
    UNREACHABLE,
    EndpointHealth,
    EtcdTls,
    call,
    connect,
    describe,
    fail_current,
    leader_key,
    probe_endpoints,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PREFIX = "/stack"
WATCH_RETRY = 0.2
"""Seconds between attempts to re-establish a broken watch."""


@dataclass(frozen=True)
class Snapshot:
    """Every record under a prefix, as of one etcd revision."""

    records: dict[str, bytes]
    revision: int


@dataclass(frozen=True)
class WatchUpdate:
    """What changed under a watched prefix.

    With `reset` False, `changes` maps each changed key to its new value (None:
    deleted) at `revision`. With `reset` True the history the watch needed was
    compacted away, so `changes` is the whole prefix reloaded at `revision`:
    replace the local copy with it.
    """

    revision: int
    changes: dict[str, bytes | None]
    reset: bool = False


class EtcdStore:
    """A `Store` in etcd, fenced by the leader key's create revision.

    The controller's `Election` (election.py) wins the leader key; its token is the
    term every `commit` passes, and a commit succeeds only while the leader key
    still has the create revision the writer was given.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = REQUEST_TIMEOUT,
        tls: EtcdTls | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self.tls = tls
        self.leader_key = leader_key(self.prefix)
        self._kv = f"{self.prefix}/kv/"
        self._events = f"{self.prefix}/events/"
        self._lock = threading.Lock()
        self._client = connect(self.endpoints, timeout, tls)
        self._events_lock = threading.Lock()
        self._events_client: Any = None
        """Created at the first event read or write (only a leader needs it)."""

    # ---- Store ----

    def load(self, prefix: str) -> dict[str, bytes]:
        return self.snapshot(prefix).records

    def snapshot(self, prefix: str) -> Snapshot:
        """`load`, with the etcd revision it was read at: where a watch should start from."""
        response = self._call("read", lambda: self._client.get_prefix_response(self._kv + prefix))
        cut = len(self._kv)
        records = {kv.key.decode()[cut:]: bytes(kv.value) for kv in response.kvs}
        return Snapshot(records, int(response.header.revision))

    def commit(self, term: int, puts: Mapping[str, bytes], deletes: Collection[str]) -> None:
        tx = self._client.transactions
        ops = [tx.delete(self._kv + key) for key in deletes if key not in puts]
        ops += [tx.put(self._kv + key, value) for key, value in puts.items()]
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._client.transaction(
                compare=[tx.create(self.leader_key) == term],
                success=ops,
                failure=[tx.get(self.leader_key)],
            )

        # etcd caps operations per transaction (--max-txn-ops, default 128): say how many.
        succeeded, responses = self._call(f"commit of {len(ops)} changes", attempt)
        if not succeeded:
            # `call` tries again only after an attempt got no answer, which etcd may
            # have applied all the same.
            raise StaleTerm(_stale(term, responses), maybe_written=attempts > 1)

    def load_events(self) -> StoredEvents:
        response = self._event_call(
            "read of the events", lambda client: client.get_prefix_response(self._events)
        )
        records: dict[int, bytes] = {}
        next_seq = 0
        for kv in response.kvs:
            name = kv.key.decode()[len(self._events) :]
            if name == "next":
                next_seq = int(kv.value)
            elif name.startswith("seq/") and name[4:].isdigit():
                records[int(name[4:])] = bytes(kv.value)
        return StoredEvents(records, next_seq)

    def write_events(self, term: int, write: EventWrite) -> None:
        def transaction(client: Any) -> tuple[bool, Any]:
            tx = client.transactions
            ops = [tx.delete(self._event_key(seq)) for seq in write.deletes]
            ops += [tx.put(self._event_key(seq), record) for seq, record in write.puts.items()]
            ops.append(tx.put(self._events + "next", str(write.next_seq)))
            return client.transaction(  # type: ignore[no-any-return]
                compare=[tx.create(self.leader_key) == term],
                success=ops,
                failure=[tx.get(self.leader_key)],
            )

        succeeded, responses = self._event_call(f"write of {len(write)} event changes", transaction)
        if not succeeded:
            raise StaleTerm(_stale(term, responses))

    def close(self) -> None:
        with self._lock:
            self._client.close()
        with self._events_lock:
            if self._events_client is not None:
                self._events_client.close()

    # ---- beyond Store: followers and `stackctl controllers` ----

    def compact(self, revision: int) -> None:
        """Drop the history before `revision` (etcd keeps every revision until compacted)."""
        self._call("compact", lambda: self._client.compact(revision, physical=True))

    def watch(self, prefix: str, start_revision: int) -> StoreWatch:
        """Follow every change under `prefix` from `start_revision` on; see `StoreWatch`."""
        return StoreWatch(self, prefix, start_revision)

    def health(self) -> list[EndpointHealth]:
        """Each endpoint: does it answer a linearizable read (up, and its cluster has quorum)?"""
        return probe_endpoints(self.endpoints, self.timeout, self.tls)

    # ---- internals ----

    def _call(self, what: str, request: Callable[[], T]) -> T:
        with self._lock:
            return call(self._client, self.endpoints, what, request)

    def _event_call(self, what: str, request: Callable[[Any], T]) -> T:
        with self._events_lock:
            if self._events_client is None:
                self._events_client = connect(self.endpoints, self.timeout, self.tls)
            client = self._events_client
            return call(client, self.endpoints, what, lambda: request(client))

    def _event_key(self, seq: int) -> str:
        return f"{self._events}seq/{seq:020d}"


def _stale(term: int, responses: Any) -> str:
    """Why a fenced transaction failed, from its failure branch (a get of the leader key)."""
    current = responses[0][0][1].create_revision if responses and responses[0] else 0
    now = f"the leader key now has token {current}" if current else "there is no leader"
    return f"fencing token {term} is stale: {now}"


class StoreWatch:
    """A resumable watch on a prefix: iterate it (blocking, from a thread) for `WatchUpdate`s.

    It survives a broken connection by watching again from the revision after
    the last one it delivered, on whichever member answers; when etcd has
    compacted that revision away it reloads the prefix and yields a reset.
    `close()` (from any thread) ends the iteration. Its own etcd client keeps
    it independent of the store's requests.
    """

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int) -> None:
        self._store = store
        self._key = store._kv + prefix
        self._cut = len(store._kv)
        self.prefix = prefix
        self.next_revision = start_revision
        """The first revision not delivered yet."""
        self._client = connect(store.endpoints, store.timeout, store.tls)
        self._closed = threading.Event()
        self._cancel: Callable[[], None] | None = None
        self._cancel_lock = threading.Lock()

    def __iter__(self) -> Iterator[WatchUpdate]:
        while not self._closed.is_set():
            try:
                yield from self._stream()
            except etcd_exceptions.RevisionCompactedError as exc:
                log.info(
                    "watch of %s: revision %d compacted, reloading",
                    self.prefix,
                    exc.compacted_revision,
                )
                reset = self._reload()
                if reset is not None:
                    yield reset
            except (*UNREACHABLE, grpc.RpcError) as exc:
                log.info(
                    "watch of %s broke (%s); resuming at revision %d",
                    self.prefix,
                    describe(exc),
                    self.next_revision,
                )
                fail_current(self._client)
                self._closed.wait(WATCH_RETRY)

    def close(self) -> None:
        self._closed.set()
        with self._cancel_lock:
            cancel = self._cancel
        if cancel is not None:
            with contextlib.suppress(Exception):
                cancel()
        self._client.close()

    def _stream(self) -> Iterator[WatchUpdate]:
        responses, cancel = self._client.watch_prefix_response(
            self._key, start_revision=self.next_revision
        )
        with self._cancel_lock:
            self._cancel = cancel
        if self._closed.is_set():
            cancel()
        for response in responses:
            if not response.events:
                continue
            changes: dict[str, bytes | None] = {}
            for event in response.events:
                key = event.key.decode()[self._cut :]
                changes[key] = None if isinstance(event, DeleteEvent) else bytes(event.value)
            revision = int(response.events[-1].mod_revision)
            self.next_revision = revision + 1
            yield WatchUpdate(revision, changes)
        # The stream ended without an error: pyetcd closed it (member switch) or we did.
        if not self._closed.is_set():
            self._closed.wait(WATCH_RETRY)

    def _reload(self) -> WatchUpdate | None:
        while not self._closed.is_set():
            try:
                snapshot = self._store.snapshot(self.prefix)
            except StoreError as exc:
                log.info("watch of %s: reload failed (%s), retrying", self.prefix, exc)
                self._closed.wait(WATCH_RETRY)
                continue
            self.next_revision = snapshot.revision + 1
            return WatchUpdate(snapshot.revision, dict(snapshot.records), reset=True)
        return None
