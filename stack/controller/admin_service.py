"""The AdminService: stackctl's API, a thin gRPC edge over the Controller.

Each RPC converts the request, calls the controller and converts the answer.
Domain errors become gRPC status codes here and only here (`STATUS_CODES`), with
their one-line message; a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

import grpc

from stack.controller.cluster import ClusterView
from stack.controller.controller import Controller
from stack.controller.errors import (
    Conflict,
    ControllerError,
    InvalidArgument,
    NotFound,
    NotLeader,
    ResourceExhausted,
    Unavailable,
)
from stack.controller.status import agents_reply, status_reply
from stack.controller.viewers import check_tail
from stack.loglines import SeenLines
from stack.security.certs import Role
from stack.security.tls import is_local_peer, peer_identity
from stack.spec.dump import dump_stack, dump_watcher
from stack.spec.model import NAME_RULE, valid_name
from stack.spec.reports import LogLine
from stack.spec.secrets import masked
from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from stack.wire.agent import event_to_proto, line_to_proto
from stack.wire.spec import watcher_to_proto

LEADER_KEY = "stack-leader"
"""Trailing metadata of a follower's refusal: the leader's HOST:PORT (see admin.proto)."""
ANSWERED_KEY = "stack-controller"
"""Trailing metadata of every refusal the controller itself sends."""
STREAM_KEY = "stack-stream"
"""Initial metadata of a Logs or Events stream the leader accepted: tells a following
client at once that it reached a leader, before any item comes."""
LAST_SEQ_KEY = "stack-last-seq"
"""Initial metadata of an Events stream: the seq of the last event recorded when it
opened (a client that has printed nothing yet resumes after it)."""

STATUS_CODES: dict[type[ControllerError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ABORTED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}
"""The status of each of the controller's errors (FencedOut and NotLeader are
Unavailable); any other ControllerError is INTERNAL."""


def status_code(exc: ControllerError) -> grpc.StatusCode:
    """The gRPC status that tells a caller of `exc`."""
    for kind in type(exc).__mro__:
        code = STATUS_CODES.get(kind)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


Req = TypeVar("Req")
Rep = TypeVar("Rep")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _unary(
    method: Callable[[Any, Req, Context], Awaitable[Rep]],
) -> Callable[[Any, Req, Context], Awaitable[Rep]]:
    """Only on the leader; translate a ControllerError raised by `method` into the
    RPC's status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: Context) -> Rep:
        try:
            self._c.require_leader()
            return await method(self, request, context)
        except ControllerError as exc:
            await _abort(context, exc)
            raise  # abort raises; this keeps type checkers honest

    return wrapper


async def _abort(context: Context, exc: ControllerError) -> None:
    """Refuse the call with `exc`; the metadata tells clients it came from a controller
    (so an UNAVAILABLE is not taken for a connection failure) and where the leader is."""
    metadata = [(ANSWERED_KEY, "1")]
    if isinstance(exc, NotLeader):
        metadata.append((LEADER_KEY, exc.leader))
    context.set_trailing_metadata(metadata)
    await context.abort(status_code(exc), one_line(str(exc)))


MAX_DETAILS = 500
"""Characters of an error message at most: messages quote what the caller sent (a file
name, a key), and gRPC refuses a status whose headers grow past 8 KiB."""


def one_line(message: str) -> str:
    """`message` cut to MAX_DETAILS characters."""
    return message if len(message) <= MAX_DETAILS else message[: MAX_DETAILS - 3] + "..."


def check_names(what: str, *names: str) -> None:
    """InvalidArgument for a name no stack file or agent could have made.

    Called first by every handler that takes a watcher or host name, so a
    careless or hostile name is called invalid rather than merely unknown.
    """
    for name in names:
        if not valid_name(name):
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise InvalidArgument(f"{what} {shown!r} {NAME_RULE}")


def viewer_of(context: Context) -> str:
    """Who holds a follow stream, for its cap: the certificate, the local socket, or the
    plaintext peer's address."""
    if is_local_peer(context):
        return "the local socket"
    identity = peer_identity(context)
    if identity is not None:
        return str(identity)
    return f"plaintext peer {context.peer().rpartition(':')[0]}"


