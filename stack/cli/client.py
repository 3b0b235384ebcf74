"""The one way stackctl talks to the controller.

A small synchronous wrapper over the AdminService stub: one gRPC channel per
invocation, a deadline on every unary call, and every `grpc.RpcError`
translated into a `CommandError` whose message is the one line stackctl prints.
The command modules never see gRPC errors or build stubs themselves. With TLS
material the channel is mutual TLS; when its handshake fails, the error says why
(unknown CA, expired, wrong name) instead of "cannot reach".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

# gRPC's core logs failed TLS handshakes on stderr (several lines, at INFO);
# stackctl explains them in its own one line instead. An explicit setting wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc

from stack.security.tls import TlsMaterial, channel_credentials, diagnose
from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2

DEFAULT_CONTROLLER = "127.0.0.1:7450"

Reply = TypeVar("Reply")
Item = TypeVar("Item")

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


class CommandError(Exception):
    """A command failed; the message is the one line stackctl prints on stderr."""


@dataclass(frozen=True)
class ClientSettings:
    """How stackctl reaches the controller."""

    address: str = DEFAULT_CONTROLLER
    """The controller's AdminService, HOST:PORT."""
    timeout: float = 10.0
    """Deadline in seconds for each unary call; streams that follow have none."""
    tls: TlsMaterial | None = None
    """Our checked certificate, key and CA for mutual TLS; None for plaintext (loopback)."""


def format_seconds(seconds: float) -> str:
    """`10` for whole seconds, `0.5` otherwise: how deadlines appear in messages."""
    return f"{seconds:g}"


def is_transport_failure(error: grpc.RpcError) -> bool:
    """Whether gRPC could not get the call to the server at all (vs. a status it sent)."""
    if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
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


class StackClient:
    """A synchronous AdminService client over one channel; use it as a context manager."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        # stackctl talks to the controller directly, never through a proxy
        # from the operator's environment.
        options = [
            ("grpc.enable_http_proxy", 0),
            # Retry a refused connection soon: `up` and `--wait` poll a
            # controller that may be starting.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if settings.tls is None:
            self._channel = grpc.insecure_channel(settings.address, options=options)
        else:
            credentials = channel_credentials(settings.tls)
            self._channel = grpc.secure_channel(settings.address, credentials, options=options)
        self._stub: Any = admin_pb2_grpc.AdminServiceStub(self._channel)  # type: ignore[no-untyped-call]

    @property
    def address(self) -> str:
        return self.settings.address

    def close(self) -> None:
        self._channel.close()

    def tls_reason(self) -> str | None:
        """Why a connection to the controller fails at the TLS level, if it does."""
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

    def _unary(
        self, method: Callable[..., Any], request: Any, reply: type[Reply], timeout: float | None
    ) -> Reply:
        deadline = self.settings.timeout if timeout is None else timeout
        try:
            return cast(Reply, method(request, timeout=deadline))
        except grpc.RpcError as error:
            raise self._error(error, deadline) from None

    def _stream(
        self, method: Callable[..., Any], request: Any, follow: bool
    ) -> Generator[Item, None, None]:
        """Yield a server stream's items; cancels the call when the caller stops early."""
        deadline = None if follow else self.settings.timeout
        call = method(request, timeout=deadline)
        try:
            yield from call
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._error(error, deadline) from None
        finally:
            call.cancel()

    # -- the AdminService ----------------------------------------------------

    def apply(self, filename: str, content: str, dry_run: bool = False) -> admin_pb2.ApplyReply:
        request = admin_pb2.ApplyRequest(filename=filename, content=content, dry_run=dry_run)
        return self._unary(self._stub.Apply, request, admin_pb2.ApplyReply, None)

    def scale(self, watcher: str, count: int, relative: bool) -> admin_pb2.ScaleReply:
        request = admin_pb2.ScaleRequest(watcher=watcher, count=count, relative=relative)
        return self._unary(self._stub.Scale, request, admin_pb2.ScaleReply, None)

    def watchers_call(
        self, verb: str, watchers: list[str], all_watchers: bool, rolling: bool = False
    ) -> admin_pb2.WatchersReply:
        """Start, Stop, Restart (`rolling`: in batches), Reload or Reset (`verb`) the
        named watchers or all."""
        method = {
            "start": self._stub.Start,
            "stop": self._stub.Stop,
            "restart": self._stub.Restart,
            "reload": self._stub.Reload,
            "reset": self._stub.Reset,
        }[verb]
        request = admin_pb2.WatchersRequest(watchers=watchers, all=all_watchers, rolling=rolling)
        return self._unary(method, request, admin_pb2.WatchersReply, None)

    def signal(
        self, watcher: str, signal: str, wid: int = 0, children: bool = False
    ) -> admin_pb2.SignalReply:
        request = admin_pb2.SignalRequest(
            watcher=watcher, signal=signal, wid=wid, children=children
        )
        return self._unary(self._stub.Signal, request, admin_pb2.SignalReply, None)

    def remove(self, watcher: str) -> admin_pb2.RemoveReply:
        request = admin_pb2.RemoveRequest(watcher=watcher)
        return self._unary(self._stub.Remove, request, admin_pb2.RemoveReply, None)

    def status(self, watcher: str = "", timeout: float | None = None) -> admin_pb2.StatusReply:
        request = admin_pb2.StatusRequest(watcher=watcher)
        return self._unary(self._stub.Status, request, admin_pb2.StatusReply, timeout)

    def agents(self) -> admin_pb2.AgentsReply:
        request = admin_pb2.AgentsRequest()
        return self._unary(self._stub.Agents, request, admin_pb2.AgentsReply, None)

    def logs(
        self, watcher: str, lines: int, follow: bool, stream: str = "", host: str = ""
    ) -> Generator[types_pb2.LogLine, None, None]:
        request = admin_pb2.LogsRequest(
            watcher=watcher, lines=lines, follow=follow, stream=stream, host=host
        )
        return self._stream(self._stub.Logs, request, follow)

    def events(
        self, follow: bool, watcher: str = "", lines: int = 0
    ) -> Generator[types_pb2.Event, None, None]:
        request = admin_pb2.EventsRequest(follow=follow, watcher=watcher, lines=lines)
        return self._stream(self._stub.Events, request, follow)

    def get(self, watcher: str) -> admin_pb2.GetReply:
        request = admin_pb2.GetRequest(watcher=watcher)
        return self._unary(self._stub.Get, request, admin_pb2.GetReply, None)

    def drain(self, host_id: str, undo: bool = False) -> admin_pb2.DrainReply:
        request = admin_pb2.DrainRequest(host_id=host_id)
        call = self._stub.Undrain if undo else self._stub.Drain
        return self._unary(call, request, admin_pb2.DrainReply, None)

    def rebalance(self, watcher: str) -> admin_pb2.RebalanceReply:
        request = admin_pb2.RebalanceRequest(watcher=watcher)
        return self._unary(self._stub.Rebalance, request, admin_pb2.RebalanceReply, None)

    def export(self) -> admin_pb2.ExportReply:
        request = admin_pb2.ExportRequest()
        return self._unary(self._stub.Export, request, admin_pb2.ExportReply, None)
