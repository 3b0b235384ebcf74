"""The one way stackctl talks to the controller.

A small synchronous wrapper over the AdminService stub: one gRPC channel per
invocation, a deadline on every unary call, and every `grpc.RpcError`
translated into a `CommandError` whose message is the one line stackctl prints.
The command modules never see gRPC errors or build stubs themselves. With TLS
material the channel is mutual TLS; when its handshake fails, the error says why
(unknown CA, expired, wrong name) instead of "cannot reach".

A follow (`events -f`, `logs -f`) outlives its controller: when the stream breaks or
ends after it was open, the client finds the leader again through the controller list
and resumes where it stopped (see stack.cli.resume); when no leader takes it back
within FOLLOW_GIVE_UP seconds it fails with one line, never ending quietly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

# gRPC's core logs failed TLS handshakes on stderr (several lines, at INFO);
# stackctl explains them in its own one line instead. An explicit setting wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc

from stack.cli.errors import CommandError as CommandError
from stack.cli.formats import format_seconds as format_seconds
from stack.cli.resume import EventCursor, LogCursor
from stack.security.limits import GRPC_SIZE_OPTIONS
from stack.security.local import DENIED, default_address, is_unix, refusal, unix_path
from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2

if TYPE_CHECKING:  # stack.security.tls loads cryptography: only when TLS is used
    from stack.security.tls import TlsMaterial

Reply = TypeVar("Reply")
Item = TypeVar("Item")

LEADER_KEY = "stack-leader"
"""Trailing metadata of a follower's refusal: the leader's HOST:PORT ("" during an election)."""
ANSWERED_KEY = "stack-controller"
"""Trailing metadata of every refusal a controller sends itself."""
STREAM_KEY = "stack-stream"
"""Initial metadata of a Logs or Events stream that a leader accepted."""

FOLLOW_GIVE_UP = 10.0
"""Seconds a follow that lost its stream waits for a leader to take it back."""
RECONNECT_PAUSE = 0.2
"""Seconds between a follow's attempts to reopen its stream."""
_RESUMABLE = (
    grpc.StatusCode.UNAVAILABLE,  # unreachable, or not (or no longer) the leader
    grpc.StatusCode.CANCELLED,  # a stopping controller ended the call
    grpc.StatusCode.UNKNOWN,  # the connection went away mid-stream
    grpc.StatusCode.INTERNAL,
)
"""Ends of a follow's stream that a leader elsewhere (or later) may put right."""

# Texts gRPC itself produces when it could not get a request to the server at
# all, as opposed to an UNAVAILABLE status the controller sent on purpose
# ("not the leader", "not ready yet").
_TRANSPORT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "dns resolution failed",
    "socket closed",
    "connection reset",
    "broken pipe",
    "unreachable",
    "handshake",
    "connection attempt timed out",
    "goaway",
)


# Of those, the ones that mean the request never left this machine: only these may be
# sent to another controller (a reset connection may have carried it to the leader).
_NEVER_SENT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "dns resolution failed",
    "unreachable",
    "connection attempt timed out",
)


def never_sent(error: grpc.RpcError) -> bool:
    """Whether gRPC could not even connect, so the call cannot have reached a controller."""
    if not is_transport_failure(error) or not isinstance(error, grpc.Call):
        return False
    lowered = (error.details() or "").lower()
    return any(marker in lowered for marker in _NEVER_SENT_MARKERS)


@dataclass(frozen=True)
class ClientSettings:
    """How stackctl reaches the controller."""

    address: str = field(default_factory=default_address)
    """The controller's AdminService: unix:PATH (its local socket, the default's is the
    default controller's), HOST:PORT, or several comma-separated (HA): the client
    follows the leader through followers' answers and failed controllers."""
    timeout: float = 10.0
    """Deadline in seconds for each unary call; streams that follow have none."""
    tls: TlsMaterial | None = None
    """Our checked certificate, key and CA for mutual TLS on HOST:PORT addresses; None
    for plaintext. A unix:PATH address needs none (see stack.security.local)."""


def is_transport_failure(error: grpc.RpcError) -> bool:
    """Whether gRPC could not get the call to the server at all (vs. a status it sent)."""
    if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    if any(key == ANSWERED_KEY for key, _ in error.trailing_metadata() or ()):
        return False  # the controller itself said so (not ready, store down...)
    lowered = (error.details() or "").lower()
    return not lowered or any(marker in lowered for marker in _TRANSPORT_MARKERS)