def may_show_secrets(context: Context) -> bool:
    """Whether the caller may read secret env values: an admin, or anyone over
    plaintext (which the controller serves on loopback only, or with --insecure)."""
    identity = peer_identity(context)
    return identity is None or identity.role is Role.admin


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """AdminService over one Controller."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller

    @_unary
    async def Apply(
        self, request: admin_pb2.ApplyRequest, context: Context
    ) -> admin_pb2.ApplyReply:
        if_generation = request.if_generation if request.HasField("if_generation") else None
        outcome = await self._c.apply(
            request.content, request.filename, request.dry_run, if_generation
        )
        return admin_pb2.ApplyReply(
            changes=[
                admin_pb2.Change(
                    op=c.op, kind=c.kind, name=c.name, details=list(c.details), replaces=c.replaces
                )
                for c in outcome.changes
            ],
            applied=outcome.applied,
            generation=outcome.generation,
            warnings=outcome.warnings,
        )

    @_unary
    async def Scale(
        self, request: admin_pb2.ScaleRequest, context: Context
    ) -> admin_pb2.ScaleReply:
        check_names("watcher name", request.watcher)
        previous, now = await self._c.scale(request.watcher, request.count, request.relative)
        return admin_pb2.ScaleReply(watcher=request.watcher, previous=previous, numprocesses=now)

    async def _act(self, kind: str, request: admin_pb2.WatchersRequest) -> admin_pb2.WatchersReply:
        check_names("watcher name", *request.watchers)
        rolling = request.rolling and kind == "restart"
        names = await self._c.act(kind, list(request.watchers), request.all, rolling=rolling)
        return admin_pb2.WatchersReply(watchers=list(names))

    @_unary
    async def Start(
        self, request: admin_pb2.WatchersRequest, context: Context
    ) -> admin_pb2.WatchersReply:
        return await self._act("start", request)

    @_unary
    async def Stop(
        self, request: admin_pb2.WatchersRequest, context: Context
    ) -> admin_pb2.WatchersReply:
        return await self._act("stop", request)

    @_unary
    async def Restart(
        self, request: admin_pb2.WatchersRequest, context: Context
    ) -> admin_pb2.WatchersReply:
        return await self._act("restart", request)

    @_unary
    async def Reload(
        self, request: admin_pb2.WatchersRequest, context: Context
    ) -> admin_pb2.WatchersReply:
        return await self._act("reload", request)

    @_unary
    async def Reset(
        self, request: admin_pb2.WatchersRequest, context: Context
    ) -> admin_pb2.WatchersReply:
        return await self._act("reset", request)

    @_unary
    async def Signal(
        self, request: admin_pb2.SignalRequest, context: Context
    ) -> admin_pb2.SignalReply:
        check_names("watcher name", request.watcher)
        agents, processes = self._c.commands.signal(
            request.watcher, request.signal, request.wid, request.children
        )
        return admin_pb2.SignalReply(agents=agents, processes=processes)

    @_unary
    async def Remove(
        self, request: admin_pb2.RemoveRequest, context: Context
    ) -> admin_pb2.RemoveReply:
        check_names("watcher name", request.watcher)
        await self._c.remove(request.watcher)
        return admin_pb2.RemoveReply(watcher=request.watcher)

    @_unary
    async def Status(
        self, request: admin_pb2.StatusRequest, context: Context
    ) -> admin_pb2.StatusReply:
        if request.watcher:
            check_names("watcher name", request.watcher)
            self._c.check_watcher(request.watcher)
        return status_reply(
            self._c.state,
            self._c.placement,
            list(self._c.agents.records.values()),
            request.watcher,
        )

    @_unary
    async def Agents(
        self, request: admin_pb2.AgentsRequest, context: Context
    ) -> admin_pb2.AgentsReply:
        return agents_reply(self._c.agents.records.values(), self._c.state.drained)

    @_unary
    async def Get(self, request: admin_pb2.GetRequest, context: Context) -> admin_pb2.GetReply:
        check_names("watcher name", request.watcher)
        watcher = self._c.state.watcher(request.watcher)
        return admin_pb2.GetReply(
            spec=watcher_to_proto(masked(watcher.spec)),
            active=watcher.active,
            toml=dump_watcher(watcher.spec, mask_secrets=True),
        )

    @_unary
    async def Export(
        self, request: admin_pb2.ExportRequest, context: Context
    ) -> admin_pb2.ExportReply:
        if request.show_secrets and not may_show_secrets(context):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "permission denied: only admin may export with --show-secrets",
            )
        toml = dump_stack(self._c.state.stack(), mask_secrets=not request.show_secrets)
        return admin_pb2.ExportReply(toml=toml)

    async def Logs(
        self, request: admin_pb2.LogsRequest, context: Context
    ) -> AsyncIterator[types_pb2.LogLine]:
        watcher, stream, host = request.watcher, request.stream, request.host
        try:
            self._c.require_leader()
            check_names("watcher name", watcher)
            if host:
                check_names("host id", host)
            check_tail(request.lines, self._c.settings.viewer_limits)
        except ControllerError as exc:
            await _abort(context, exc)
        if watcher not in self._c.state.watchers:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown watcher {watcher!r}")

        def wanted(line: LogLine) -> bool:
            return (
                line.watcher == watcher
                and (not stream or line.stream == stream)
                and (not host or line.host_id == host)
                and line.at >= request.since
            )

        async with self._follow_slot(request.follow, context):
            with self._c.logs.fanout.follow(wanted) as follower:
                await context.send_initial_metadata([(STREAM_KEY, "open")])
                if request.since > 0:
                    # A follow resuming on a controller that just took over: the lines it
                    # missed are in the agents' files, and an agent still reconnecting
                    # would answer no tail. Give them the time they have to come back
                    # (live lines wait in the follower meanwhile).
                    await asyncio.sleep(self._c.scheduler.warm_in())
                sent = SeenLines()
                if request.lines > 0:
                    tail = await self._c.commands.tail(watcher, request.lines, stream, host)
                    for line in tail:
                        if line.at >= request.since:
                            sent.note(line)
                            yield line_to_proto(line)
                # Live lines began before the tail was read: skip the ones it had.
                replay = sent.replay()
                while request.follow and (live := await follower.get()) is not None:
                    if not replay.repeats(live):
                        yield line_to_proto(live)

    async def Events(
        self, request: admin_pb2.EventsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Event]:
        watcher = request.watcher
        try:
            self._c.require_leader()
            if watcher:
                check_names("watcher name", watcher)
            check_tail(request.lines, self._c.settings.viewer_limits)
        except ControllerError as exc:
            await _abort(context, exc)
        if watcher and watcher not in self._c.state.watchers:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown watcher {watcher!r}")
        async with self._follow_slot(request.follow, context):
            events = self._c.events
            with events.fanout.follow(
                lambda event: not watcher or event.watcher == watcher
            ) as follower:
                opened_at = str(events.next_seq - 1)
                await context.send_initial_metadata(
                    [(STREAM_KEY, "open"), (LAST_SEQ_KEY, opened_at)]
                )
                if request.after_seq > 0:
                    kept = events.after(request.after_seq, watcher)
                else:
                    kept = events.recent(watcher, request.lines)
                last = request.after_seq
                for event in kept:
                    last = event.seq
                    yield event_to_proto(event)
                # The follower got every event from the moment it joined: skip the ones sent.
                while request.follow and (new := await follower.get()) is not None:
                    if new.seq > last:
                        last = new.seq
                        yield event_to_proto(new)

    @asynccontextmanager
    async def _follow_slot(self, follow: bool, context: Context) -> AsyncIterator[None]:
        """One of the caller's follow streams for the block (nothing to hold without
        `follow`); the call is refused with RESOURCE_EXHAUSTED when it holds too many."""
        if not follow:
            yield
            return
        viewer = viewer_of(context)
        try:
            self._c.follows.take(viewer)
        except ControllerError as exc:
            await _abort(context, exc)
        try:
            yield
        finally:
            self._c.follows.give_back(viewer)

    @_unary
    async def Drain(
        self, request: admin_pb2.DrainRequest, context: Context
    ) -> admin_pb2.DrainReply:
        check_names("host id", request.host_id)
        processes = await self._c.drain(request.host_id)
        return admin_pb2.DrainReply(host_id=request.host_id, processes=processes)

    @_unary
    async def Undrain(
        self, request: admin_pb2.DrainRequest, context: Context
    ) -> admin_pb2.DrainReply:
        check_names("host id", request.host_id)
        processes = await self._c.undrain(request.host_id)
        return admin_pb2.DrainReply(host_id=request.host_id, processes=processes)

    async def Controllers(
        self, request: admin_pb2.ControllersRequest, context: Context
    ) -> admin_pb2.ControllersReply:
        """Answered by any controller, leader or not."""
        return controllers_reply(await self._c.controllers())

    @_unary
    async def Rebalance(
        self, request: admin_pb2.RebalanceRequest, context: Context
    ) -> admin_pb2.RebalanceReply:
        check_names("watcher name", request.watcher)
        moved = self._c.rebalance(request.watcher)
        return admin_pb2.RebalanceReply(watcher=request.watcher, moved=moved)


def controllers_reply(view: ClusterView) -> admin_pb2.ControllersReply:
    """The group of controllers as `stackctl controllers` reads it."""
    return admin_pb2.ControllersReply(
        leader_address=view.leader_address,
        fencing_token=view.fencing_token,
        store=view.store,
        answered_by=view.answered_by,
        controllers=[
            admin_pb2.ControllerInfo(
                controller_id=info.controller_id,
                address=info.address,
                leader=info.leader,
                version=info.version,
            )
            for info in view.controllers
        ],
        members=[
            admin_pb2.StoreMember(endpoint=m.endpoint, healthy=m.healthy, error=m.error)
            for m in view.members
        ],
    )
