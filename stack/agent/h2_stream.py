"""The agent's one gRPC stream, spoken over HTTP/2 with h2: an agent without grpcio.

Of gRPC the agent needs exactly one thing: a bidirectional stream
(`AgentService.Connect`) to one controller at a time, over TCP, mutual TLS or the
controller's unix socket, with keepalive pings that notice a controller that stopped
answering. grpcio brings far more: its 17 MiB core library, of which 10 to 13 MiB is
resident in every process that imports it, and four threads of its own. This module
is that one stream and nothing more, on h2's HTTP/2 state machine; the controller
still serves it with grpcio, so the wire is plain gRPC and any gRPC peer would do.

What goes over the wire (gRPC over HTTP/2): one POST to the method's path with
`content-type: application/grpc` and `te: trailers`; each message is a 5-byte prefix
(a compression flag, always 0 here, and the length, big-endian) followed by its bytes,
split into DATA frames as flow control allows; the controller's status comes last, in
the trailers (`grpc-status`, `grpc-message`), or alone in the headers when it refuses
the call at once.

Keepalive, as the agent configured grpcio before: a PING every KEEPALIVE_TIME seconds;
no answer within PING_TIMEOUT ends the stream as UNAVAILABLE. A connection (with its
TLS handshake) that does not come up within CONNECT_TIMEOUT fails the same way.

TLS is done here too, with Python's ssl on memory buffers, not through asyncio's: the
agent keeps OpenSSL out of its process unless it dials with TLS (see lean.py), and
asyncio, imported before that is known, has then done without ssl.

Errors are StreamError: a gRPC status name (UNAVAILABLE, CANCELLED...) and one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

from stack.aio import wait_event
from stack.security.local import is_unix, unix_path

if TYPE_CHECKING:
    import ssl

KEEPALIVE_TIME: Final = 2.0
"""Seconds between keepalive pings."""
PING_TIMEOUT: Final = 3.0
"""Seconds a ping may go unanswered before the controller counts as gone."""
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to connect (and shake hands, with TLS) before the controller counts as unreachable."""
WINDOW: Final = 4 * 1024 * 1024
"""What the controller may send ahead of what the agent read (per stream and in all)."""
READ_SIZE: Final = 64 * 1024

PREFIX: Final = struct.Struct(">BI")
"""A message's prefix: compressed flag, length."""
STATUS_NAMES: Final = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip
"""gRPC's status codes by number."""
HTTP_STATUS_CODES: Final = {
    b"400": "INTERNAL", b"401": "UNAUTHENTICATED", b"403": "PERMISSION_DENIED",
    b"404": "UNIMPLEMENTED", b"429": "UNAVAILABLE", b"502": "UNAVAILABLE",
    b"503": "UNAVAILABLE", b"504": "UNAVAILABLE",
}  # fmt: skip
"""The gRPC status of an HTTP answer that is not 200 (any other: UNKNOWN), as gRPC maps them."""


class StreamError(Exception):
    """The stream failed or the controller ended it with an error status."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        """gRPC's name for the status: UNAVAILABLE, CANCELLED, INTERNAL..."""
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.details}"


@dataclass(frozen=True)
class Target:
    """Where to dial: a unix socket's path, or a host and a port."""

    authority: str
    host: str = ""
    port: int = 0
    path: str = ""


def parse_target(address: str) -> Target:
    """`unix:PATH`, `HOST:PORT` or `[IPV6]:PORT`; StreamError(UNAVAILABLE) for anything else."""
    if is_unix(address):
        return Target(authority="localhost", path=unix_path(address))
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StreamError("UNAVAILABLE", f"{address!r} is not HOST:PORT or unix:PATH")
    return Target(authority=address, host=host, port=int(port))


