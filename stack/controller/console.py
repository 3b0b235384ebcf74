"""The web console: a page for people who do not use a terminal, served by the controller.

`--http-listen HOST:PORT` serves it (and `/metrics`). The page (stack/web/assets, no
build step) reads the fleet over one Server-Sent Events stream, `/api/live`: the
watchers with their processes and the agents every second, and each event as it is
recorded; `/api/logs?watcher=W` streams a watcher's output (a tail, then each new line).
Admins act with POSTs: scale, start, stop, restart (rolling), drain and undrain. Each
goes through controller/admin.py, the operations stackctl's calls go through, so a
scale from the page is checked, stored, recorded and counted (stack_admin_requests_total,
by the gRPC method's name and status code) like one from stackctl.

Who may do what is the port's business (stack.web.server): with TLS a viewer's
certificate reads and an admin's acts; in plaintext (only with --insecure) everyone
who reaches it acts. A POST must carry the `X-Stack-Console` header, which a browser
sends cross-site only after a CORS preflight this server never grants: another site
open in an admin's browser cannot make it act.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from google.protobuf.json_format import MessageToDict

from stack.controller.admin import Admin
from stack.controller.controller import Controller
from stack.controller.errors import ControllerError
from stack.controller.status import agents_reply, status_reply
from stack.metrics.text import CONTENT_TYPE
from stack.security.rights import Right, refusal
from stack.spec.reports import Event, LogLine
from stack.web.server import (
    KEEPALIVE,
    EventStream,
    HttpError,
    Request,
    Response,
    error_response,
    json_response,
    metrics_response,
    sse,
)

LIVE_INTERVAL = 1.0
"""Seconds between two pictures of the fleet on the live stream."""
EVENTS_ON_OPEN = 50
LOG_TAIL = 100
ACT_HEADER = "x-stack-console"

_ASSETS = {
    "/": ("console.html", "text/html; charset=utf-8"),
    "/assets/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/assets/console.css": ("console.css", "text/css; charset=utf-8"),
}
_PAGE_SECURITY = (
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
)

_AS_JSON: dict[str, Any] = {
    "preserving_proto_field_name": True,
    "always_print_fields_with_no_presence": True,
}
"""Messages as the page reads them: stackctl's -o json names, every field present."""

_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}
"""The HTTP status of each controller error's code (any other: 500)."""


def _asset(name: str) -> bytes:
    return resources.files("stack.web").joinpath("assets", name).read_bytes()


_EVENT_FIELDS = {
    "seq": "seq", "at": "at", "host": "host_id", "watcher": "watcher", "wid": "wid",
    "kind": "kind", "message": "message", "severity": "severity",
}  # fmt: skip
_LINE_FIELDS = {"at": "at", "host": "host_id", "wid": "wid", "stream": "stream", "text": "text"}


def _plain(thing: Event | LogLine, fields: dict[str, str]) -> dict[str, Any]:
    """An event or an output line as the page reads it (its JSON names: `fields`)."""
    return {name: getattr(thing, attribute) for name, attribute in fields.items()}