def translate_rpc_error(
    error: grpc.RpcError,
    address: str,
    timeout: float | None,
    tls_reason: Callable[[], str | None] | None = None,
) -> CommandError:
    """Turn a failed call into the one-line message the operator reads.

    `tls_reason` explains a failed connection when it was a TLS problem (see diagnose).
    """
    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else None) or ""
    if is_transport_failure(error):
        if is_unix(address):
            refused = local_refusal(address, details)
            if refused is not None:
                return refused
        reason = tls_reason() if tls_reason is not None else None
        if reason:
            return CommandError(f"TLS connection to the controller at {address} failed: {reason}")
        return CommandError(
            f"cannot reach the controller at {address} (is stack-controller running?)"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return CommandError(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f" within {format_seconds(timeout)}s" if timeout is not None else ""
        return CommandError(f"the controller at {address} did not answer{within}")
    if details:
        return CommandError(details.splitlines()[0])
    name = code.name.lower().replace("_", " ") if code is not None else "unknown error"
    return CommandError(f"the controller at {address} failed the call: {name}")


def local_refusal(address: str, details: str) -> CommandError | None:
    """Why the controller's local socket at `address` turned us away, if it did: the
    kernel (its permissions) or the controller (our credentials, or too many
    connections of ours), which sends a line saying why before it closes."""
    path = unix_path(address)
    denied = CommandError(
        f"permission denied: the controller's socket {path} is only for the controller's "
        "user and its operator group"
    )
    if "permission denied" in details.lower():
        return denied
    said = refusal(path)
    if said is None:
        return None
    kind, reason = said
    if kind == DENIED:
        return CommandError(f"{denied} (the controller refused {reason})")
    return CommandError(f"the controller at {address} refused the connection: {reason}")


LOCAL_CREDENTIALS = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
"""How stackctl dials a controller's local socket: no certificate (see stack.security.local)."""

LEADER_PROBE_TIMEOUT = 1.0
"""Seconds one controller may take to say who leads before the next is asked."""

MAX_HOPS = 6
"""Controllers tried for one call before giving up (redirects and failovers)."""


def leader_hint(error: grpc.RpcError) -> str | None:
    """A follower's refusal names the leader ("" while none leads); None for other errors."""
    if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == LEADER_KEY:
            return str(value)
    return None


class StackClient:
    """A synchronous AdminService client; use it as a context manager.

    With several controllers it talks to one at a time: a follower's refusal
    sends it to the leader it names, and a controller it cannot reach to the
    next of the list. Only calls that never reached a leader are sent again,
    so nothing is ever done twice.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.addresses = [a.strip() for a in settings.address.split(",") if a.strip()]
        self._current = self.addresses[0]
        self._lost = True
        """Find the leader before the next call (at first, and after any failure)."""
        self._channel: grpc.Channel | None = None
        self._connect(self._current)

    def _connect(self, address: str) -> None:
        """Open the channel to `address` (closing any previous one)."""
        if self._channel is not None:
            self._channel.close()
        self._current = address
        settings = self.settings
        # stackctl talks to the controller directly, never through a proxy
        # from the operator's environment.
        options = [
            ("grpc.enable_http_proxy", 0),
            # Retry a refused connection soon: `up` and `--wait` poll a
            # controller that may be starting.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # A follow notices a controller that stopped answering (hung, cut off)
            # within seconds, even while no item flows; controllers allow these pings.
            ("grpc.keepalive_time_ms", 2000),
            ("grpc.keepalive_timeout_ms", 2000),
            ("grpc.http2.max_pings_without_data", 0),
            *GRPC_SIZE_OPTIONS,
        ]
        if is_unix(address):
            self._channel = grpc.secure_channel(address, LOCAL_CREDENTIALS, options=options)
        elif settings.tls is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            from stack.security.tls import channel_credentials

            credentials = channel_credentials(settings.tls)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub: Any = admin_pb2_grpc.AdminServiceStub(self._channel)  # type: ignore[no-untyped-call]

    @property
    def address(self) -> str:
        """The controller this client talks to now."""
        return self._current

    def _elsewhere(self, error: grpc.RpcError, tried: list[str]) -> str | None:
        """Where to send a call again that `error` says never reached a leader, if anywhere."""
        hint = leader_hint(error)
        if hint is None and not never_sent(error):
            return None  # a leader answered (or may have got it): its answer stands
        if len(tried) >= MAX_HOPS:
            return None
        if hint and hint not in tried[-2:]:
            return hint
        untried = [a for a in self.addresses if a not in tried]
        if untried:
            return untried[0]
        return None

    def _no_leader(self, error: grpc.RpcError, tried: list[str]) -> CommandError | None:
        """The one line when every controller tried follows or is unreachable."""
        places = ", ".join(dict.fromkeys(tried))
        if leader_hint(error) is None:
            if len(set(tried)) == 1:
                return None  # the usual one-controller message says it best
            if is_transport_failure(error):
                return CommandError(f"cannot reach any controller (tried {places})")
            return None
        return CommandError(
            f"no controller leads right now (tried {places}); "
            "nothing was changed: try again in a few seconds"
        )

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def tls_reason(self) -> str | None:
        """Why a connection to the controller fails at the TLS level, if it does."""
        if is_unix(self.address):
            return None
        from stack.security.tls import diagnose

        files = self.settings.tls.files if self.settings.tls is not None else None
        return diagnose(self.address, files, "controller")

    def _error(self, error: grpc.RpcError, deadline: float | None) -> CommandError:
        return translate_rpc_error(error, self.address, deadline, self.tls_reason)

    def __enter__(self) -> StackClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------

    def _find_leader(self) -> None:
        """With several controllers, talk to the leader: ask them in turn who leads.

        Controllers is answered by any controller and changes nothing, so a hung or
        dead controller costs one short timeout here, and the real call (which may
        change things, so is never sent twice) goes where it can be answered.
        """
        self._lost = False
        if len(self.addresses) < 2:
            return
        probe = min(LEADER_PROBE_TIMEOUT, self.settings.timeout)
        for address in dict.fromkeys([self._current, *self.addresses]):
            self._connect(address)
            try:
                reply = self._stub.Controllers(admin_pb2.ControllersRequest(), timeout=probe)
            except grpc.RpcError:
                continue
            if reply.leader_address and reply.leader_address != address:
                self._connect(reply.leader_address)
            return  # (or nobody leads: this one answered and the call will say so)
        self._connect(self.addresses[0])  # none answered: the call reports it

    def _unary(self, name: str, request: Any, reply: type[Reply], timeout: float | None) -> Reply:
        """Call AdminService method `name`, following the leader (see `_elsewhere`)."""
        deadline = self.settings.timeout if timeout is None else timeout
        if self._lost:
            self._find_leader()
        tried = [self._current]
        while True:
            try:
                return cast(Reply, getattr(self._stub, name)(request, timeout=deadline))
            except grpc.RpcError as error:
                self._lost = True
                target = self._elsewhere(error, tried)
                if target is None:
                    raise self._no_leader(error, tried) or self._error(error, deadline) from None
                self._connect(target)
                tried.append(target)

    def _stream(self, name: str, request: Any, follow: bool) -> Generator[Item, None, None]:
        """Yield a server stream's items; cancels the call when the caller stops early."""
        deadline = None if follow else self.settings.timeout
        if self._lost:
            self._find_leader()
        tried = [self._current]
        while True:
            call = getattr(self._stub, name)(request, timeout=deadline)
            started = False
            try:
                for item in call:
                    started = True
                    yield item
                return
            except grpc.RpcError as error:
                if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.CANCELLED:
                    return
                self._lost = True
                target = None if started else self._elsewhere(error, tried)
                if target is None:
                    raise self._no_leader(error, tried) or self._error(error, deadline) from None
                self._connect(target)
                tried.append(target)
            finally:
                call.cancel()

    def _follow(self, name: str, cursor: EventCursor | LogCursor) -> Generator[Any, None, None]:
        """Yield a following stream's new items for as long as a leader serves it.

        Until the stream first opens it fails as any call does. Once open, a broken or
        ended stream is reopened on the leader (found again each time) as the cursor
        says; after FOLLOW_GIVE_UP seconds without a leader taking it, CommandError.
        """
        opened = False
        lost_at: float | None = None
        tried = [self._current]
        while True:
            if self._lost:
                self._find_leader()
            call = getattr(self._stub, name)(cursor.request(), timeout=None)
            error: grpc.RpcError | None = None
            try:
                metadata = {key: str(value) for key, value in call.initial_metadata() or ()}
                if metadata.get(STREAM_KEY) == "open":
                    opened, lost_at, tried = True, None, [self._current]
                    cursor.opened(metadata)
                for item in call:
                    if cursor.accept(item):
                        yield item
            except grpc.RpcError as failure:
                error = failure
            finally:
                call.cancel()
            self._lost = True
            if error is not None and not opened:  # as a plain stream fails
                target = self._elsewhere(error, tried)
                if target is None:
                    raise self._no_leader(error, tried) or self._error(error, None) from None
                self._connect(target)
                tried.append(target)
                continue
            if error is not None and (
                not isinstance(error, grpc.Call) or error.code() not in _RESUMABLE
            ):
                raise self._error(error, None) from None
            now = time.monotonic()
            lost_at = now if lost_at is None else lost_at
            if now - lost_at >= FOLLOW_GIVE_UP:
                why = str(self._error(error, None)) if error is not None else "the stream ended"
                raise CommandError(
                    f"{why}; no controller took the follow back within "
                    f"{format_seconds(FOLLOW_GIVE_UP)}s (tried {', '.join(self.addresses)})"
                )
            time.sleep(RECONNECT_PAUSE)

    # -- the AdminService ----------------------------------------------------

    def apply(
        self,
        filename: str,
        content: str,
        dry_run: bool = False,
        if_generation: int | None = None,
    ) -> admin_pb2.ApplyReply:
        """Apply (or with `dry_run` only diff) a stack file; with `if_generation`, only if
        the desired state is still at that generation (the plan a dry run answered)."""
        request = admin_pb2.ApplyRequest(filename=filename, content=content, dry_run=dry_run)
        if if_generation is not None:
            request.if_generation = if_generation
        return self._unary("Apply", request, admin_pb2.ApplyReply, None)

    def scale(self, watcher: str, count: int, relative: bool) -> admin_pb2.ScaleReply:
        request = admin_pb2.ScaleRequest(watcher=watcher, count=count, relative=relative)
        return self._unary("Scale", request, admin_pb2.ScaleReply, None)

    def watchers_call(
        self, verb: str, watchers: list[str], all_watchers: bool, rolling: bool = False
    ) -> admin_pb2.WatchersReply:
        """Start, Stop, Restart (`rolling`: in batches), Reload or Reset (`verb`) the
        named watchers or all."""
        method = {
            "start": "Start",
            "stop": "Stop",
            "restart": "Restart",
            "reload": "Reload",
            "reset": "Reset",
        }[verb]
        request = admin_pb2.WatchersRequest(watchers=watchers, all=all_watchers, rolling=rolling)
        return self._unary(method, request, admin_pb2.WatchersReply, None)

    def signal(
        self, watcher: str, signal: str, wid: int = 0, children: bool = False
    ) -> admin_pb2.SignalReply:
        request = admin_pb2.SignalRequest(
            watcher=watcher, signal=signal, wid=wid, children=children
        )
        return self._unary("Signal", request, admin_pb2.SignalReply, None)

    def remove(self, watcher: str) -> admin_pb2.RemoveReply:
        request = admin_pb2.RemoveRequest(watcher=watcher)
        return self._unary("Remove", request, admin_pb2.RemoveReply, None)

    def status(self, watcher: str = "", timeout: float | None = None) -> admin_pb2.StatusReply:
        request = admin_pb2.StatusRequest(watcher=watcher)
        return self._unary("Status", request, admin_pb2.StatusReply, timeout)

    def agents(self) -> admin_pb2.AgentsReply:
        request = admin_pb2.AgentsRequest()
        return self._unary("Agents", request, admin_pb2.AgentsReply, None)

    def logs(
        self, watcher: str, lines: int, follow: bool, stream: str = "", host: str = ""
    ) -> Generator[types_pb2.LogLine, None, None]:
        if follow:
            return self._follow("Logs", LogCursor(watcher, lines, stream, host))
        request = admin_pb2.LogsRequest(watcher=watcher, lines=lines, stream=stream, host=host)
        return self._stream("Logs", request, follow)

    def events(
        self, follow: bool, watcher: str = "", lines: int = 0
    ) -> Generator[types_pb2.Event, None, None]:
        """The last `lines` events (0: every one kept), then with `follow` the new ones."""
        if follow:
            return self._follow("Events", EventCursor(watcher, lines))
        request = admin_pb2.EventsRequest(watcher=watcher, lines=lines)
        return self._stream("Events", request, follow)

    def get(self, watcher: str) -> admin_pb2.GetReply:
        request = admin_pb2.GetRequest(watcher=watcher)
        return self._unary("Get", request, admin_pb2.GetReply, None)

    def drain(self, host_id: str, undo: bool = False) -> admin_pb2.DrainReply:
        request = admin_pb2.DrainRequest(host_id=host_id)
        call = "Undrain" if undo else "Drain"
        return self._unary(call, request, admin_pb2.DrainReply, None)

    def controllers(self) -> admin_pb2.ControllersReply:
        return self._unary(
            "Controllers", admin_pb2.ControllersRequest(), admin_pb2.ControllersReply, None
        )

    def rebalance(self, watcher: str) -> admin_pb2.RebalanceReply:
        request = admin_pb2.RebalanceRequest(watcher=watcher)
        return self._unary("Rebalance", request, admin_pb2.RebalanceReply, None)

    def export(self, show_secrets: bool = False) -> admin_pb2.ExportReply:
        request = admin_pb2.ExportRequest(show_secrets=show_secrets)
        return self._unary("Export", request, admin_pb2.ExportReply, None)
