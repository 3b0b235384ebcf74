"""Agents as the controller sees them: the registry, their sessions, the AgentService.

An agent dials in and keeps one bidirectional stream (`Connect`). The first
message is its Hello; from then on it sends Observed (its whole state, also the
heartbeat), events, log lines and tail replies, and receives Welcome, then
Assignments and commands through a per-session queue, so a slow agent never
blocks the controller or other agents. A second stream with the same host id
replaces the first. An agent silent for `agent_timeout` is down; so is one
whose stream ended. Down agents keep their last Observed (shown as UNKNOWN).
Over mutual TLS the Hello's host id must be the one in the agent's certificate:
an agent cannot pose as another host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from stack.controller.containment import AgentLimits, Meter
from stack.security.tls import peer_identity
from stack.spec.model import NAME_RULE, valid_name
from stack.v1 import agent_pb2, agent_pb2_grpc, types_pb2

log = logging.getLogger(__name__)


class AgentSession:
    """One live stream to an agent, with its outbound queue."""

    def __init__(self, host_id: str, queue_size: int) -> None:
        self.host_id = host_id
        self._queue: asyncio.Queue[agent_pb2.ControllerMessage | None] = asyncio.Queue(
            maxsize=queue_size
        )
        self.closed = False
        """True once the session was replaced, dropped or ended."""
        self.last_assignment: bytes | None = None
        """The last Assignment queued for this session, serialized (to skip repeats)."""

    def send(self, message: agent_pb2.ControllerMessage) -> None:
        """Queue a message; a session too far behind is closed (the agent reconnects)."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("agent %s is not reading its stream: dropping the session", self.host_id)
            self.close()

    def close(self) -> None:
        """End the session: its writer stops and the stream ends."""
        if self.closed:
            return
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> agent_pb2.ControllerMessage | None:
        """The next message to write, or None when the session is closed."""
        return await self._queue.get()


@dataclass
class AgentRecord:
    """What the controller knows of one host, kept after it goes down."""

    host_id: str
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    version: str = ""
    started_at: float = 0.0
    """Unix time its agent process started (a crash restart changes it, a reload does not)."""
    reexecuted_at: float = 0.0
    """Unix time its agent last re-executed in place (reload, upgrade); 0: never."""
    capacity: int = 0
    observed: agent_pb2.Observed = field(default_factory=agent_pb2.Observed)
    """The last Observed it sent (the Hello's at first)."""
    last_seen: float = 0.0
    """Unix time of its last message."""
    last_seen_mono: float = 0.0
    """Monotonic time of its last message (for the timeout)."""
    ready: bool = False
    """Connected and heard from within the timeout."""
    down_since: float = 0.0
    """Monotonic time it was last marked down (its share moves after reschedule_after)."""
    session: AgentSession | None = None
    """The current stream, if any."""
    meter: Meter = field(default_factory=lambda: Meter(AgentLimits()))
    """Its rate caps, and what the controller refused from it (see containment.py)."""
    assigned: dict[str, set[int]] = field(default_factory=dict)
    """watcher -> every worker id an Assignment sent it named (what it may report)."""
    reported: set[tuple[str, int]] = field(default_factory=set)
    """(watcher, wid) of every process its last kept report names."""
    announced_refusals: tuple[int, ...] = ()
    """The refusal counts the last `agent_refused` event told of."""
    refusals_announced_at: float = 0.0
    """Monotonic time before which no other `agent_refused` event is recorded."""

    def placement_key(self) -> frozenset[tuple[str, int, bool]]:
        """What placement reads of this host's report: each (watcher, wid, running)."""
        running = types_pb2.PROCESS_STATE_RUNNING
        return frozenset((p.watcher, p.wid, p.state == running) for p in self.observed.processes)

    def wids(self) -> dict[str, frozenset[int]]:
        """watcher -> worker ids this host reports."""
        found: dict[str, set[int]] = {}
        for proc in self.observed.processes:
            found.setdefault(proc.watcher, set()).add(proc.wid)
        return {name: frozenset(wids) for name, wids in found.items()}


