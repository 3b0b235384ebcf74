"""What crosses an agent's session survives the trip: every domain type of stack.spec
comes back equal from its wire message, the enums carry the wire's numbers, and a
decoder of what an agent sent speaks for the session's host only."""

from __future__ import annotations

from enum import IntEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.spec.assignment import Assignment, PinnedVersion, WatcherAssignment
from stack.spec.model import SocketSpec, StackSpec, WatcherSpec
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
from stack.wire import agent as wire_agent
from stack.wire.agent import (
    UnknownMessage,
    agent_message_from_proto,
    agent_message_to_proto,
    assignment_from_proto,
    assignment_to_proto,
    controller_message_from_proto,
    controller_message_to_proto,
    encoded_spec,
    hello_from_proto,
    hello_to_proto,
    observed_from_proto,
    observed_to_proto,
)
from stack.wire.spec import watcher_to_proto
from tests.unit.test_spec_dump import stacks

TEXT = st.text(max_size=20)
INT32 = st.integers(0, 2**31 - 1)
FLOAT = st.floats(0, 2e9, allow_nan=False)

last_exits = st.builds(
    LastExit, code=INT32, signal=INT32, reason=st.sampled_from(ExitReason), at=FLOAT,
    message=TEXT, code_unknown=st.booleans(),
)  # fmt: skip
processes = st.builds(
    ProcessStatus, watcher=TEXT, wid=INT32, pid=INT32, state=st.sampled_from(ProcessState),
    started_at=FLOAT, restarts=INT32, cpu_percent=FLOAT, rss_bytes=INT32, num_fds=INT32,
    num_children=INT32, last_exit=st.none() | last_exits, host_id=TEXT, message=TEXT,
    health=st.sampled_from(Health), health_message=TEXT, version=TEXT, blocked=TEXT,
    replacements=INT32,
)  # fmt: skip
observed = st.builds(
    Observed,
    generation=INT32,
    processes=st.lists(processes, max_size=3).map(tuple),
    watchers=st.lists(
        st.builds(
            WatcherObserved,
            name=TEXT,
            phase=st.sampled_from(WatcherPhase),
            retry_at=FLOAT,
            flapping_retries=INT32,
            message=TEXT,
        ),
        max_size=3,
    ).map(tuple),
    sockets=st.lists(
        st.builds(SocketStatus, name=TEXT, fd=INT32, address=TEXT, error=TEXT), max_size=3
    ).map(tuple),
)
events = st.builds(
    Event, at=FLOAT, kind=TEXT, message=TEXT, host_id=TEXT, watcher=TEXT, wid=INT32,
    severity=st.sampled_from(Severity), seq=INT32,
)  # fmt: skip
lines = st.builds(LogLine, at=FLOAT, host_id=TEXT, watcher=TEXT, wid=INT32, stream=TEXT, text=TEXT)
WIDS = st.lists(st.integers(1, 10_000), max_size=4).map(tuple)


def some_sockets(sockets: tuple[SocketSpec, ...]) -> st.SearchStrategy[tuple[SocketSpec, ...]]:
    return st.sampled_from(((), sockets))


@st.composite
def assignments(draw: st.DrawFn) -> Assignment:
    stack = draw(stacks())
    specs = list(stack.watchers.values())
    sockets = tuple(stack.sockets.values())
    shares = tuple(
        WatcherAssignment(
            spec=spec,
            wids=draw(WIDS),
            active=draw(st.booleans()),
            restart_token=draw(INT32),
            graceful=draw(st.booleans()),
            reset_token=draw(INT32),
            pinned=tuple(
                PinnedVersion(earlier, draw(INT32), draw(WIDS), draw(some_sockets(sockets)))
                for earlier in draw(st.lists(st.sampled_from(specs), max_size=2))
            ),
            probation=draw(WIDS),
        )
        for spec in specs
    )
    return Assignment(draw(INT32), draw(INT32), shares, sockets)


@given(assignments())
def test_an_assignment_comes_back_equal(assignment: Assignment) -> None:
    msg = assignment_to_proto(assignment)
    again = agent_pb2.Assignment.FromString(msg.SerializeToString())
    assert assignment_from_proto(again) == assignment


@given(observed)
def test_what_an_agent_observes_comes_back_equal(seen: Observed) -> None:
    assert observed_from_proto(observed_to_proto(seen)) == seen


