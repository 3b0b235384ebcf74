"""The AgentService: the gRPC edge of agents' sessions.

An agent dials in and keeps one bidirectional stream (`Connect`). The first message
is its Hello; from then on it sends Observed (its whole state, also the heartbeat),
events, log lines and tail replies, and receives Welcome, then Assignments and
commands. Every message is decoded here into domain types (stack.wire.agent) with
the session's host id stamped on it, and every message out is encoded here: the
controller behind it never sees a wire type. Over mutual TLS the Hello's host id must
be the one in the agent's certificate: an agent cannot pose as another host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol, TypeAlias

import grpc

from stack.aio import TaskGroup, finished_within
from stack.controller.agents import AgentSession
from stack.security.tls import peer_identity
from stack.spec.model import NAME_RULE, valid_name
from stack.spec.session import AgentMessage, Hello, Redirect
from stack.v1 import agent_pb2, agent_pb2_grpc
from stack.wire.agent import (
    UnknownMessage,
    agent_message_from_proto,
    controller_message_to_proto,
    hello_from_proto,
)

log = logging.getLogger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ControllerMessage]"


class AgentHooks(Protocol):
    """What the AgentService needs from the controller."""

    @property
    def stopping(self) -> bool:
        """True once the controller is shutting down: refuse new sessions."""
        ...

    def redirect(self) -> str | None:
        """None while this controller leads; else the leader's address ("" if unknown)."""
        ...

    def agent_connected(self, hello: Hello, peer: str) -> AgentSession:
        """Register the agent; queue Welcome and its Assignment on the returned session."""
        ...

    def agent_message(self, session: AgentSession, message: AgentMessage | None) -> None:
        """Handle one message after the Hello (None: one this side does not know, which
        still shows that the agent is alive)."""
        ...

    def agent_disconnected(self, session: AgentSession) -> None:
        """The stream ended (or was replaced)."""
        ...


WRITE_DRAIN_SECONDS = 5.0
"""How long an ending session's message in flight may take to be written."""
MAX_HELLO_TEXT = 256
"""Characters at most of a Hello's address, version and each label value: `agents`
shows them to every caller, so one hostile Hello must not make that reply huge."""
MAX_LABELS = 64
"""Labels one agent may claim."""


def hello_problem(hello: Hello) -> str:
    """What is wrong with a Hello ("" if nothing). Host ids and label keys become store
    keys, placement terms and log fields, so they must be plain names; the free text is
    bounded because the controller keeps it and shows it."""
    for what, name in [("host id", hello.host_id), *(("label key", k) for k in hello.labels)]:
        if not valid_name(name):
            return f"{what} {name[:64]!r} {NAME_RULE}"
    if len(hello.labels) > MAX_LABELS:
        return f"at most {MAX_LABELS} labels, got {len(hello.labels)}"
    texts = [("address", hello.address), ("version", hello.version)]
    texts += [(f"label {key}", value) for key, value in sorted(hello.labels.items())]
    for what, text in texts:
        if len(text) > MAX_HELLO_TEXT:
            return f"{what} is longer than {MAX_HELLO_TEXT} characters"
    return ""


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    """The gRPC edge of agent sessions."""

    def __init__(self, hooks: AgentHooks) -> None:
        self._hooks = hooks

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> None:
        messages = aiter(request_iterator)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            return
        if first.WhichOneof("body") != "hello" or not first.hello.host_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a Hello with a host id"
            )
        hello = hello_from_proto(first.hello)
        if problem := hello_problem(hello):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        identity = peer_identity(context)
        if identity is not None and identity.name != hello.host_id:
            reason = f"agent certificate is for host {identity.name} but Hello says {hello.host_id}"
            log.warning("refused agent stream from %s: %s", context.peer(), reason)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        if self._hooks.stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the controller is stopping")
        leader = self._hooks.redirect()
        if leader is not None:  # a follower: send the agent to the leader
            await context.write(controller_message_to_proto(Redirect(leader)))
            return
        session = self._hooks.agent_connected(hello, context.peer())
        try:
            async with TaskGroup() as tg:
                reader = tg.create_task(
                    self._read(session, messages), name=f"agent-read-{session.host_id}"
                )
                writer = tg.create_task(
                    self._write(session, context), name=f"agent-write-{session.host_id}"
                )
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                # The agent half-closed, or the session was replaced or dropped. A read
                # may be abandoned, a write may not: gRPC cannot end a call whose write
                # was cancelled half-way, and the agent would wait out its deadline.
                session.close()
                reader.cancel()
                if not await finished_within(writer, WRITE_DRAIN_SECONDS):
                    writer.cancel()  # an agent that reads nothing: give up on it
        finally:
            self._hooks.agent_disconnected(session)

    async def _read(
        self, session: AgentSession, messages: AsyncIterator[agent_pb2.AgentMessage]
    ) -> None:
        async for message in messages:
            if session.closed:
                return
            decoded: AgentMessage | None
            try:
                decoded = agent_message_from_proto(message, session.host_id)
            except UnknownMessage:
                decoded = None  # a newer agent's message: it still shows the agent is alive
            self._hooks.agent_message(session, decoded)

    async def _write(self, session: AgentSession, context: Context) -> None:
        while (queued := await session.next()) is not None:
            fencing_token, body = queued
            await context.write(controller_message_to_proto(body, fencing_token))
