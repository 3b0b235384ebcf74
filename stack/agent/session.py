"""The agent's gRPC stream to the controller: Hello, Assignments in, Observed/events/logs out.

The agent dials out (`AgentService.Connect`) and keeps one stream open. It sends Hello
first, applies every Assignment it is pushed (unless fenced off), persists it and
answers with Observed carrying that generation. Observed is re-sent whenever something
changed (coalesced) and at least every heartbeat interval; events and log lines are
shipped in batches. If the stream fails or ends, workers keep running (losing the
control plane never restarts a worker) and the session reconnects with exponential
backoff and full jitter, logging one line per lost connection. A controller that
answers but knows no leader yet (an election under way) is asked again within
ANSWERED_RETRY_MAX seconds, however long that lasts: the new leader then hears from
this agent within a second of winning, well inside the hold a new leader keeps on
the share of an agent that has not come back.

`--controller` may list several controllers (HA): the session tries them in turn,
and a follower's Redirect sends it straight to the leader. Keepalive pings notice a
controller that stopped answering (a paused or partitioned leader) even while the TCP
connection looks open. The stream is gRPC, spoken by h2_stream.py: the agent does
without grpcio (see there why).

With TLS settings the stream is mutual TLS: the agent presents its host's
certificate and accepts only a controller signed by its CA for the address it
dials. A failed handshake is explained in the log line (unknown CA, expired...).

The session is the agent's edge: every message is decoded from its wire form here
(stack.wire.agent) into the domain types the engine takes, and what the engine reports
is encoded here; the engine never sees a generated type.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import deque
from typing import Final

from google.protobuf.message import DecodeError

import stack
from stack.agent.engine import Engine
from stack.agent.h2_stream import Stream, StreamError, client_context
from stack.agent.settings import AgentSettings
from stack.agent.tls_check import TlsChecker
from stack.aio import TaskGroup, wait_event
from stack.security.limits import MAX_MESSAGE_BYTES
from stack.security.local import is_unix
from stack.security.tls_files import TlsError
from stack.spec.assignment import Assignment
from stack.spec.observed import Observed
from stack.spec.session import (
    AgentMessage,
    EventBatch,
    Hello,
    LogBatch,
    Redirect,
    Reloading,
    SignalCommand,
    StatsWanted,
    TailReply,
    TailRequest,
    Welcome,
)
from stack.v1 import agent_pb2
from stack.wire.agent import UnknownMessage, agent_message_to_proto, controller_message_from_proto

log = logging.getLogger(__name__)

BATCH = 500

CONNECT: Final = "/stack.v1.AgentService/Connect"
"""The one method the agent calls."""
ANSWERED_RETRY_MAX = 1.0
"""Backoff cap in seconds after a controller answered without a leader to name."""
REDIRECT_HOPS = 3
"""Redirects followed one after another before the session takes a pause."""


def backoff_ceiling(answered: bool, settings: AgentSettings) -> float:
    """The most the session waits before dialing again: reconnect_max when no controller
    answered, ANSWERED_RETRY_MAX when one did but named no leader (an election ends
    within a lease; waiting longer only delays the agent's return to the new leader)."""
    return min(ANSWERED_RETRY_MAX, settings.reconnect_max) if answered else settings.reconnect_max


def next_backoff(backoff: float, answered: bool, settings: AgentSettings) -> float:
    """The backoff after another failed attempt: doubled, up to its ceiling."""
    return min(max(backoff * 2, settings.reconnect_min), backoff_ceiling(answered, settings))


def _cancelling() -> bool:
    """Whether the running task is being cancelled.

    A cancel can surface as another error: the stream's writer, cancelled with the call,
    finds the RPC finished and says so. Treated as the error it is, the cancel would be
    lost and the session would reconnect instead of ending.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class SessionError(Exception):
    """The stream to the controller failed; str() is one line."""


class _Redirected(Exception):
    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


class Session:
    """Keeps this agent connected to the (leader) controller for as long as it runs."""

    def __init__(self, settings: AgentSettings, engine: Engine, address: str = "") -> None:
        self.settings = settings
        self.engine = engine
        self.addresses = [a.strip() for a in settings.controller.split(",") if a.strip()]
        """The controllers to try, in turn (a follower's Redirect names the leader)."""
        self._next = 0
        self.address = self.addresses[0]
        if address:  # the leader the previous image of the agent was connected to
            self._follow(address)
        self.connected = asyncio.Event()
        """Set while a stream is established (after Welcome)."""
        self._heartbeat = settings.heartbeat_interval
        self._tls = None if settings.tls is None else TlsChecker(settings.tls, engine.reaper)
        self._outbox: deque[AgentMessage] | None = None
        """What the current stream's writer sends next (None: no stream)."""
        self._leaving = False
        """A re-execution is under way: the Reloading notice is (being) sent."""
        self._left = asyncio.Event()
        """Set once the controller ended the stream after the notice."""

    async def leave(self, timeout: float) -> bool:
        """Before a re-execution: tell the controller that this agent comes straight
        back (a Reloading notice, then the end of what it writes) and wait, `timeout`
        seconds at most, for the controller to end the stream: it has then read the
        notice, and marks nothing down. False when no controller is connected or it did
        not answer in time. The session reconnects no more; its owner cancels it."""
        self._leaving = True
        if self._outbox is None or not self.connected.is_set():
            return False
        self._outbox.append(Reloading())
        self.engine.updates.set()
        return await wait_event(self._left, timeout)

    async def run(self) -> None:
        """Connect, serve, reconnect; returns only when cancelled."""
        backoff = self.settings.reconnect_min
        quiet = False
        leaderless = False
        hops = 0
        while True:
            welcomed = [False]
            answered = False
            try:
                await self._serve(self.address, welcomed)
            except _Redirected as redirect:
                answered = True
                hops += 1
                # Followers may name each other for a moment during an election.
                if redirect.address and redirect.address != self.address and hops <= REDIRECT_HOPS:
                    log.info(
                        "controller %s redirects to the leader at %s",
                        self.address,
                        redirect.address,
                    )
                    self._follow(redirect.address)
                    backoff = self.settings.reconnect_min
                    continue
                if not leaderless:
                    log.info("controller %s: no leader yet (election in progress)", self.address)
                else:
                    log.debug("controller %s: still no leader", self.address)
                leaderless = True
            except Exception as exc:  # a guard: never let one bad message end the agent
                if _cancelling():  # an error on the way out of a cancel is that cancel
                    raise asyncio.CancelledError from None
                if not isinstance(exc, SessionError):
                    log.exception("session to %s failed", self.address)
                elif welcomed[0]:
                    log.warning("connection to controller %s lost: %s", self.address, exc)
                elif not quiet:
                    log.warning("controller %s unreachable (retrying): %s", self.address, exc)
                else:
                    log.debug("controller %s still unreachable: %s", self.address, exc)
            finally:
                self.connected.clear()
            quiet = not welcomed[0]
            hops = 0  # a pause ends a chain of redirects: the next one may be followed
            if welcomed[0]:
                backoff = self.settings.reconnect_min
                leaderless = False
            else:
                self._rotate()
            backoff = min(backoff, backoff_ceiling(answered, self.settings))
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = next_backoff(backoff, answered, self.settings)

    def _follow(self, address: str) -> None:
        """Dial `address` next (a redirect); the list goes on from there if it fails."""
        self.address = address
        if address in self.addresses:
            self._next = self.addresses.index(address)

    def _rotate(self) -> None:
        """Dial the next controller of the list next time."""
        if len(self.addresses) > 1:
            self._next = (self._next + 1) % len(self.addresses)
            self.address = self.addresses[self._next]

    async def _dial(self, address: str) -> Stream:
        """The stream, plaintext or mutual TLS; TLS files are re-read for each connection.
        The controller's local socket (unix:PATH) takes no certificate."""
        tls = None
        if self._tls is not None and not is_unix(address):
            try:
                pems = await self._tls.pems()
            except TlsError as exc:
                raise SessionError(str(exc)) from None
            tls = client_context(pems.ca, pems.cert, pems.key)
        return await Stream.open(
            address, CONNECT, tls=tls, max_message=MAX_MESSAGE_BYTES,
            user_agent=f"stack-agent/{stack.__version__}",
        )  # fmt: skip

    async def _explain(self, address: str, error: StreamError) -> str:
        """The error's line, with the TLS reason when the handshake was the problem."""
        text = str(error)
        if self.settings.tls is None or is_unix(address) or error.code != "UNAVAILABLE":
            return text
        assert self._tls is not None
        reason = await self._tls.diagnose(address, "controller")
        return f"TLS: {reason}" if reason else text

    async def _serve(self, address: str, welcomed: list[bool]) -> None:
        """One connection; sets welcomed[0] once the controller said Welcome."""
        try:
            call = await self._dial(address)
        except StreamError as exc:
            raise SessionError(await self._explain(address, exc)) from None
        outbox: deque[AgentMessage] = deque()
        self._outbox = outbox
        try:
            await call.write(_encode(self._hello()))
            async with TaskGroup() as tg:
                reader = tg.create_task(self._read(call, outbox, welcomed), name="session read")
                writer = tg.create_task(self._write(call, outbox), name="session write")
                await reader
                writer.cancel()
        except* StreamError as group:
            error = group.exceptions[0]
            assert isinstance(error, StreamError)
            raise SessionError(await self._explain(address, error)) from None
        except* _Redirected as group:
            raise group.exceptions[0] from None
        finally:
            self._outbox = None
            call.close()
        if self._leaving:  # the controller read the Reloading notice: the reload goes on
            await asyncio.Event().wait()  # until its owner cancels it
        raise SessionError("the controller closed the stream")

    def _hello(self) -> Hello:
        return Hello(
            host_id=self.settings.host_id,
            labels=self.settings.labels,
            version=stack.__version__,
            last_generation=self.engine.generation,
            last_fencing_token=self.engine.fencing_token,
            observed=self.engine.observed(),
            address=socket.gethostname(),
            started_at=self.engine.started_at,
            reexecuted_at=self.engine.reexecuted_at,
        )

    async def _read(
        self,
        call: Stream,
        outbox: deque[AgentMessage],
        welcomed: list[bool],
    ) -> None:
        while True:
            data = await call.read()
            if data is None:
                if self._leaving:
                    self._left.set()
                return
            try:
                msg = agent_pb2.ControllerMessage.FromString(data)
            except DecodeError as exc:
                raise StreamError("INTERNAL", f"a message that does not decode: {exc}") from None
            try:
                _, body = controller_message_from_proto(msg)
            except UnknownMessage as exc:  # a newer controller's: nothing to do with it
                log.debug("controller %s: %s", self.address, exc)
                continue
            if isinstance(body, Welcome):
                # A second Welcome on the same stream only changes the interval (the
                # controller's fleet grew or shrank).
                again = welcomed[0]
                welcomed[0] = True
                self.connected.set()
                self.engine.note_fencing_token(body.fencing_token)
                if body.heartbeat_interval > 0:
                    if body.heartbeat_interval < self._heartbeat:
                        self.engine.updates.set()  # the writer waits out the longer one
                    self._heartbeat = body.heartbeat_interval
                if again:
                    log.info("controller %s: heartbeat every %gs", self.address, self._heartbeat)
                else:
                    log.info("connected to controller %s", self.address)
            elif isinstance(body, Assignment):
                self.engine.apply(body)
                outbox.append(self.engine.observed())
                self.engine.updates.set()
            elif isinstance(body, TailRequest):
                outbox.append(self._tail(body))
                self.engine.updates.set()
            elif isinstance(body, SignalCommand):
                self._signal(body)
            elif isinstance(body, StatsWanted):
                self.engine.want_stats(body.seconds)
            elif isinstance(body, Redirect):
                raise _Redirected(body.leader_address)

    def _tail(self, request: TailRequest) -> TailReply:
        if request.watcher not in self.engine.watchers:
            error = f"no watcher {request.watcher!r} on host {self.settings.host_id}"
            return TailReply(request_id=request.request_id, error=error)
        lines = self.engine.tail(request.watcher, request.stream, request.lines)
        return TailReply(request_id=request.request_id, lines=tuple(lines))

    def _signal(self, command: SignalCommand) -> None:
        try:
            self.engine.signal(command.watcher, command.wid, command.signal, command.children)
        except (KeyError, ValueError) as exc:
            log.warning("signal %s to %s: %s", command.signal, command.watcher, exc)

    async def _write(
        self,
        call: Stream,
        outbox: deque[AgentMessage],
    ) -> None:
        engine = self.engine
        last_observed = time.monotonic()
        encoded: tuple[Observed, bytes] | None = None
        while True:
            timeout = max(0.0, last_observed + self._heartbeat - time.monotonic())
            await wait_event(engine.updates, timeout)
            if not outbox:
                await asyncio.sleep(self.settings.coalesce_interval)
            engine.updates.clear()
            while outbox:
                body = outbox.popleft()
                await call.write(_encode(body))
                if isinstance(body, Observed):
                    last_observed = time.monotonic()
                elif isinstance(body, Reloading):  # the last thing this image says
                    await call.done_writing()
                    return
            while engine.pending():
                events = engine.take_events(BATCH)
                if events:
                    await call.write(_encode(EventBatch(tuple(events))))
                lines = engine.take_logs(BATCH)
                if lines:
                    await call.write(_encode(LogBatch(tuple(lines))))
            heartbeat_due = time.monotonic() - last_observed >= self._heartbeat
            if engine.status_dirty() or heartbeat_due:
                observed = engine.observed()
                if encoded is None or encoded[0] is not observed:  # else: a heartbeat as before
                    encoded = (observed, _encode(observed))
                await call.write(encoded[1])
                last_observed = time.monotonic()


def _encode(message: AgentMessage) -> bytes:
    return agent_message_to_proto(message).SerializeToString()
