"""The AdminService: stackctl's API, a thin gRPC edge over the Controller.

Each RPC converts the request, calls the controller and converts the answer.
Domain errors become gRPC status codes here (`status_code`, from each error's `code`),
with their one-line message; a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

import grpc

from stack.controller.admin import Admin, check_names
from stack.controller.cluster import ClusterView
from stack.controller.controller import Controller
from stack.controller.errors import (
    ControllerError,
    NotLeader,
)
from stack.controller.status import agents_reply, status_reply
from stack.metrics.tally import Counter
from stack.security.certs import Role
from stack.security.roles import ADMIN_SERVICE, Handler, rewrap, split_method
from stack.security.tls import is_local_peer, peer_identity
from stack.spec.dump import dump_stack, dump_watcher
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


def status_code(exc: ControllerError) -> grpc.StatusCode:
    """The gRPC status that tells a caller of `exc` (its `code`)."""
    return grpc.StatusCode[exc.code]


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
        self._admin = Admin(controller)

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
        previous, now = await self._admin.scale(request.watcher, request.count, request.relative)
        return admin_pb2.ScaleReply(watcher=request.watcher, previous=previous, numprocesses=now)

    async def _act(self, kind: str, request: admin_pb2.WatchersRequest) -> admin_pb2.WatchersReply:
        names = await self._admin.act(kind, list(request.watchers), request.all, request.rolling)
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
        self._c.commands.want_stats()
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
        try:
            self._admin.check_logs(request.watcher, request.host, request.lines)
        except ControllerError as exc:
            await _abort(context, exc)

        async def opened() -> None:
            await context.send_initial_metadata([(STREAM_KEY, "open")])

        async with self._follow_slot(request.follow, context):
            lines = self._admin.log_lines(
                request.watcher,
                request.lines,
                stream=request.stream,
                host=request.host,
                since=request.since,
                follow=request.follow,
                opened=opened,
            )
            async for line in lines:
                yield line_to_proto(line)

    async def Events(
        self, request: admin_pb2.EventsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Event]:
        try:
            self._admin.check_events(request.watcher, request.lines)
        except ControllerError as exc:
            await _abort(context, exc)

        async def opened(last_seq: int) -> None:
            await context.send_initial_metadata(
                [(STREAM_KEY, "open"), (LAST_SEQ_KEY, str(last_seq))]
            )

        async with self._follow_slot(request.follow, context):
            events = self._admin.events(
                request.watcher,
                request.lines,
                after_seq=request.after_seq,
                follow=request.follow,
                opened=opened,
            )
            async for event in events:
                yield event_to_proto(event)

    @asynccontextmanager
    async def _follow_slot(self, follow: bool, context: Context) -> AsyncIterator[None]:
        """One of the caller's follow streams for the block; the call is refused with
        RESOURCE_EXHAUSTED when it holds too many."""
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self._admin.follow_slot(viewer_of(context), follow))
            except ControllerError as exc:
                await _abort(context, exc)
            yield

    @_unary
    async def Drain(
        self, request: admin_pb2.DrainRequest, context: Context
    ) -> admin_pb2.DrainReply:
        processes = await self._admin.drain(request.host_id)
        return admin_pb2.DrainReply(host_id=request.host_id, processes=processes)

    @_unary
    async def Undrain(
        self, request: admin_pb2.DrainRequest, context: Context
    ) -> admin_pb2.DrainReply:
        processes = await self._admin.undrain(request.host_id)
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


class CountingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every AdminService call by method and the status code it ended with
    (stack_admin_requests_total), refusals of the role check included when it is
    the first interceptor."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service, method = split_method(handler_call_details.method)
        if handler is None or service != ADMIN_SERVICE:
            return handler
        return rewrap(handler, lambda inner: _counted(inner, method, self._counter))


def _counted(inner: Handler, method: str, counter: Counter) -> Handler:
    """`inner`, of the same kind, counting how each call ends."""

    def ended(context: Context, failure: BaseException | None) -> None:
        if failure is None:
            code = context.code() or grpc.StatusCode.OK
        elif isinstance(failure, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        elif isinstance(failure, grpc.aio.AbortError):
            code = context.code() or grpc.StatusCode.UNKNOWN
        else:
            code = grpc.StatusCode.UNKNOWN
        counter.inc(method, code.name)

    if inspect.isasyncgenfunction(inner):

        async def stream(request: Any, context: Context) -> Any:
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as exc:
                ended(context, exc)
                raise
            ended(context, None)

        return stream

    async def call(request: Any, context: Context) -> Any:
        try:
            reply = await inner(request, context)
        except BaseException as exc:
            ended(context, exc)
            raise
        ended(context, None)
        return reply

    return call
