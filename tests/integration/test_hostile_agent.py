"""A hostile or broken agent is contained: it speaks for its own host only, its reports
of workers it was not given are ignored and counted, and its events and output are
capped. The agents here are real gRPC clients speaking the agent protocol (see
FakeAgent), sending what no honest agent would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.v1 import admin_pb2, agent_pb2, types_pb2
from tests.support.controller import ControllerProcess
from tests.support.fake_agent import FakeAgent, observed, wids_of
from tests.support.processes import ROOT, STACKCTL
from tests.support.wait import wait_for

STACK = """
[watchers.web]
cmd = "python3 app.py"
numprocesses = 2
[watchers.web.placement]
labels = { role = "web" }
"""
RUNNING = types_pb2.PROCESS_STATE_RUNNING


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A controller that lets one agent send 10 events and 100 KB of output a second."""
    started = ControllerProcess(
        tmp_path, 10.0, ("--agent-event-rate", "10", "--agent-log-rate", "100000")
    ).start()
    yield started
    if started.proc is not None and started.proc.poll() is None:
        started.kill9()


def connect(
    controller: ControllerProcess, agents: list[FakeAgent], host: str, **hello: Any
) -> FakeAgent:
    agent = FakeAgent(controller.address, host, **hello)
    agents.append(agent)
    agent.receive("welcome")
    return agent


def applied(controller: ControllerProcess) -> None:
    controller.admin().Apply(admin_pb2.ApplyRequest(filename="s.toml", content=STACK), timeout=5)


def agent_info(controller: ControllerProcess, host: str) -> admin_pb2.AgentInfo:
    reply = controller.admin().Agents(admin_pb2.AgentsRequest(), timeout=5)
    return next(a for a in reply.agents if a.host_id == host)


def processes(controller: ControllerProcess) -> list[tuple[str, int]]:
    reply = controller.admin().Status(admin_pb2.StatusRequest(), timeout=10)
    return [(p.host_id, p.wid) for w in reply.watchers for p in w.processes]


def fake(*reports: tuple[str, int]) -> agent_pb2.Observed:
    return agent_pb2.Observed(
        processes=[
            types_pb2.ProcessStatus(watcher=w, wid=wid, pid=40_000 + wid, state=RUNNING)
            for w, wid in reports
        ]
    )


