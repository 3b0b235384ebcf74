"""A small HTTP/1.1 server on a daemon's event loop, for `/metrics` and the web console.

It runs on the loop that owns the daemon's state, like the gRPC servicers: a handler
reads the controller's or the agent's state between two awaits, without locks or copies,
and an action awaits the same coroutine an admin RPC does. The standard library's HTTP
servers run each connection in a thread, which would have to hand every read back to the
loop; aiohttp would be a dependency for a few routes. What it speaks is what Prometheus,
curl and browsers need: GET and POST with a Content-Length body, keep-alive, and
responses that stream (Server-Sent Events) until the client leaves.

With TLS it requires a client certificate signed by the stack's CA, as the gRPC port
does, and tells the application who the caller is and what it may do
(stack.security.rights). What it accepts is bounded: 16 KiB of request head, 64 KiB of
body, 10 s to send a head, 256 connections; anything else gets one status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from stack import aio
from stack.security.layout import Identity
from stack.security.rights import Right, right_of

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
HEAD_TIMEOUT = 10.0
"""Seconds a client has to send a request's head once it started one (or connected)."""
IDLE_TIMEOUT = 60.0
"""Seconds a kept-alive connection may wait for its next request."""
WRITE_TIMEOUT = 30.0
"""Seconds a client may take to read what is written to it before it is dropped."""
MAX_CONNECTIONS = 256


class HttpError(Exception):
    """A request refused with `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """One request, as the application sees it."""

    method: str
    path: str
    """Percent-decoded, without the query."""
    query: Mapping[str, str]
    """The first value of each query parameter."""
    headers: Mapping[str, str]
    """Names in lower case."""
    body: bytes
    peer: str
    """HOST:PORT of the client."""
    identity: Identity | None
    """Who its TLS certificate names (None on a plaintext port)."""
    right: Right

    def json(self) -> Any:
        """The body as JSON (HttpError 400 if it is not)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HttpError(400, "the request body is not JSON") from None

    @property
    def who(self) -> str:
        """The caller, for messages and follow-stream caps."""
        if self.identity is not None:
            return str(self.identity)
        return f"plaintext peer {self.peer.rpartition(':')[0]}"


