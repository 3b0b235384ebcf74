"""The etcd client every etcd user of the controller shares: connect, call, fail over.

The store (store/etcd.py), the election (election.py) and the roster (roster.py) each
hold clients made here, so none of them imports another. Failures are translated at
this edge: an unreachable member fails over to the next endpoint; when none answers
within the timeouts (members down, quorum lost) `call` raises StoreError naming the
endpoints. Nothing hangs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pyetcd
from pyetcd import exceptions as etcd_exceptions

from stack.controller.store.base import StoreError

T = TypeVar("T")

REQUEST_TIMEOUT = 3.0
"""Seconds one store operation may take, retries included: a member without quorum never
answers, this bounds it. Each attempt gets a third of it (at least 0.5 s): a request caught in
a raft leader change hangs until its own timeout, and the retry then succeeds at once."""
RETRY_FAILED_ENDPOINT = 1.0
"""Seconds a member that failed is skipped before the client tries it again."""

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
UNREACHABLE = (
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


class _Client(pyetcd.MultiEndpointEtcd3Client):  # type: ignore[misc]
    """pyetcd's failover client, holding one connection: the member it leaves is closed.

    pyetcd keeps a channel per member for the client's life and never closes the one it
    fails over from; that one reconnects when the member is back and stays connected,
    unused. After one etcd outage every client held a connection to every member (a
    controller's sockets doubled). The channel left behind is replaced by a fresh one,
    which connects only if the client comes back to that member.
    """

    @property
    def _current_endpoint_label(self) -> str | None:
        return getattr(self, "_current_ep_label", None)

    @_current_endpoint_label.setter
    def _current_endpoint_label(self, label: str | None) -> None:
        left = self._current_endpoint_label
        # pyetcd's own setter drops the stubs (and the watcher) on the old channel.
        pyetcd.MultiEndpointEtcd3Client._current_endpoint_label.fset(self, label)
        if left is not None and left != label:
            endpoint = self.endpoints[left]
            endpoint.channel.close()
            endpoint.channel = endpoint._mkchannel(_CHANNEL_OPTIONS)


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
    client = _Client(eps, timeout=timeout, failover=True)
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
        except UNREACHABLE as exc:
            last: BaseException = exc
        except grpc.RpcError as exc:
            code = getattr(exc, "code", lambda: None)()
            if code not in _UNREACHABLE_CODES:
                raise StoreError(f"etcd refused {what}: {describe(exc)}") from exc
            last = exc
            fail_current(client)
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


def fail_current(client: Any) -> None:
    """Mark the member in use failed, as pyetcd does itself for UNAVAILABLE."""
    with contextlib.suppress(Exception):
        client.endpoint_in_use.fail()
        client._clear_old_stubs()


@dataclass(frozen=True)
class EndpointHealth:
    """One etcd member as a client sees it."""

    endpoint: str
    healthy: bool
    error: str = ""


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
