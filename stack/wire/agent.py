"""What crosses an agent's session: domain types (stack.spec) to stack.v1 messages and back.

The controller's AgentService decodes every AgentMessage here and encodes every
ControllerMessage; the agent's session does the reverse. Enums cross as their numbers
(the domain's IntEnums mirror the wire's; a number a newer peer added reads as
UNSPECIFIED). A decoder of what an agent sent may be given the session's host id and
then stamps it on everything host-bound (processes, events, lines): an agent speaks
for its own host only, whatever it wrote.
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import TypeVar, cast

from stack.spec.assignment import Assignment, PinnedVersion, WatcherAssignment
from stack.spec.model import WatcherSpec
from stack.spec.observed import (
    ExitReason,
    Health,
    LastExit,
    Observed,
    ProcessState,
    ProcessStatus,
    SocketStatus,
    WatcherObserved,
    WatcherPhase,
)
from stack.spec.reports import Event, LogLine, Severity
from stack.spec.session import (
    AgentMessage,
    ControllerBody,
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
from stack.v1 import agent_pb2, types_pb2
from stack.wire.spec import socket_from_proto, socket_to_proto, watcher_from_proto, watcher_to_proto

E = TypeVar("E", bound=IntEnum)


class UnknownMessage(ValueError):
    """A message whose body this side does not know (a newer peer's, or none)."""


def _enum(kind: type[E], value: int) -> E:
    try:
        return kind(value)
    except ValueError:
        return kind(0)


_STATES = tuple(ProcessState)
_HEALTHS = tuple(Health)


def _state(value: int) -> ProcessState:
    """A ProcessState by number without a lookup (every heartbeat decodes many)."""
    return _STATES[value] if 0 <= value < len(_STATES) else ProcessState.UNSPECIFIED


def _health(value: int) -> Health:
    return _HEALTHS[value] if 0 <= value < len(_HEALTHS) else Health.UNSPECIFIED


# ---- assignments ----


SPECS_KEPT = 64
"""How many watcher specs `encoded_spec` keeps encoded (the newest)."""
_encoded: dict[int, tuple[WatcherSpec, types_pb2.WatcherSpec]] = {}


def encoded_spec(spec: WatcherSpec) -> types_pb2.WatcherSpec:
    """`watcher_to_proto(spec)`, encoded once per spec: a Scale sends the same spec to
    every host it touches (10,000 Assignments, most of whose encoding was the spec's).
    A spec is frozen, so the same object encodes the same; the message is only ever
    copied into another (never to be changed)."""
    kept = _encoded.get(id(spec))
    if kept is not None and kept[0] is spec:
        return kept[1]
    message = watcher_to_proto(spec)
    if len(_encoded) >= SPECS_KEPT:
        del _encoded[next(iter(_encoded))]
    _encoded[id(spec)] = (spec, message)
    return message


def pinned_to_proto(pinned: PinnedVersion) -> agent_pb2.PinnedVersion:
    return agent_pb2.PinnedVersion(
        spec=encoded_spec(pinned.spec),
        restart_token=pinned.restart_token,
        wids=pinned.wids,
        sockets=[socket_to_proto(sock) for sock in pinned.sockets],
    )


def pinned_from_proto(msg: agent_pb2.PinnedVersion) -> PinnedVersion:
    return PinnedVersion(
        spec=watcher_from_proto(msg.spec),
        restart_token=msg.restart_token,
        wids=tuple(msg.wids),
        sockets=tuple(socket_from_proto(sock) for sock in msg.sockets),
    )


def watcher_assignment_to_proto(share: WatcherAssignment) -> agent_pb2.WatcherAssignment:
    return agent_pb2.WatcherAssignment(
        spec=encoded_spec(share.spec),
        wids=share.wids,
        active=share.active,
        restart_token=share.restart_token,
        graceful=share.graceful,
        reset_token=share.reset_token,
        pinned=[pinned_to_proto(pinned) for pinned in share.pinned],
        probation=share.probation,
    )


def watcher_assignment_from_proto(msg: agent_pb2.WatcherAssignment) -> WatcherAssignment:
    return WatcherAssignment(
        spec=watcher_from_proto(msg.spec),
        wids=tuple(msg.wids),
        active=msg.active,
        restart_token=msg.restart_token,
        graceful=msg.graceful,
        reset_token=msg.reset_token,
        pinned=tuple(pinned_from_proto(pinned) for pinned in msg.pinned),
        probation=tuple(msg.probation),
    )


def assignment_to_proto(assignment: Assignment) -> agent_pb2.Assignment:
    return agent_pb2.Assignment(
        generation=assignment.generation,
        fencing_token=assignment.fencing_token,
        watchers=[watcher_assignment_to_proto(share) for share in assignment.watchers],
        sockets=[socket_to_proto(sock) for sock in assignment.sockets],
    )


def assignment_from_proto(msg: agent_pb2.Assignment) -> Assignment:
    return Assignment(
        generation=msg.generation,
        fencing_token=msg.fencing_token,
        watchers=tuple(watcher_assignment_from_proto(share) for share in msg.watchers),
        sockets=tuple(socket_from_proto(sock) for sock in msg.sockets),
    )


# ---- what agents observe ----


def last_exit_to_proto(last: LastExit) -> types_pb2.LastExit:
    return types_pb2.LastExit(
        code=last.code,
        signal=last.signal,
        reason=cast(types_pb2.ExitReason, int(last.reason)),
        at=last.at,
        message=last.message,
        code_unknown=last.code_unknown,
    )


def last_exit_from_proto(msg: types_pb2.LastExit) -> LastExit:
    return LastExit(
        code=msg.code,
        signal=msg.signal,
        reason=_enum(ExitReason, msg.reason),
        at=msg.at,
        message=msg.message,
        code_unknown=msg.code_unknown,
    )


def process_to_proto(proc: ProcessStatus) -> types_pb2.ProcessStatus:
    msg = types_pb2.ProcessStatus(
        watcher=proc.watcher,
        wid=proc.wid,
        pid=proc.pid,
        state=cast(types_pb2.ProcessState, int(proc.state)),
        started_at=proc.started_at,
        restarts=proc.restarts,
        cpu_percent=proc.cpu_percent,
        rss_bytes=proc.rss_bytes,
        cpu_seconds=proc.cpu_seconds,
        num_fds=proc.num_fds,
        num_children=proc.num_children,
        host_id=proc.host_id,
        message=proc.message,
        health=cast(types_pb2.Health, int(proc.health)),
        health_message=proc.health_message,
        version=proc.version,
        blocked=proc.blocked,
        replacements=proc.replacements,
    )
    if proc.last_exit is not None:
        msg.last_exit.CopyFrom(last_exit_to_proto(proc.last_exit))
    return msg


def process_from_proto(msg: types_pb2.ProcessStatus, host_id: str | None = None) -> ProcessStatus:
    # Positional, in the dataclass's field order: the controller decodes every process
    # of every heartbeat (test_wire_agent's round trip checks the order).
    return ProcessStatus(
        msg.watcher,
        msg.wid,
        msg.pid,
        _state(msg.state),
        msg.started_at,
        msg.restarts,
        msg.cpu_percent,
        msg.rss_bytes,
        msg.cpu_seconds,
        msg.num_fds,
        msg.num_children,
        last_exit_from_proto(msg.last_exit) if msg.HasField("last_exit") else None,
        msg.host_id if host_id is None else host_id,
        msg.message,
        _health(msg.health),
        msg.health_message,
        msg.version,
        msg.blocked,
        msg.replacements,
    )


def watcher_observed_to_proto(seen: WatcherObserved) -> types_pb2.WatcherObserved:
    return types_pb2.WatcherObserved(
        name=seen.name,
        phase=cast(types_pb2.WatcherPhase, int(seen.phase)),
        retry_at=seen.retry_at,
        flapping_retries=seen.flapping_retries,
        message=seen.message,
    )


def watcher_observed_from_proto(msg: types_pb2.WatcherObserved) -> WatcherObserved:
    return WatcherObserved(
        name=msg.name,
        phase=_enum(WatcherPhase, msg.phase),
        retry_at=msg.retry_at,
        flapping_retries=msg.flapping_retries,
        message=msg.message,
    )


def socket_status_to_proto(sock: SocketStatus) -> types_pb2.SocketStatus:
    return types_pb2.SocketStatus(
        name=sock.name, fd=sock.fd, address=sock.address, error=sock.error
    )


def socket_status_from_proto(msg: types_pb2.SocketStatus) -> SocketStatus:
    return SocketStatus(name=msg.name, fd=msg.fd, address=msg.address, error=msg.error)


def observed_to_proto(observed: Observed) -> agent_pb2.Observed:
    return agent_pb2.Observed(
        generation=observed.generation,
        processes=[process_to_proto(proc) for proc in observed.processes],
        watchers=[watcher_observed_to_proto(seen) for seen in observed.watchers],
        sockets=[socket_status_to_proto(sock) for sock in observed.sockets],
    )


def observed_from_proto(msg: agent_pb2.Observed, host_id: str | None = None) -> Observed:
    return Observed(
        generation=msg.generation,
        processes=tuple(process_from_proto(proc, host_id) for proc in msg.processes),
        watchers=tuple(watcher_observed_from_proto(seen) for seen in msg.watchers),
        sockets=tuple(socket_status_from_proto(sock) for sock in msg.sockets),
    )


# ---- events and output lines ----


def event_to_proto(event: Event) -> types_pb2.Event:
    return types_pb2.Event(
        at=event.at,
        host_id=event.host_id,
        watcher=event.watcher,
        wid=event.wid,
        kind=event.kind,
        message=event.message,
        severity=cast(types_pb2.Severity, int(event.severity)),
        seq=event.seq,
    )


def event_from_proto(msg: types_pb2.Event, host_id: str | None = None) -> Event:
    return Event(
        at=msg.at,
        kind=msg.kind,
        message=msg.message,
        host_id=msg.host_id if host_id is None else host_id,
        watcher=msg.watcher,
        wid=msg.wid,
        severity=_enum(Severity, msg.severity),
        seq=msg.seq,
    )


def line_to_proto(line: LogLine) -> types_pb2.LogLine:
    return types_pb2.LogLine(
        at=line.at,
        host_id=line.host_id,
        watcher=line.watcher,
        wid=line.wid,
        stream=line.stream,
        text=line.text,
    )


def line_from_proto(msg: types_pb2.LogLine, host_id: str | None = None) -> LogLine:
    return LogLine(
        at=msg.at,
        host_id=msg.host_id if host_id is None else host_id,
        watcher=msg.watcher,
        wid=msg.wid,
        stream=msg.stream,
        text=msg.text,
    )


# ---- the session's messages ----


def hello_to_proto(hello: Hello) -> agent_pb2.Hello:
    return agent_pb2.Hello(
        host_id=hello.host_id,
        labels=dict(hello.labels),
        capacity=hello.capacity,
        version=hello.version,
        last_generation=hello.last_generation,
        last_fencing_token=hello.last_fencing_token,
        observed=observed_to_proto(hello.observed),
        address=hello.address,
        started_at=hello.started_at,
        reexecuted_at=hello.reexecuted_at,
    )


def hello_from_proto(msg: agent_pb2.Hello) -> Hello:
    """A Hello as sent; its processes are stamped with the host id it names."""
    return Hello(
        host_id=msg.host_id,
        labels=MappingProxyType(dict(msg.labels)),
        capacity=msg.capacity,
        version=msg.version,
        last_generation=msg.last_generation,
        last_fencing_token=msg.last_fencing_token,
        observed=observed_from_proto(msg.observed, msg.host_id),
        address=msg.address,
        started_at=msg.started_at,
        reexecuted_at=msg.reexecuted_at,
    )


def agent_message_to_proto(body: AgentMessage) -> agent_pb2.AgentMessage:
    """The wire message carrying `body`."""
    if isinstance(body, Observed):
        return agent_pb2.AgentMessage(observed=observed_to_proto(body))
    if isinstance(body, EventBatch):
        events = [event_to_proto(event) for event in body.events]
        return agent_pb2.AgentMessage(events=agent_pb2.EventBatch(events=events))
    if isinstance(body, LogBatch):
        lines = [line_to_proto(line) for line in body.lines]
        return agent_pb2.AgentMessage(logs=agent_pb2.LogBatch(lines=lines))
    if isinstance(body, TailReply):
        reply = agent_pb2.LogTailReply(
            request_id=body.request_id,
            lines=[line_to_proto(line) for line in body.lines],
            error=body.error,
        )
        return agent_pb2.AgentMessage(log_tail=reply)
    if isinstance(body, Reloading):
        return agent_pb2.AgentMessage(reloading=agent_pb2.Reloading())
    return agent_pb2.AgentMessage(hello=hello_to_proto(body))


def agent_message_from_proto(msg: agent_pb2.AgentMessage, host_id: str) -> AgentMessage:
    """What an agent of `host_id` sent (stamped with that host); UnknownMessage if the
    body is none this side knows."""
    body = msg.WhichOneof("body")
    if body == "observed":
        return observed_from_proto(msg.observed, host_id)
    if body == "events":
        return EventBatch(tuple(event_from_proto(event, host_id) for event in msg.events.events))
    if body == "logs":
        return LogBatch(tuple(line_from_proto(line, host_id) for line in msg.logs.lines))
    if body == "log_tail":
        tail = msg.log_tail
        lines = tuple(line_from_proto(line, host_id) for line in tail.lines)
        return TailReply(request_id=tail.request_id, lines=lines, error=tail.error)
    if body == "hello":
        return hello_from_proto(msg.hello)
    if body == "reloading":
        return Reloading()
    raise UnknownMessage(f"agent message without a known body ({body or 'empty'})")


def controller_message_to_proto(
    body: ControllerBody, fencing_token: int = 0
) -> agent_pb2.ControllerMessage:
    """The wire message carrying `body`, under the sender's fencing token."""
    msg = agent_pb2.ControllerMessage(fencing_token=fencing_token)
    if isinstance(body, Assignment):
        msg.assignment.CopyFrom(assignment_to_proto(body))
    elif isinstance(body, Welcome):
        msg.welcome.CopyFrom(
            agent_pb2.Welcome(
                controller_id=body.controller_id,
                fencing_token=body.fencing_token,
                heartbeat_interval=body.heartbeat_interval,
            )
        )
    elif isinstance(body, SignalCommand):
        msg.signal.CopyFrom(
            agent_pb2.SignalCommand(
                watcher=body.watcher, wid=body.wid, signal=body.signal, children=body.children
            )
        )
    elif isinstance(body, TailRequest):
        msg.log_tail.CopyFrom(
            agent_pb2.LogTailRequest(
                request_id=body.request_id,
                watcher=body.watcher,
                stream=body.stream,
                lines=body.lines,
            )
        )
    elif isinstance(body, StatsWanted):
        msg.stats_wanted.seconds = body.seconds
    else:
        msg.redirect.CopyFrom(agent_pb2.Redirect(leader_address=body.leader_address))
    return msg


def controller_message_from_proto(msg: agent_pb2.ControllerMessage) -> tuple[int, ControllerBody]:
    """(the sender's fencing token, the body); UnknownMessage if the body is none this
    side knows."""
    body = msg.WhichOneof("body")
    decoded: ControllerBody
    if body == "assignment":
        decoded = assignment_from_proto(msg.assignment)
    elif body == "welcome":
        welcome = msg.welcome
        decoded = Welcome(
            controller_id=welcome.controller_id,
            fencing_token=welcome.fencing_token,
            heartbeat_interval=welcome.heartbeat_interval,
        )
    elif body == "signal":
        command = msg.signal
        decoded = SignalCommand(
            watcher=command.watcher, signal=command.signal, wid=command.wid,
            children=command.children,
        )  # fmt: skip
    elif body == "log_tail":
        request = msg.log_tail
        decoded = TailRequest(
            request_id=request.request_id,
            watcher=request.watcher,
            stream=request.stream,
            lines=request.lines,
        )
    elif body == "redirect":
        decoded = Redirect(leader_address=msg.redirect.leader_address)
    elif body == "stats_wanted":
        decoded = StatsWanted(seconds=msg.stats_wanted.seconds)
    else:
        raise UnknownMessage(f"controller message without a known body ({body or 'empty'})")
    return msg.fencing_token, decoded
