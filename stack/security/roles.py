"""Which certificate role may call which gRPC method, and the interceptor that enforces it.

`admin` may change and read, `viewer` may only read, an `agent` may only hold its
AgentService stream (and no person may open one). The table is explicit and
deny-by-default: a method added to AdminService later is admin-only until it is
listed as a read here. The decision is a pure function (`refusal`) so a table
test covers it; the interceptor only reads the TLS peer and applies it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from stack.security.certs import Identity, Role
from stack.security.tls import is_local_peer, peer_identity

log = logging.getLogger(__name__)

ADMIN_SERVICE = "stack.v1.AdminService"
AGENT_SERVICE = "stack.v1.AgentService"

READ_METHODS = frozenset(
    {"Status", "Agents", "Logs", "Events", "Get", "Export", "Controllers", "Stats"}
)
"""AdminService methods that only read; a viewer may call these (and nothing else)."""


def split_method(full_method: str) -> tuple[str, str]:
    """'/stack.v1.AdminService/Scale' -> ('stack.v1.AdminService', 'Scale')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def refusal(identity: Identity | None, full_method: str) -> str | None:
    """Why `identity` may not call `full_method`, or None when it may."""
    service, method = split_method(full_method)
    if identity is None:
        return "permission denied: no client certificate"
    role = identity.role
    if service == AGENT_SERVICE:
        if role is Role.agent:
            return None
        return f"permission denied: {role} certificates may not connect as an agent"
    if service == ADMIN_SERVICE:
        if role is Role.admin:
            return None
        if role is Role.viewer:
            return None if method in READ_METHODS else f"permission denied: viewer may not {method}"
        return f"permission denied: {role} certificates may not call AdminService"
    return f"permission denied: {role} may not call {full_method}"


Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]


class RoleInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses, with PERMISSION_DENIED and a one-line log, a call its role may not make."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        return rewrap(handler, lambda inner: _guarded(inner, method))


def rewrap(
    handler: grpc.RpcMethodHandler, wrap: Callable[[Handler], Handler]
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour passed through `wrap` (for an interceptor), of the
    same kind: gRPC picks how to drive a behaviour from the kind of its handler."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attribute, make in kinds:
        inner = getattr(handler, attribute)
        if inner is not None:
            return make(
                wrap(inner),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


async def enforce(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Abort the call with PERMISSION_DENIED unless the peer's role allows `method`.

    A call over the local socket passes: only the controller's user and the operator
    group named by --socket-group can open that socket; they administer it.
    """
    if is_local_peer(context):
        return
    identity = peer_identity(context)
    reason = refusal(identity, method)
    if reason is None:
        return
    who = str(identity) if identity is not None else "a peer without certificate"
    log.warning("refused %s from %s (%s): %s", method, who, context.peer(), reason)
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)


def _guarded(inner: Handler, method: str) -> Handler:
    """`inner` behind the role check, of the same kind (coroutine or async generator).

    gRPC picks how to drive a handler from its kind, so the wrapper must match it.
    """
    if inspect.isasyncgenfunction(inner):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await enforce(method, context)
            async for item in inner(request, context):
                yield item

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await enforce(method, context)
        return await inner(request, context)

    return call