def test_an_agent_speaks_for_its_own_host_only_in_events_output_and_tails(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    applied(controller)
    web = connect(controller, agents, "web-1", labels={"role": "web"})
    assert wids_of(web.receive("assignment")) == [1, 2]
    admin = controller.admin()
    follow = admin.Logs(admin_pb2.LogsRequest(watcher="web", follow=True), timeout=20)
    events = admin.Events(admin_pb2.EventsRequest(follow=True, lines=1), timeout=20)
    next(events)  # what was recorded before: from here on, only new ones
    posing = [
        types_pb2.Event(host_id="web-2", watcher="web", kind="exit", message="as another"),
        types_pb2.Event(host_id="", kind="apply", message="as the controller"),
    ]
    web.send(events=agent_pb2.EventBatch(events=posing))
    got = [next(events) for _ in posing]
    assert [(e.host_id, e.message) for e in got] == [
        ("web-1", "as another"),
        ("web-1", "as the controller"),
    ]
    web.send(
        logs=agent_pb2.LogBatch(
            lines=[types_pb2.LogLine(at=time.time(), host_id="web-2", watcher="web", text="x")]
        )
    )
    assert next(follow).host_id == "web-1"
    tail = admin.Logs(admin_pb2.LogsRequest(watcher="web", lines=5), timeout=20)
    request = web.receive("log_tail").log_tail
    forged = types_pb2.LogLine(at=1.0, host_id="", watcher="web", text="tail")
    web.send(log_tail=agent_pb2.LogTailReply(request_id=request.request_id, lines=[forged]))
    assert [(line.host_id, line.text) for line in tail] == [("web-1", "tail")]
    follow.cancel()
    events.cancel()


def test_reports_of_workers_an_agent_was_not_given_are_ignored_and_counted(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    applied(controller)
    web = connect(controller, agents, "web-1", labels={"role": "web"})
    assert wids_of(web.receive("assignment")) == [1, 2]
    web.send(observed=observed(1, 2))
    other = connect(controller, agents, "other")  # no role=web: may run nothing of it
    assert wids_of(other.receive("assignment")) == []
    # the web host claims a worker it was not given, twice one it was, and an unknown watcher
    web.send(observed=fake(("web", 1), ("web", 1), ("web", 2), ("web", 3), ("db", 1)))
    other.send(observed=fake(("web", 1), ("web", 2)))
    wait_for(lambda: agent_info(controller, "other").ignored_processes == 2, what="counted")
    assert agent_info(controller, "web-1").ignored_processes == 3
    assert sorted(processes(controller)) == [("web-1", 1), ("web-1", 2)]
    refused = wait_for(
        lambda: [e for e in recent_events(controller) if e.kind == "agent_refused"],
        what="an agent_refused event",
    )
    assert {e.message.split(":")[0] for e in refused} == {"agent web-1", "agent other"}
    assert all(e.host_id == "" for e in refused), "the controller says so, not the agent"
    shown = subprocess.run(
        [*STACKCTL, "--controller", controller.address,
         "-o", "json", "agents"],
        capture_output=True, text=True, cwd=ROOT, timeout=30, check=True,
    )  # fmt: skip
    assert '"ignored_processes": 2' in shown.stdout and '"ignored_processes": 3' in shown.stdout


def recent_events(controller: ControllerProcess) -> list[types_pb2.Event]:
    return list(controller.admin().Events(admin_pb2.EventsRequest(), timeout=10))


def test_one_report_of_50000_processes_leaves_status_quick_after_the_agent_left(
    controller: ControllerProcess, agents: list[FakeAgent], tmp_path: Path
) -> None:
    applied(controller)
    web = connect(controller, agents, "web-1", labels={"role": "web"})
    web.receive("assignment")
    web.send(observed=observed(1, 2))
    # Over the cap of processes per report: refused whole, even in a Hello.
    flood = fake(*(("web", wid) for wid in range(1, 50_001)))
    liar = connect(controller, agents, "liar", observed=flood, labels={"role": "web"})
    liar.send(observed=flood)
    # Under the cap, but none of them its own: ignored, once each.
    liar.send(observed=fake(*(("web", wid) for wid in range(3, 19_003))))
    wait_for(lambda: agent_info(controller, "liar").ignored_processes == 19_000, what="ignored")
    assert agent_info(controller, "liar").refused_reports == 2
    liar.cancel()
    wait_for(lambda: agent_info(controller, "liar").state == "down", what="the liar gone")

    started = time.monotonic()
    shown = subprocess.run(
        [*STACKCTL, "--controller", controller.address, "status"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )  # fmt: skip
    took = time.monotonic() - started
    assert sorted(processes(controller)) == [("web-1", 1), ("web-1", 2)]
    assert "liar" not in shown.stdout
    assert took < 20, f"status took {took:.1f}s (97 s before the liar was contained)"


def test_events_and_output_are_capped_per_agent_in_number_and_in_bytes(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    applied(controller)
    web = connect(controller, agents, "web-1", labels={"role": "web"})
    web.receive("assignment")
    noise = [
        types_pb2.Event(watcher="web", kind="exit", message=f"noise {n}") for n in range(5_000)
    ]
    web.send(events=agent_pb2.EventBatch(events=noise))
    # 10 a second in bursts of 100: 100 of them pass, in one message as in many
    wait_for(lambda: agent_info(controller, "web-1").dropped_events == 4_900, what="dropped")
    kept = [e for e in recent_events(controller) if e.message.startswith("noise")]
    assert len(kept) == 100 and {e.host_id for e in kept} == {"web-1"}

    follow = controller.admin().Logs(admin_pb2.LogsRequest(watcher="web", follow=True), timeout=30)
    big = [
        types_pb2.LogLine(at=time.time(), watcher="web", wid=1, stream="out", text="y" * 60_000)
        for _ in range(20)
    ]
    web.send(logs=agent_pb2.LogBatch(lines=big))  # 1.2 MB against 100 KB/s, bursts of 400 KB
    wait_for(lambda: agent_info(controller, "web-1").dropped_log_lines == 14, what="14 dropped")
    passed = [next(follow) for _ in range(6)]  # 6 of 60 KB fit 400 KB, whatever their count
    assert {line.text for line in passed} == {"y" * 60_000}
    follow.cancel()
