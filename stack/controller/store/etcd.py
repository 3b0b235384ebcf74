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

Failures are translated at this edge: an unreachable member fails over to the
next endpoint; when none answers within the timeouts (members down, quorum
lost) the call raises `StoreError` naming the endpoints. Nothing hangs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pyetcd
from pyetcd import exceptions as etcd_exceptions
from pyetcd.events import DeleteEvent

from stack.controller.store.base import EventWrite, StaleTerm, StoredEvents, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PREFIX = "/stack"
REQUEST_TIMEOUT = 3.0
"""Seconds one store operation may take, retries included: a member without quorum never
answers, this bounds it. Each attempt gets a third of it (at least 0.5 s): a request caught in
a raft leader change hangs until its own timeout, and the retry then succeeds at once."""
RETRY_FAILED_ENDPOINT = 1.0
"""Seconds a member that failed is skipped before the client tries it again."""
WATCH_RETRY = 0.2
"""Seconds between attempts to re-establish a broken watch."""

_CHANNEL_OPTIONS = [
    # A restarted member is back in use within a second, not after gRPC's 2-minute backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # etcd refuses pings more often than every 5 s; this still notices a silently dead peer.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]

# pyetcd's errors for "this member did not answer": pyetcd marks it failed, try another.
_UNREACHABLE = (
    etcd_exceptions.ConnectionFailedError,
    etcd_exceptions.ConnectionTimeoutError,
    etcd_exceptions.NoServerAvailableError,
    etcd_exceptions.InternalServerError,
)
# Raw gRPC codes pyetcd passes through that still mean "no answer from this member"
# ("context deadline exceeded" from a member without quorum comes back as UNKNOWN).
_UNREACHABLE_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE)


def leader_key(prefix: str) -> str:
    """The election key under `prefix`; its create revision is the fencing token."""
    return f"{prefix}/leader"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) -> (host, port)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class EtcdTls:
    """TLS to etcd: the CA its members' certificates are signed by, and our client
    certificate and key when etcd asks for one (--client-cert-auth)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC credentials from the files; StoreError (one line) if one cannot be read."""
        try:
            ca = self.ca.read_bytes()
            cert = self.cert.read_bytes() if self.cert is not None else None
            key = self.key.read_bytes() if self.key is not None else None
        except OSError as exc:
            raise StoreError(f"etcd TLS: cannot read {exc.filename}: {exc.strerror}") from None
        return grpc.ssl_channel_credentials(ca, key, cert)


def connect(
    endpoints: Sequence[str], timeout: float = REQUEST_TIMEOUT, tls: EtcdTls | None = None
) -> Any:
    """A pyetcd client over every endpoint, failing over between them, first one preferred.

    Plain-text gRPC unless `tls`; each operation through `call` is bounded by `timeout`.
    """
    if not endpoints:
        raise StoreError("no etcd endpoint given")
    credentials = tls.credentials() if tls is not None else None
    eps = [
        pyetcd.Endpoint(
            *split_endpoint(endpoint),
            secure=credentials is not None,
            creds=credentials,
            time_retry=RETRY_FAILED_ENDPOINT,
            opts=_CHANNEL_OPTIONS,
        )
        for endpoint in endpoints
    ]
    client = pyetcd.MultiEndpointEtcd3Client(eps, timeout=timeout, failover=True)
    client.budget = timeout
    # Deterministic instead of pyetcd's random pick: operators list the nearest member first.
    client._current_endpoint_label = eps[0].netloc
    return client


def describe(exc: BaseException) -> str:
    """One line for an etcd or gRPC failure."""
    if isinstance(exc, etcd_exceptions.NoServerAvailableError):
        return "no member answered"
    if isinstance(exc, grpc.RpcError):
        details = getattr(exc, "details", lambda: None)()
        return str(details or getattr(exc, "code", lambda: "gRPC error")())
    return str(exc) or type(exc).__name__


def call(client: Any, endpoints: Sequence[str], what: str, request: Callable[[], T]) -> T:
    """Run `request`, retrying on other members for up to one request timeout; else StoreError.

    pyetcd marks a member failed after an unreachable/timeout error and picks
    another for the next request; this makes that next request, with a short
    backoff, so a failover or a raft leader election (a fraction of a second of
    "no leader") is ridden out. Requests are idempotent (reads, or fenced
    transactions writing the same values again), so retrying after an
    ambiguous timeout is safe. Callers serialize requests on one client: the
    per-attempt timeout is set on it.
    """
    budget: float = client.budget
    deadline = time.monotonic() + budget
    backoff = 0.05
    while True:
        client.timeout = max(0.05, min(max(0.5, budget / 3), deadline - time.monotonic()))
        try:
            return request()
        except _UNREACHABLE as exc:
            last: BaseException = exc
        except grpc.RpcError as exc:
            code = getattr(exc, "code", lambda: None)()
            if code not in _UNREACHABLE_CODES:
                raise StoreError(f"etcd refused {what}: {describe(exc)}") from exc
            last = exc
            _fail_current(client)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, 0.4)
        if isinstance(last, etcd_exceptions.NoServerAvailableError):
            _forgive_all(client)  # every member failed once: try them all again
    raise StoreError(f"etcd unreachable at {','.join(endpoints)}: {what}: {describe(last)}")