def client_context(ca: bytes, cert: bytes, key: bytes) -> ssl.SSLContext:
    """A mutual-TLS context: trust only `ca`, present `cert` with `key` (PEM bytes), and
    check that the controller's certificate names the host dialed. The chain is handed
    to OpenSSL through a memory file: ssl reads a chain only from a path."""
    from stack.agent.lean import let_in_openssl

    let_in_openssl()
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        fd = os.memfd_create("stack-agent-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, cert + b"\n" + key)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    except (ssl.SSLError, ValueError) as exc:
        raise StreamError("UNAVAILABLE", f"TLS files: {exc}") from None
    return context


class _Plain:
    """The connection's bytes as they are."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def recv(self) -> bytes:
        return await self.reader.read(READ_SIZE)

    def send(self, data: bytes) -> None:
        self.writer.write(data)


class _Tls(_Plain):
    """The connection's bytes through TLS, done on memory buffers."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext,
        server_name: str,
    ) -> None:
        import ssl

        super().__init__(reader, writer)
        self._ssl = ssl
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_hostname=server_name)

    async def handshake(self) -> None:
        while not self._step():
            await self.writer.drain()
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise ConnectionResetError("the connection closed during the TLS handshake")
            self._in.write(data)
        if self._tls.selected_alpn_protocol() not in (None, "h2"):
            raise ConnectionError("the controller does not speak HTTP/2")

    def _step(self) -> bool:
        """One step of the handshake: whether it is done (else it waits for the peer)."""
        try:
            self._tls.do_handshake()
        except self._ssl.SSLWantReadError:
            return False
        finally:
            self._flush()
        return True

    async def recv(self) -> bytes:
        while True:
            try:
                data = self._tls.read(READ_SIZE)
            except self._ssl.SSLWantReadError:
                raw = await self.reader.read(READ_SIZE)
                if not raw:
                    return b""
                self._in.write(raw)
                continue
            except self._ssl.SSLZeroReturnError:  # the controller's close_notify
                return b""
            finally:
                self._flush()  # what reading made TLS say (a key update, an alert)
            return data

    def send(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            self.writer.write(pending)


_END: Final = object()
"""Queued after the last message of a stream that ended well."""


class Stream:
    """One call of a bidirectional-streaming method, on a connection of its own.

    `write` sends a message (waiting while flow control or the socket say so), `read`
    returns the next one or None once the controller ended the stream well, and either
    raises StreamError once the stream failed. `close` ends it from this side.
    """

    def __init__(self, wire: _Plain, max_message: int) -> None:
        self._wire = wire
        self._max = max_message
        self._h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self._id = 0
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._buffer = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._error: StreamError | None = None
        self._ended = False
        self._window = asyncio.Event()
        self._pong = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        address: str,
        method: str,
        *,
        tls: ssl.SSLContext | None = None,
        max_message: int,
        user_agent: str,
    ) -> Stream:
        """Connect to `address` and call `method` (`/package.Service/Method`)."""
        target = parse_target(address)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                wire = await _connect(target, tls)
        except TimeoutError:
            raise StreamError(
                "UNAVAILABLE", f"no connection to {address} within {CONNECT_TIMEOUT:g}s"
            ) from None
        except OSError as exc:  # refused, unreachable, a failed TLS handshake
            raise StreamError("UNAVAILABLE", f"cannot connect to {address}: {_why(exc)}") from None
        stream = cls(wire, max_message)
        stream._start(target, method, "http" if tls is None else "https", user_agent)
        return stream

    def _start(self, target: Target, method: str, scheme: str, user_agent: str) -> None:
        h2 = self._h2
        h2.initiate_connection()
        h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        h2.increment_flow_control_window(WINDOW - h2.inbound_flow_control_window)
        self._id = h2.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", scheme.encode()),
            (b":path", method.encode()),
            (b":authority", target.authority.encode()),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (b"grpc-accept-encoding", b"identity"),
            (b"user-agent", user_agent.encode()),
        ]
        h2.send_headers(self._id, headers)
        self._flush()
        self._tasks = [
            asyncio.create_task(self._pump(), name="h2 read"),
            asyncio.create_task(self._keepalive(), name="h2 keepalive"),
        ]

    # -- what the session calls --

    async def write(self, message: bytes) -> None:
        if len(message) > self._max:
            raise StreamError(
                "RESOURCE_EXHAUSTED", f"a message of {len(message)} bytes is over {self._max}"
            )
        data = memoryview(PREFIX.pack(0, len(message)) + message)
        while data:
            self._raise_error()
            try:
                room = min(self._h2.local_flow_control_window(self._id),
                           self._h2.max_outbound_frame_size)  # fmt: skip
                if room <= 0:
                    self._window.clear()
                    await self._window.wait()
                    continue
                self._h2.send_data(self._id, bytes(data[:room]))
            except H2Error as exc:
                self._raise_error()
                raise StreamError("INTERNAL", f"HTTP/2: {exc}") from None
            data = data[room:]
            self._flush()
        await self._drain()

    async def read(self) -> bytes | None:
        item = await self._inbox.get()
        if item is _END or isinstance(item, StreamError):
            self._inbox.put_nowait(item)  # for whoever reads again
        if isinstance(item, StreamError):
            raise item
        return None if item is _END else item  # type: ignore[return-value]

    async def done_writing(self) -> None:
        """The end of what this side sends; reading goes on."""
        self._raise_error()
        try:
            self._h2.end_stream(self._id)
        except H2Error as exc:
            raise StreamError("INTERNAL", f"HTTP/2: {exc}") from None
        self._flush()
        await self._drain()

    def close(self) -> None:
        """End the call (a reset, if it is still open) and the connection."""
        if not self._ended and self._error is None:
            with contextlib.suppress(H2Error, OSError):
                self._h2.reset_stream(self._id, ErrorCodes.CANCEL)
                self._flush()
        self._fail(StreamError("CANCELLED", "the agent closed the stream"))
        for task in self._tasks:
            task.cancel()
        self._wire.writer.close()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- inside --

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, error: StreamError) -> None:
        if self._error is None and not self._ended:
            self._error = error
            self._inbox.put_nowait(error)
        self._window.set()  # a writer waiting for room learns it

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._wire.send(data)

    async def _drain(self) -> None:
        try:
            await self._wire.writer.drain()
        except OSError as exc:
            self._fail(StreamError("UNAVAILABLE", f"connection lost: {_why(exc)}"))
        self._raise_error()

    async def _pump(self) -> None:
        """Read the connection until the stream ends or fails."""
        try:
            while self._error is None and not self._ended:
                data = await self._wire.recv()
                if not data:
                    raise StreamError("UNAVAILABLE", "the controller closed the connection")
                try:
                    events = self._h2.receive_data(data)
                except H2Error as exc:
                    raise StreamError("INTERNAL", f"HTTP/2: {exc}") from None
                for event in events:
                    self._on(event)
                self._flush()
        except StreamError as error:
            self._fail(error)
        except OSError as exc:  # includes a TLS error
            self._fail(StreamError("UNAVAILABLE", f"connection lost: {_why(exc)}"))

    def _on(self, event: Event) -> None:
        if isinstance(event, (WindowUpdated, RemoteSettingsChanged)):
            self._window.set()
        elif isinstance(event, PingAckReceived):
            self._pong.set()
        elif isinstance(event, ResponseReceived):
            self._headers = dict(event.headers)
            status = self._headers.get(b":status", b"")
            if status != b"200":
                code = HTTP_STATUS_CODES.get(status, "UNKNOWN")
                raise StreamError(
                    code, f"the controller answered HTTP {status.decode(errors='replace')}"
                )
        elif isinstance(event, DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, self._id)
            self._buffer += event.data or b""
            self._unframe()
        elif isinstance(event, TrailersReceived):
            self._headers = dict(event.headers)
        elif isinstance(event, StreamEnded):
            self._end()
        elif isinstance(event, StreamReset):
            code = "CANCELLED" if event.error_code == ErrorCodes.CANCEL else "UNAVAILABLE" if (
                event.error_code == ErrorCodes.REFUSED_STREAM) else "INTERNAL"  # fmt: skip
            raise StreamError(
                code, f"the controller reset the stream ({_code_name(event.error_code)})"
            )
        elif isinstance(event, ConnectionTerminated) and not self._ended:
            raise StreamError(
                "UNAVAILABLE",
                f"the controller ended the connection ({_code_name(event.error_code)})",
            )

    def _unframe(self) -> None:
        buffer = self._buffer
        while len(buffer) >= PREFIX.size:
            compressed, length = PREFIX.unpack_from(buffer)
            if length > self._max:
                raise StreamError(
                    "RESOURCE_EXHAUSTED", f"a message of {length} bytes is over {self._max}"
                )
            if compressed:
                raise StreamError("INTERNAL", "a compressed message (none was asked for)")
            if len(buffer) < PREFIX.size + length:
                return
            self._inbox.put_nowait(bytes(buffer[PREFIX.size : PREFIX.size + length]))
            del buffer[: PREFIX.size + length]

    def _end(self) -> None:
        status = self._headers.get(b"grpc-status")
        if status is None:
            raise StreamError("INTERNAL", "the stream ended without a status")
        number = int(status) if status.isdigit() else 2
        if number != 0:
            name = STATUS_NAMES[number] if number < len(STATUS_NAMES) else "UNKNOWN"
            message = unquote(self._headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
            raise StreamError(name, message)
        if self._buffer:
            raise StreamError("INTERNAL", "the stream ended inside a message")
        self._ended = True
        self._inbox.put_nowait(_END)

    async def _keepalive(self) -> None:
        sent = 0
        while self._error is None and not self._ended:
            await asyncio.sleep(KEEPALIVE_TIME)
            sent += 1
            self._pong.clear()
            try:
                self._h2.ping(sent.to_bytes(8, "big"))
            except H2Error:
                return  # the connection is closing: the pump says why
            self._flush()
            if not await wait_event(self._pong, PING_TIMEOUT):
                self._fail(
                    StreamError("UNAVAILABLE", f"keepalive ping unanswered for {PING_TIMEOUT:g}s")
                )
                self._wire.writer.close()
                return


async def _connect(target: Target, tls: ssl.SSLContext | None) -> _Plain:
    if target.path:
        reader, writer = await asyncio.open_unix_connection(target.path, limit=READ_SIZE)
        return _Plain(reader, writer)
    reader, writer = await asyncio.open_connection(target.host, target.port, limit=READ_SIZE)
    if tls is None:
        return _Plain(reader, writer)
    wire = _Tls(reader, writer, tls, target.host)
    try:
        await wire.handshake()
    except BaseException:
        writer.close()
        raise
    return wire


def _why(exc: OSError) -> str:
    """The reason in a word or two: "Connection refused", not asyncio's "Connect call
    failed (...)"; a TLS error as ssl says it."""
    if exc.errno and (type(exc) is OSError or isinstance(exc, ConnectionError)):
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def _code_name(code: int | None) -> str:
    try:
        return ErrorCodes(code).name  # type: ignore[arg-type]
    except ValueError:
        return f"error {code}"
