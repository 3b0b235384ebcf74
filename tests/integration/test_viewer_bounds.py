"""Viewers are bounded: follow streams per viewer, tail sizes, and what a flood of output
to a follower that does not read can make the controller hold. Real controller, real
gRPC; the agent is scripted (a real client speaking the agent protocol) so that it can
flood at will.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from stack.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, types_pb2
from tests.integration.test_controller_service import apply, rpc_error
from tests.support.controller import ControllerProcess
from tests.support.fake_agent import FakeAgent
from tests.support.wait import wait_for


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A controller that lets an agent ship as much output as it likes."""
    started = ControllerProcess(tmp_path, 10.0, ("--agent-log-rate", "1e12")).start()
    yield started
    if started.proc is not None and started.proc.poll() is None:
        started.kill9()


@pytest.fixture
def agent(controller: ControllerProcess) -> Iterator[FakeAgent]:
    apply(controller.admin())
    connected = FakeAgent(controller.address, "h1")
    connected.receive("assignment")
    yield connected
    connected.cancel()


def test_a_viewer_holds_at_most_8_follow_streams_and_gets_one_back_when_one_ends(
    controller: ControllerProcess, agent: FakeAgent
) -> None:
    admin = controller.admin()
    follows = [
        admin.Events(admin_pb2.EventsRequest(follow=True, lines=1), timeout=30) for _ in range(7)
    ]
    for events in follows:
        next(events)  # each is open, and holds its slot
    follows.append(following(admin, agent))
    refused = rpc_error(
        lambda: next(admin.Logs(admin_pb2.LogsRequest(watcher="web", follow=True), timeout=30))
    )
    assert (refused.code(), refused.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many follow streams for the local socket: at most 8 at once; "
        "close one (logs -f, events -f) first",
    )
    assert list(admin.Events(admin_pb2.EventsRequest(lines=1), timeout=10)), "reads still go"
    follows.pop(0).cancel()

    def one_more() -> bool:
        try:
            again = admin.Events(admin_pb2.EventsRequest(follow=True, lines=1), timeout=30)
            next(again)
        except grpc.RpcError:
            return False  # the cancelled stream's slot is given back as its call ends
        follows.append(again)
        return True

    wait_for(one_more, what="a slot back")
    for stream in follows:
        stream.cancel()


def line(text: str) -> types_pb2.LogLine:
    return types_pb2.LogLine(at=time.time(), watcher="web", wid=1, stream="out", text=text)


def following(
    admin: admin_pb2_grpc.AdminServiceStub, agent: FakeAgent, timeout: float = 30
) -> Iterator[types_pb2.LogLine]:
    """`logs -f` of web, once the controller follows it: its one-line tail has come (the
    controller asks the agent for it once the follower is in place)."""
    request = admin_pb2.LogsRequest(watcher="web", lines=1, follow=True)
    stream: Iterator[types_pb2.LogLine] = admin.Logs(request, timeout=timeout)
    asked = agent.receive("log_tail").log_tail
    agent.send(log_tail=agent_pb2.LogTailReply(request_id=asked.request_id, lines=[line("t")]))
    assert next(stream).text == "t"
    return stream


def test_a_tail_asks_for_10000_lines_at_most(
    controller: ControllerProcess, agent: FakeAgent
) -> None:
    admin = controller.admin()
    for call in (
        lambda: list(admin.Logs(admin_pb2.LogsRequest(watcher="web", lines=10_001), timeout=10)),
        lambda: list(admin.Events(admin_pb2.EventsRequest(lines=10_001), timeout=10)),
        lambda: list(admin.Events(admin_pb2.EventsRequest(lines=-1), timeout=10)),
    ):
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("lines must be between 0 and 10000, got ")


MIB = 1024 * 1024
LINE = 60_000
"""Bytes of text per flooded line (the agent cuts lines at 64 KiB)."""


def test_a_flood_to_followers_that_do_not_read_leaves_the_controller_within_its_buffers(
    controller: ControllerProcess, agent: FakeAgent
) -> None:
    admin = controller.admin()
    assert controller.proc is not None
    process = psutil.Process(controller.proc.pid)
    flood(controller, agent, megabytes=8)  # without followers: the allocator's first growth
    before = process.memory_info().rss
    stalled = [following(admin, agent, timeout=300) for _ in range(2)]
    peak = before
    for _ in range(20):  # 200 MB, 10 MB at a time, to followers that read nothing
        flood(controller, agent, megabytes=10)
        peak = max(peak, process.memory_info().rss)
    grown = (peak - before) / MIB
    # Each follower may keep 4 MiB waiting (and gRPC a window's worth): 2 of them, well
    # under 40 MiB. Without the byte bound each would keep its 1,000 lines: 57 MiB apiece.
    assert grown < 40, f"the controller grew by {grown:.0f} MiB"
    # What a follower kept for it is bounded too: 4 MiB is 69 lines, plus what gRPC
    # holds in flight; after them comes the next live line.
    agent.send(logs=agent_pb2.LogBatch(lines=[line("after")]))
    backlog = 0
    while next(stalled[0]).text != "after":
        backlog += 1
        assert backlog <= 200, "more than the follower's buffer was kept for it"
    for stream in stalled:
        stream.cancel()


def flood(controller: ControllerProcess, agent: FakeAgent, megabytes: int) -> None:
    """Ship `megabytes` MB of output lines, 1 MB per message, and return once the
    controller has read them all (a report sent after them has arrived)."""
    for _ in range(megabytes):
        agent.send(logs=agent_pb2.LogBatch(lines=[line("f" * LINE) for _ in range(MIB // LINE)]))
    marker = time.monotonic_ns()
    agent.send(observed=agent_pb2.Observed(generation=marker))

    def arrived() -> bool:
        reply = controller.admin().Agents(admin_pb2.AgentsRequest(), timeout=10)
        return any(a.generation == marker for a in reply.agents)

    wait_for(arrived, 60, "the flood to be read")
