"""The controller with several (scripted) agents: lost hosts, drains, restarts.

The agents are real gRPC clients driven by the test (see test_controller_service),
so each Assignment can be checked exactly and timing is under the test's control.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.v1 import admin_pb2, agent_pb2, types_pb2
from tests.integration.test_controller_service import STACK, apply, status
from tests.support.controller import ControllerProcess
from tests.support.fake_agent import FakeAgent, observed, wids_of
from tests.support.wait import wait_for

FOUR = STACK.replace("numprocesses = 2", "numprocesses = 4")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ControllerProcess, list[FakeAgent]]]:
    controller = ControllerProcess(tmp_path, 1.0, ("--reschedule-after", "1.5")).start()
    agents: list[FakeAgent] = []
    yield controller, agents
    for agent in agents:
        agent.cancel()
    if controller.proc is not None and controller.proc.poll() is None:
        controller.terminate()


def connect(controller: ControllerProcess, agents: list[FakeAgent], host: str) -> FakeAgent:
    agent = FakeAgent(controller.address, host, agent_pb2.Observed())
    agents.append(agent)
    agent.receive("assignment")
    return agent


def latest_wids(agent: FakeAgent, want: list[int], timeout: float = 5.0) -> list[int]:
    """Read Assignments until one gives `want` for web; fail with the last seen."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        seen = wids_of(agent.receive("assignment", timeout=max(0.01, deadline - time.monotonic())))
        if seen == want:
            return seen
    raise AssertionError(f"{agent.host_id}: last assignment had {seen}, wanted {want}")


def heartbeat(agent: FakeAgent, *wids: int) -> None:
    agent.send(observed=observed(*wids))


def test_a_lost_agent_keeps_its_share_until_reschedule_after_then_it_moves(
    fleet: tuple[ControllerProcess, list[FakeAgent]],
) -> None:
    controller, agents = fleet
    h1, h2 = connect(controller, agents, "h1"), connect(controller, agents, "h2")
    apply(controller.admin(), FOUR)
    latest_wids(h1, [1, 3])
    latest_wids(h2, [2, 4])
    heartbeat(h1, 1, 3)
    heartbeat(h2, 2, 4)
    wait_for(lambda: status(controller.admin(), "web").running == 4, what="4 running")

    h2.cancel()  # the stream ends: down at once
    down_at = time.monotonic()
    web = status(controller.admin(), "web")
    assert {(p.host_id, p.state) for p in web.processes if p.host_id == "h2"} == {
        ("h2", types_pb2.PROCESS_STATE_UNKNOWN)
    }
    while time.monotonic() - down_at < 1.0:  # keep h1 alive while h2's share stays put
        heartbeat(h1, 1, 3)
        assert not h1.assignments_queued(), "h2's share moved before reschedule_after"
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    moved = False
    while not moved and time.monotonic() < deadline:
        heartbeat(h1, 1, 3)
        with contextlib.suppress(queue.Empty):
            message = h1.inbox.get(timeout=0.1)
            moved = message is not None and wids_of(message) == [1, 2, 3, 4]
    assert moved, "h2's share never moved to h1"
    assert time.monotonic() - down_at >= 1.4


def test_drain_moves_processes_and_the_originals_stop_only_once_replaced(
    fleet: tuple[ControllerProcess, list[FakeAgent]],
) -> None:
    controller, agents = fleet
    admin = controller.admin()
    h1, h2 = connect(controller, agents, "h1"), connect(controller, agents, "h2")
    apply(admin, FOUR)
    latest_wids(h1, [1, 3])
    latest_wids(h2, [2, 4])
    heartbeat(h1, 1, 3)
    heartbeat(h2, 2, 4)
    wait_for(lambda: status(admin, "web").running == 4, what="4 running")

    reply = admin.Drain(admin_pb2.DrainRequest(host_id="h2"), timeout=5)
    assert reply.processes == 2
    latest_wids(h1, [1, 2, 3, 4])
    state = {a.host_id: a.state for a in admin.Agents(admin_pb2.AgentsRequest()).agents}
    assert state == {"h1": "ready", "h2": "draining"}
    heartbeat(h2, 2, 4)
    for message in h2.assignments_queued():  # what h2 was sent since the drain
        assert wids_of(message) == [2, 4], "h2 must keep 2 and 4 until h1 runs them"
    heartbeat(h1, 1, 2, 3)  # 2 replaced, 4 not yet
    latest_wids(h2, [4])
    heartbeat(h1, 1, 2, 3, 4)
    latest_wids(h2, [])

    admin.Undrain(admin_pb2.DrainRequest(host_id="h2"), timeout=5)
    state = {a.host_id: a.state for a in admin.Agents(admin_pb2.AgentsRequest()).agents}
    assert state["h2"] == "ready"
    admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=6), timeout=5)
    latest_wids(h2, [5, 6])  # new processes go to the undrained host again


def test_a_restarted_controller_keeps_each_agent_to_what_it_reports_at_first(
    fleet: tuple[ControllerProcess, list[FakeAgent]],
) -> None:
    controller, agents = fleet
    apply(controller.admin(), FOUR)
    controller.kill9()
    controller.start()
    # h1 comes back first: it must not be given h2's wids while h2 is still reconnecting.
    h1 = FakeAgent(controller.address, "h1", observed(1, 3))
    agents.append(h1)
    assert wids_of(h1.receive("assignment")) == [1, 3]
    h2 = FakeAgent(controller.address, "h2", observed(2, 4))
    agents.append(h2)
    assert wids_of(h2.receive("assignment")) == [2, 4]
    assert status(controller.admin(), "web").running == 4