class Console:
    """The console's routes over one controller."""

    def __init__(self, controller: Controller, scrape: Callable[[], bytes]) -> None:
        self._c = controller
        self._admin = Admin(controller)
        self._scrape = scrape

    async def handle(self, request: Request) -> Response | EventStream:
        path = request.path
        if path == "/metrics":
            return metrics_response(request, self._scrape, CONTENT_TYPE)
        self._require(request, Right.READ)
        if request.method == "POST":
            return await self._act(request)
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, f"{request.method[:16]} is not accepted here")
        if path in _ASSETS:
            name, kind = _ASSETS[path]
            return Response(200, _asset(name), kind, _PAGE_SECURITY)
        if path == "/api/state":
            return json_response(self._state(request))
        if path == "/api/live":
            return EventStream(self._held(request, self._live(request)))
        if path == "/api/logs":
            return await self._logs(request)
        raise HttpError(404, f"no page {path[:100]!r} here")

    def _require(self, request: Request, needed: Right) -> None:
        why = refusal(request.right, needed, request.who)
        if why is not None:
            raise HttpError(403, why)

    # ---- reading ----

    def _state(self, request: Request) -> dict[str, Any]:
        c = self._c
        records = list(c.agents.records.values())
        status = status_reply(c.state, c.placement, records)
        agents = agents_reply(records, c.state.drained)
        return {
            "who": request.who,
            "can_act": request.right >= Right.ACT,
            "leading": c.leading,
            "leader": c.leader_address,
            "watchers": MessageToDict(status, **_AS_JSON).get("watchers", []),
            "agents": MessageToDict(agents, **_AS_JSON).get("agents", []),
        }

    async def _held(self, request: Request, items: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`items` while the caller holds one of its follow streams (as `stackctl logs -f`
        does: at most --max-follows each); an `error` event instead when it holds them all."""
        try:
            slot = self._admin.follow_slot(request.who, True)
            slot.__enter__()
        except ControllerError as exc:
            yield sse({"error": str(exc)}, "error")
            return
        try:
            yield KEEPALIVE  # open: the page says it is live
            async for item in items:
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
            slot.__exit__(None, None, None)

    async def _live(self, request: Request) -> AsyncIterator[bytes]:
        """The fleet every LIVE_INTERVAL, and each event as it comes (the latest first)."""
        events = self._c.events
        with events.fanout.follow(lambda _: True) as follower:
            for event in events.recent("", EVENTS_ON_OPEN):
                yield sse(_plain(event, _EVENT_FIELDS), "event")
            yield sse(self._state(request), "state")
            loop = asyncio.get_running_loop()
            due = loop.time() + LIVE_INTERVAL
            while True:
                try:
                    async with asyncio.timeout_at(due):
                        new = await follower.get()
                except TimeoutError:
                    yield sse(self._state(request), "state")
                    due = loop.time() + LIVE_INTERVAL
                    continue
                if new is None:
                    return
                yield sse(_plain(new, _EVENT_FIELDS), "event")

    async def _logs(self, request: Request) -> EventStream:
        """A watcher's last LOG_TAIL output lines, then each new one."""
        watcher = request.query.get("watcher", "")
        try:
            self._admin.check_logs(watcher, "", LOG_TAIL)
        except ControllerError as exc:
            raise _http(exc) from None

        async def lines() -> AsyncIterator[bytes]:
            found = self._admin.log_lines(watcher, LOG_TAIL, follow=True)
            try:
                async for line in found:
                    yield sse(_plain(line, _LINE_FIELDS), "line")
            finally:
                await found.aclose()

        return EventStream(self._held(request, lines()))

    # ---- acting ----

    async def _act(self, request: Request) -> Response:
        self._require(request, Right.ACT)
        if ACT_HEADER not in request.headers:
            raise HttpError(403, f"an action needs the {ACT_HEADER} header (the page sends it)")
        parts = request.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "api" or parts[1] not in ("watchers", "agents"):
            raise HttpError(404, f"no action at {request.path[:100]!r}")
        _, kind, name, action = parts
        body = request.json()
        method, call = self._operation(kind, name, action, body)
        counter = self._c.metrics.admin_requests
        try:
            answer = await call()
        except ControllerError as exc:
            counter.inc(method, exc.code)
            return error_response(_http(exc).status, str(exc))
        counter.inc(method, "OK")
        return json_response({"ok": True, "answer": answer})

    def _operation(
        self, kind: str, name: str, action: str, body: Any
    ) -> tuple[str, Callable[[], Awaitable[Any]]]:
        """(the gRPC method it stands for, the call) of one action."""
        admin = self._admin
        if kind == "watchers":
            if action == "scale":
                count = body.get("count") if isinstance(body, dict) else None
                if not isinstance(count, int) or isinstance(count, bool):
                    raise HttpError(400, 'scale needs a body {"count": N}')

                async def scale() -> Any:
                    previous, now = await admin.scale(name, count, False)
                    return {"previous": previous, "numprocesses": now}

                return "Scale", scale
            if action in ("start", "stop", "restart"):

                async def act() -> Any:
                    names = await admin.act(action, [name], False, rolling=action == "restart")
                    return {"watchers": list(names)}

                return action.capitalize(), act
        if kind == "agents" and action in ("drain", "undrain"):

            async def drain() -> Any:
                call = admin.drain if action == "drain" else admin.undrain
                return {"processes": await call(name)}

            return action.capitalize(), drain
        raise HttpError(404, f"no action {action[:32]!r} on {kind}")


def _http(exc: ControllerError) -> HttpError:
    return HttpError(_HTTP_STATUS.get(exc.code, 500), str(exc))