class AgentRegistry:
    """Every agent ever seen by this controller, by host id."""

    def __init__(
        self,
        queue_size: int,
        limits: AgentLimits | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records: dict[str, AgentRecord] = {}
        self._queue_size = queue_size
        self._limits = limits or AgentLimits()
        self._wall = wall
        self._mono = mono

    def connect(self, hello: agent_pb2.Hello, peer: str) -> AgentSession:
        """Register a new stream for `hello.host_id`, replacing any previous one."""
        record = self.records.get(hello.host_id)
        if record is None:
            record = AgentRecord(host_id=hello.host_id, meter=Meter(self._limits))
            self.records[hello.host_id] = record
        elif record.session is not None:
            log.info("agent %s reconnected: replacing its previous stream", hello.host_id)
            record.session.close()
        record.address = hello.address or peer
        record.labels = dict(hello.labels)
        record.version = hello.version
        record.started_at = hello.started_at
        record.reexecuted_at = hello.reexecuted_at
        record.capacity = hello.capacity
        record.observed = hello.observed
        record.session = AgentSession(hello.host_id, self._queue_size)
        record.ready = True
        self._touch(record)
        return record.session

    def current(self, session: AgentSession) -> AgentRecord | None:
        """The record of `session` if it is still that host's current stream."""
        record = self.records.get(session.host_id)
        if record is None or record.session is not session:
            return None
        return record

    def heard(self, session: AgentSession) -> tuple[AgentRecord | None, bool]:
        """Note a message on `session`: (its record or None if replaced, came back up?)."""
        record = self.current(session)
        if record is None:
            return None, False
        self._touch(record)
        came_back = not record.ready
        record.ready = True
        return record, came_back

    def disconnect(self, session: AgentSession) -> bool:
        """The stream ended: mark the host down. False when it was already replaced."""
        session.close()
        record = self.current(session)
        if record is None:
            return False
        record.session = None
        was_ready = record.ready
        if was_ready:
            record.ready = False
            record.down_since = self._mono()
        return was_ready

    def expire(self, timeout: float) -> list[str]:
        """Mark down every ready agent silent for more than `timeout`; return their ids."""
        now = self._mono()
        expired = []
        for record in self.records.values():
            if record.ready and now - record.last_seen_mono > timeout:
                record.ready = False
                record.down_since = now
                expired.append(record.host_id)
        return sorted(expired)

    def lost(self, reschedule_after: float) -> frozenset[str]:
        """Hosts down for at least `reschedule_after`: their share belongs elsewhere."""
        now = self._mono()
        return frozenset(
            r.host_id
            for r in self.records.values()
            if not r.ready and now - r.down_since >= reschedule_after
        )

    def ready(self) -> list[AgentRecord]:
        """The ready agents with a live session, in host id order."""
        return [r for _, r in sorted(self.records.items()) if r.ready and r.session is not None]

    def _touch(self, record: AgentRecord) -> None:
        record.last_seen = self._wall()
        record.last_seen_mono = self._mono()


class AgentHooks(Protocol):
    """What the AgentService needs from the controller."""

    @property
    def stopping(self) -> bool:
        """True once the controller is shutting down: refuse new sessions."""
        ...

    def redirect(self) -> str | None:
        """None while this controller leads; else the leader's address ("" if unknown)."""
        ...

    def agent_connected(self, hello: agent_pb2.Hello, peer: str) -> AgentSession:
        """Register the agent; queue Welcome and its Assignment on the returned session."""
        ...

    def agent_message(self, session: AgentSession, message: agent_pb2.AgentMessage) -> None:
        """Handle one message after the Hello."""
        ...

    def agent_disconnected(self, session: AgentSession) -> None:
        """The stream ended (or was replaced)."""
        ...


class _SessionEnded(Exception):
    """Internal: one side of a session finished, end the other."""


MAX_HELLO_TEXT = 256
"""Characters at most of a Hello's address, version and each label value: `agents`
shows them to every caller, so one hostile Hello must not make that reply huge."""
MAX_LABELS = 64
"""Labels one agent may claim."""


def hello_problem(hello: agent_pb2.Hello) -> str:
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
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ControllerMessage],
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
        if problem := hello_problem(first.hello):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        identity = peer_identity(context)
        if identity is not None and identity.name != first.hello.host_id:
            reason = (
                f"agent certificate is for host {identity.name} "
                f"but Hello says {first.hello.host_id}"
            )
            log.warning("refused agent stream from %s: %s", context.peer(), reason)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        if self._hooks.stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the controller is stopping")
        leader = self._hooks.redirect()
        if leader is not None:  # a follower: send the agent to the leader
            await context.write(
                agent_pb2.ControllerMessage(redirect=agent_pb2.Redirect(leader_address=leader))
            )
            return
        session = self._hooks.agent_connected(first.hello, context.peer())
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(session, messages), name=f"agent-read-{session.host_id}")
                tg.create_task(self._write(session, context), name=f"agent-write-{session.host_id}")
        except* _SessionEnded:
            pass
        finally:
            self._hooks.agent_disconnected(session)

    async def _read(
        self, session: AgentSession, messages: AsyncIterator[agent_pb2.AgentMessage]
    ) -> None:
        async for message in messages:
            if session.closed:
                break
            self._hooks.agent_message(session, message)
        raise _SessionEnded

    async def _write(
        self,
        session: AgentSession,
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ControllerMessage],
    ) -> None:
        while (message := await session.next()) is not None:
            await context.write(message)
        raise _SessionEnded