@dataclass
class Response:
    """A whole response."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class EventStream:
    """A response of Server-Sent Events, written as `events` yields them; the
    connection closes when it ends or the client leaves."""

    events: AsyncIterator[bytes]
    headers: tuple[tuple[str, str], ...] = ()


Application = Callable[[Request], Awaitable[Response | EventStream]]


def json_response(document: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(document).encode(), "application/json")


def error_response(status: int, message: str) -> Response:
    """A refusal: JSON with the one-line message (the console shows it as it is)."""
    return json_response({"error": message}, status)


class HttpServer:
    """Serves `app` on HOST:PORT (HTTPS with `tls`), until `run` is cancelled."""

    def __init__(
        self,
        app: Application,
        address: str,
        tls: ssl.SSLContext | None = None,
        plaintext: Right = Right.READ,
        name: str = "http",
    ) -> None:
        self.app = app
        self.address = address
        self.tls = tls
        self.plaintext = plaintext
        """What callers of a plaintext port may do."""
        self.name = name
        self.port = 0
        """The port bound (after `bind`)."""
        self._server: asyncio.Server | None = None
        self._group: aio.TaskGroup | None = None
        self._open = 0
        self._serial = 0

    async def bind(self) -> int:
        """Bind the address (OSError if it cannot be); return the port."""
        host, _, port = self.address.rpartition(":")
        self._server = await asyncio.start_server(
            self._accept,
            host.strip("[]") or None,
            int(port),
            ssl=self.tls,
            ssl_handshake_timeout=HEAD_TIMEOUT if self.tls else None,
            limit=MAX_HEAD,
            reuse_address=True,
            start_serving=False,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def run(self) -> None:
        """Serve until cancelled; then close every connection."""
        if self._server is None:
            await self.bind()
        assert self._server is not None
        try:
            async with aio.TaskGroup() as group:
                self._group = group
                await self._server.start_serving()
                await asyncio.Event().wait()
        finally:
            self._group = None
            self._server.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        group = self._group
        if group is None or self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._serial += 1
        name = f"{self.name} connection {self._serial}"
        aio.start(group, self._connection(reader, writer), name, reraise=False, logger=log)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            peer = _peer(writer)
            identity = _identity(writer)
            right = right_of(identity, self.plaintext)
            timeout = HEAD_TIMEOUT
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        request = await _read_request(reader, peer, identity, right)
                except HttpError as exc:
                    await _write(writer, error_response(exc.status, str(exc)), close=True)
                    return
                if request is None:
                    return
                keep = request.headers.get("connection", "").lower() != "close"
                response = await self._answer(request)
                if isinstance(response, EventStream):
                    await _stream(reader, writer, response)
                    return
                await _write(writer, response, close=not keep)
                if not keep:
                    return
                timeout = IDLE_TIMEOUT
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await writer.wait_closed()

    async def _answer(self, request: Request) -> Response | EventStream:
        try:
            return await self.app(request)
        except HttpError as exc:
            return error_response(exc.status, str(exc))
        except Exception:
            log.exception("%s: %s %s failed", self.name, request.method, request.path)
            return error_response(500, "internal error (see the daemon's log)")


def _peer(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name)


def _identity(writer: asyncio.StreamWriter) -> Identity | None:
    tls = writer.get_extra_info("ssl_object")
    if tls is None:
        return None
    from stack.security.tls import identity_of_der

    return identity_of_der(tls.getpeercert(binary_form=True))


async def _read_request(
    reader: asyncio.StreamReader, peer: str, identity: Identity | None, right: Right
) -> Request | None:
    """The next request on the connection; None when the client closed it first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "incomplete request") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head larger than {MAX_HEAD} bytes") from None
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise HttpError(505, f"unsupported protocol {version[:16]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(501, "chunked request bodies are not accepted")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpError(400, "malformed Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise HttpError(413, f"request body larger than {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return Request(method, unquote(parts.path), query, headers, body, peer, identity, right)


_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write(writer: asyncio.StreamWriter, response: Response, close: bool) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        *_SECURITY_HEADERS,
        *response.headers,
    ]
    if close:
        headers.append(("Connection", "close"))
    writer.write(_head(response.status, headers))
    writer.write(response.body)  # not joined to the head: a page is large, a copy costs
    async with asyncio.timeout(WRITE_TIMEOUT):
        await writer.drain()


async def _stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: EventStream
) -> None:
    """Write the events until they end or the client leaves (its end of the connection
    reads as closed), whichever comes first."""
    headers = [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        *_SECURITY_HEADERS,
        ("Connection", "close"),
        *stream.headers,
    ]
    writer.write(_head(200, headers))

    async def send() -> None:
        async for chunk in stream.events:
            writer.write(chunk)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()

    async def gone() -> None:
        while await reader.read(1024):
            pass

    try:
        await aio.race(send=send(), gone=gone())
    except* (ConnectionError, TimeoutError, ssl.SSLError):
        pass
    finally:
        closer = getattr(stream.events, "aclose", None)
        if closer is not None:
            await closer()


def sse(data: Any, event: str = "") -> bytes:
    """One Server-Sent Event carrying `data` as JSON."""
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


KEEPALIVE = b": keepalive\n\n"
"""An SSE comment: keeps proxies from closing a quiet stream."""


def metrics_page(scrape: Callable[[], bytes], content_type: str) -> Application:
    """An application that answers GET /metrics with `scrape()` to readers."""

    async def app(request: Request) -> Response | EventStream:
        if request.path != "/metrics":
            raise HttpError(404, f"no page {request.path[:100]!r} here: try /metrics")
        return metrics_response(request, scrape, content_type)

    return app


def metrics_response(request: Request, scrape: Callable[[], bytes], content_type: str) -> Response:
    """The metrics page, for a caller that may read."""
    if request.right < Right.READ:
        raise HttpError(403, f"permission denied: {request.who} may not read metrics")
    if request.method not in ("GET", "HEAD"):
        raise HttpError(405, "only GET reads /metrics")
    body = scrape()
    return Response(200, b"" if request.method == "HEAD" else body, content_type)