@given(observed, st.dictionaries(TEXT, TEXT, max_size=3))
def test_a_hello_comes_back_equal_with_its_processes_on_its_host(
    seen: Observed, labels: dict[str, str]
) -> None:
    hello = Hello(host_id="a", labels=labels, capacity=3, version="1", last_generation=4,
                  last_fencing_token=5, observed=seen, address="h", started_at=6.0,
                  reexecuted_at=7.0)  # fmt: skip
    back = hello_from_proto(hello_to_proto(hello))
    assert dict(back.labels) == labels
    assert back.observed.processes == tuple(
        ProcessStatus(**{**_fields(proc), "host_id": "a"}) for proc in seen.processes
    )


def _fields(proc: ProcessStatus) -> dict[str, object]:
    return {name: getattr(proc, name) for name in ProcessStatus.__slots__}


@given(st.lists(events, max_size=3), st.lists(lines, max_size=3))
def test_batches_come_back_stamped_with_the_sessions_host(
    sent_events: list[Event], sent_lines: list[LogLine]
) -> None:
    batch = agent_message_from_proto(agent_message_to_proto(EventBatch(tuple(sent_events))), "h")
    assert isinstance(batch, EventBatch)
    assert [e.host_id for e in batch.events] == ["h"] * len(sent_events)
    assert [e.message for e in batch.events] == [e.message for e in sent_events]
    logs = agent_message_from_proto(agent_message_to_proto(LogBatch(tuple(sent_lines))), "h")
    assert isinstance(logs, LogBatch)
    assert [(line.host_id, line.text) for line in logs.lines] == [("h", x.text) for x in sent_lines]
    reply = agent_message_from_proto(
        agent_message_to_proto(TailReply(7, tuple(sent_lines), "oops")), "h"
    )
    assert isinstance(reply, TailReply)
    assert (reply.request_id, reply.error, len(reply.lines)) == (7, "oops", len(sent_lines))


def test_a_reload_notice_comes_back_as_one() -> None:
    assert agent_message_from_proto(agent_message_to_proto(Reloading()), "h") == Reloading()


@pytest.mark.parametrize(
    "body",
    [
        Welcome("c1", 4, 2.0),
        SignalCommand("web", "HUP", wid=3, children=True),
        TailRequest(9, "web", "err", 20),
        Redirect("10.0.0.1:7450"),
        StatsWanted(10.0),
        Assignment(generation=3, fencing_token=4),
    ],
)
def test_what_the_controller_sends_comes_back_equal(body: object) -> None:
    msg = controller_message_to_proto(body, fencing_token=12)  # type: ignore[arg-type]
    assert controller_message_from_proto(msg) == (12, body)


def test_a_message_without_a_known_body_is_refused_by_name() -> None:
    with pytest.raises(UnknownMessage, match="empty"):
        agent_message_from_proto(agent_pb2.AgentMessage(), "h")
    with pytest.raises(UnknownMessage, match="empty"):
        controller_message_from_proto(agent_pb2.ControllerMessage())


@pytest.mark.parametrize(
    ("domain", "wire", "prefix"),
    [
        (ProcessState, types_pb2.ProcessState, "PROCESS_STATE_"),
        (Health, types_pb2.Health, "HEALTH_"),
        (ExitReason, types_pb2.ExitReason, "EXIT_REASON_"),
        (WatcherPhase, types_pb2.WatcherPhase, "WATCHER_PHASE_"),
        (Severity, types_pb2.Severity, "SEVERITY_"),
    ],
)
def test_enums_mirror_the_wire_numbers(domain: type[IntEnum], wire: object, prefix: str) -> None:
    wire_values = {name.removeprefix(prefix): number for name, number in wire.items()}  # type: ignore[attr-defined]
    assert {member.name: member.value for member in domain} == wire_values


def test_a_number_a_newer_peer_added_reads_as_unspecified() -> None:
    msg = types_pb2.ProcessStatus(watcher="w", wid=1)
    msg.state = 99  # type: ignore[assignment]
    msg.health = 42  # type: ignore[assignment]
    seen = observed_from_proto(agent_pb2.Observed(processes=[msg]))
    assert (seen.processes[0].state, seen.processes[0].health) == (
        ProcessState.UNSPECIFIED,
        Health.UNSPECIFIED,
    )


@given(stacks())
def test_a_spec_is_encoded_once_and_as_it_would_be_anew(stack: StackSpec) -> None:
    for spec in stack.watchers.values():
        assert encoded_spec(spec) == watcher_to_proto(spec)
        assert encoded_spec(spec) is encoded_spec(spec)


def test_only_the_newest_specs_stay_encoded() -> None:
    spec = WatcherSpec(name="first", cmd="serve")
    first = encoded_spec(spec)
    others = [WatcherSpec(name=f"w{i}", cmd="serve") for i in range(wire_agent.SPECS_KEPT)]
    for other in others:
        encoded_spec(other)
    again = encoded_spec(spec)
    assert again is not first and again == first