def _forgive_all(client: Any) -> None:
    for endpoint in client.endpoints.values():
        endpoint.last_failed = 0


def _fail_current(client: Any) -> None:
    """Mark the member in use failed, as pyetcd does itself for UNAVAILABLE."""
    with contextlib.suppress(Exception):
        client.endpoint_in_use.fail()
        client._clear_old_stubs()


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


@dataclass(frozen=True)
class EndpointHealth:
    """One etcd member as a client sees it."""

    endpoint: str
    healthy: bool
    error: str = ""


class EtcdStore:
    """A `Store` in etcd, fenced by the leader key's create revision.

    `acquire_term()` is for a controller that runs without the HA election: it
    campaigns for the leader key through an `Election` that this store keeps
    alive on a private thread until `close()`, and returns that election's token.
    An HA controller runs its own `Election` and passes its token to `commit`.
    Either way a commit succeeds only while the leader key still has the
    create revision the writer was given.
    """

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
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self.tls = tls
        self.lease_ttl = lease_ttl
        self.advertise = advertise or socket.gethostname()
        """The leader key's value while `acquire_term`'s election holds it."""
        self.leader_key = leader_key(self.prefix)
        self._kv = f"{self.prefix}/kv/"
        self._events = f"{self.prefix}/events/"
        self._lock = threading.Lock()
        self._client = connect(self.endpoints, timeout, tls)
        self._events_lock = threading.Lock()
        self._events_client: Any = None
        """Created at the first event read or write (only a leader needs it)."""
        self._holder: Any = None

    # ---- Store ----

    def acquire_term(self) -> int:
        """Campaign for the leader key (waiting up to 3 lease TTLs for it) and return the token.

        A second call resigns first, so it always returns a higher token and
        makes the previous one stale, as with the SQLite store.
        """
        from stack.controller.election import StandaloneLeader

        self._release()
        holder = StandaloneLeader(
            self.endpoints, self.leader_key, self.lease_ttl, self.timeout, self.advertise, self.tls
        )
        token = holder.start(timeout=3 * self.lease_ttl + self.timeout)
        self._holder = holder
        return token

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
        # etcd caps operations per transaction (--max-txn-ops, default 128): say how many.
        succeeded, responses = self._call(
            f"commit of {len(ops)} changes",
            lambda: self._client.transaction(
                compare=[tx.create(self.leader_key) == term],
                success=ops,
                failure=[tx.get(self.leader_key)],
            ),
        )
        if not succeeded:
            raise StaleTerm(_stale(term, responses))

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
        self._release()
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

    def _release(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.stop()


def _stale(term: int, responses: Any) -> str:
    """Why a fenced transaction failed, from its failure branch (a get of the leader key)."""
    current = responses[0][0][1].create_revision if responses and responses[0] else 0
    now = f"the leader key now has token {current}" if current else "there is no leader"
    return f"fencing token {term} is stale: {now}"


def probe_endpoints(
    endpoints: Sequence[str], timeout: float, tls: EtcdTls | None = None
) -> list[EndpointHealth]:
    """Probe every endpoint at once, so dead members cost one short timeout, not one each."""
    timeout = max(0.5, timeout / 3)
    with concurrent.futures.ThreadPoolExecutor(len(endpoints)) as pool:
        return list(pool.map(lambda endpoint: _probe(endpoint, timeout, tls), endpoints))


def _probe(endpoint: str, timeout: float, tls: EtcdTls | None) -> EndpointHealth:
    try:
        client = connect([endpoint], timeout, tls)
    except StoreError as exc:
        return EndpointHealth(endpoint, False, str(exc))
    try:
        client.get("health")
    except Exception as exc:  # any failure is this member's health, reported not raised
        return EndpointHealth(endpoint, False, describe(exc))
    finally:
        client.close()
    return EndpointHealth(endpoint, True)


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
            except (*_UNREACHABLE, grpc.RpcError) as exc:
                log.info(
                    "watch of %s broke (%s); resuming at revision %d",
                    self.prefix,
                    describe(exc),
                    self.next_revision,
                )
                _fail_current(self._client)
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
