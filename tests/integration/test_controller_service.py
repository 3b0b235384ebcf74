"""The controller as a real subprocess: AdminService and AgentService over real gRPC.

Agents here are scripted: a real gRPC client in the test speaking AgentService,
so each message the controller sends can be checked exactly.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from stack.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, types_pb2
from tests.support.controller import ControllerProcess
from tests.support.fake_agent import FakeAgent, observed, wids_of
from tests.support.processes import CONTROLLER
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]

STACK = """
[sockets.web]
port = 18080

[watchers.web]
cmd = "python3 app.py"
numprocesses = 2
use_sockets = true

[watchers.job]
cmd = "sleep 100"
autostart = false
"""


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(tmp_path).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill9()


def apply(admin: admin_pb2_grpc.AdminServiceStub, text: str = STACK) -> admin_pb2.ApplyReply:
    reply: admin_pb2.ApplyReply = admin.Apply(
        admin_pb2.ApplyRequest(filename="stack.toml", content=text), timeout=5
    )
    return reply


def status(admin: admin_pb2_grpc.AdminServiceStub, watcher: str) -> admin_pb2.WatcherStatus:
    reply: admin_pb2.StatusReply = admin.Status(admin_pb2.StatusRequest(watcher=watcher), timeout=5)
    return reply.watchers[0]


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


# ---- AdminService ----


def test_apply_scale_and_status_through_grpc(controller: ControllerProcess) -> None:
    admin = controller.admin()
    reply = apply(admin)
    assert reply.applied
    assert {(c.op, c.kind, c.name) for c in reply.changes} == {
        ("add", "socket", "web"),
        ("add", "watcher", "web"),
        ("add", "watcher", "job"),
    }
    web = status(admin, "web")
    assert (web.numprocesses, web.active, web.running) == (2, True, 0)
    assert (web.pending, web.pending_reason) == (2, "no eligible agent")
    assert status(admin, "job").active is False

    scaled = admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=3, relative=True), timeout=5)
    assert (scaled.previous, scaled.numprocesses) == (2, 5)
    assert status(admin, "web").numprocesses == 5

    same = apply(admin, STACK.replace("numprocesses = 2", "numprocesses = 5"))
    assert (same.applied, list(same.changes)) == (False, [])

    dry = admin.Apply(
        admin_pb2.ApplyRequest(filename="s.toml", content=STACK, dry_run=True), timeout=5
    )
    assert not dry.applied
    assert [(c.op, c.name, list(c.details)) for c in dry.changes] == [
        ("scale", "web", ["numprocesses: 5 -> 2"])
    ]
    assert status(admin, "web").numprocesses == 5
    assert dry.generation == same.generation


def test_bad_requests_get_their_status_code_and_change_nothing(
    controller: ControllerProcess,
) -> None:
    admin = controller.admin()
    apply(admin)
    before = admin.Export(admin_pb2.ExportRequest(), timeout=5).toml
    generation = admin.Status(admin_pb2.StatusRequest(), timeout=5).generation

    err = rpc_error(lambda: apply(admin, STACK.replace("numprocesses = 2", "numprocesses = -3")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "stack.toml: watchers.web.numprocesses: must be >= 0, got -3"

    err = rpc_error(lambda: admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=-3)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "scale web: count must be between 0 and 10000, got -3"

    err = rpc_error(lambda: admin.Scale(admin_pb2.ScaleRequest(watcher="x", count=1)))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unknown watcher 'x'")

    err = rpc_error(lambda: admin.Start(admin_pb2.WatchersRequest()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    err = rpc_error(lambda: admin.Start(admin_pb2.WatchersRequest(watchers=["job", "nope"])))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unknown watcher 'nope'")

    for call in (
        lambda: admin.Status(admin_pb2.StatusRequest(watcher="nope")),
        lambda: admin.Get(admin_pb2.GetRequest(watcher="nope")),
        lambda: admin.Remove(admin_pb2.RemoveRequest(watcher="nope")),
        lambda: list(admin.Logs(admin_pb2.LogsRequest(watcher="nope"))),
    ):
        assert rpc_error(call).code() == grpc.StatusCode.NOT_FOUND

    assert admin.Export(admin_pb2.ExportRequest(), timeout=5).toml == before
    assert admin.Status(admin_pb2.StatusRequest(), timeout=5).generation == generation
    assert status(admin, "job").active is False


def test_desired_state_survives_kill_9_of_the_controller(controller: ControllerProcess) -> None:
    admin = controller.admin()
    apply(admin)
    admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=4), timeout=5)
    admin.Start(admin_pb2.WatchersRequest(watchers=["job"]), timeout=5)
    admin.Reload(admin_pb2.WatchersRequest(all=True), timeout=5)
    before = admin.Status(admin_pb2.StatusRequest(), timeout=5)
    exported = admin.Export(admin_pb2.ExportRequest(), timeout=5).toml

    controller.kill9()
    controller.start()
    admin = controller.admin()

    after = admin.Status(admin_pb2.StatusRequest(), timeout=5)
    assert after.generation == before.generation
    assert [(w.name, w.numprocesses, w.active) for w in after.watchers] == [
        ("job", 1, True),
        ("web", 4, True),
    ]
    assert admin.Export(admin_pb2.ExportRequest(), timeout=5).toml == exported
    got = admin.Get(admin_pb2.GetRequest(watcher="web"), timeout=5)
    assert (got.spec.cmd, got.spec.numprocesses, got.active) == ("python3 app.py", 4, True)
    assert 'cmd = "python3 app.py"' in got.toml
    removed = admin.Remove(admin_pb2.RemoveRequest(watcher="job"), timeout=5)
    assert removed.watcher == "job"
    assert admin.Status(admin_pb2.StatusRequest(), timeout=5).generation == before.generation + 1


def test_sigterm_stops_cleanly_and_a_port_in_use_is_one_line_and_exit_1(
    controller: ControllerProcess, tmp_path: Path, agents: list[FakeAgent]
) -> None:
    term = controller.admin().Controllers(admin_pb2.ControllersRequest(), timeout=5).fencing_token
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        clashes = {
            # the same local socket (and data dir): refused before its store is touched
            f"a controller already serves {controller.address}":
                ["--data-dir", str(tmp_path / "data")],
            f"cannot listen on 127.0.0.1:{port}": [
                "--data-dir", str(tmp_path / "other"), "--listen", f"127.0.0.1:{port}", "--insecure"
            ],
        }  # fmt: skip
        for message, options in clashes.items():
            clash = subprocess.run(
                [*CONTROLLER, *options],
                capture_output=True, text=True, cwd=ROOT, timeout=20, check=False,
            )  # fmt: skip
            assert clash.returncode == 1, clash.stderr
            last = clash.stderr.splitlines()[-1]  # after the --insecure warning
            assert last.startswith(f"stack-controller: {message}"), clash.stderr
            assert "Traceback" not in clash.stderr
    reply = controller.admin().Controllers(admin_pb2.ControllersRequest(), timeout=5)
    assert reply.fencing_token == term, "the refused controller took no term"
    agent = FakeAgent(controller.address, "h1")
    agents.append(agent)
    agent.receive("assignment")
    events = controller.admin().Events(admin_pb2.EventsRequest(follow=True), timeout=10)
    assert next(events).kind == "agent_up"
    assert controller.terminate() == 0
    assert agent.ended.wait(5)
    assert list(events) == []  # the follow stream ends cleanly, not with an error
    assert "Traceback" not in controller.output()


# ---- AgentService ----


def test_agent_gets_welcome_then_assignment_and_a_new_one_after_scale(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    admin = controller.admin()
    generation = apply(admin).generation
    agent = FakeAgent(controller.address, "h1")
    agents.append(agent)

    welcome = agent.receive("welcome")
    assert welcome.fencing_token >= 1
    assert welcome.welcome.fencing_token == welcome.fencing_token
    assert welcome.welcome.heartbeat_interval > 0
    first = agent.receive("assignment")
    assert first.fencing_token == welcome.fencing_token
    assert first.assignment.generation == generation
    assert first.assignment.fencing_token == welcome.fencing_token
    assert wids_of(first) == [1, 2]
    assert wids_of(first, "job") == [1]
    assert [s.name for s in first.assignment.sockets] == ["web"]
    job = next(w for w in first.assignment.watchers if w.spec.name == "job")
    assert job.active is False

    admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=3), timeout=5)
    scaled = agent.receive("assignment")
    assert wids_of(scaled) == [1, 2, 3]
    assert scaled.assignment.generation == generation + 1
    assert status(admin, "web").pending == 0

    admin.Restart(admin_pb2.WatchersRequest(watchers=["web"]), timeout=5)
    restarted = agent.receive("assignment")
    web = next(w for w in restarted.assignment.watchers if w.spec.name == "web")
    assert (web.restart_token, web.graceful, web.active) == (1, False, True)

    admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=-2, relative=True), timeout=5)
    assert wids_of(agent.receive("assignment")) == [1]


def test_controller_kill_9_and_restart_sends_the_same_assignment(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    admin = controller.admin()
    apply(admin)
    admin.Reset(admin_pb2.WatchersRequest(watchers=["web"]), timeout=5)
    first_agent = FakeAgent(controller.address, "h1")
    agents.append(first_agent)
    before = first_agent.receive("assignment")
    generation = before.assignment.generation
    first_agent.send(observed=observed(1, 2, generation=generation))

    controller.kill9()
    assert first_agent.ended.wait(5)
    controller.start()

    again = FakeAgent(controller.address, "h1", observed(1, 2, generation=generation))
    agents.append(again)
    welcome = again.receive("welcome")
    assert welcome.fencing_token > before.fencing_token
    after = again.receive("assignment")
    assert after.assignment.generation == generation
    assert list(after.assignment.watchers) == list(before.assignment.watchers)
    assert list(after.assignment.sockets) == list(before.assignment.sockets)
    assert status(controller.admin(), "web").running == 2


def test_wids_stay_on_the_agent_that_reports_them(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    admin = controller.admin()
    apply(admin, STACK.replace("numprocesses = 2", "numprocesses = 3"))
    b = FakeAgent(controller.address, "b", observed(2, 3))
    agents.append(b)
    assert wids_of(b.receive("assignment")) == [1, 2, 3]
    a = FakeAgent(controller.address, "a", observed(1))
    agents.append(a)
    assert wids_of(a.receive("assignment")) == [1]
    assert wids_of(b.receive("assignment")) == [2, 3]
    procs = status(admin, "web").processes
    assert [(p.wid, p.host_id) for p in procs] == [(1, "a"), (2, "b"), (3, "b")]


def test_silent_agent_is_marked_down_after_agent_timeout(
    tmp_path: Path, agents: list[FakeAgent]
) -> None:
    controller = ControllerProcess(tmp_path, agent_timeout=1.0).start()
    try:
        admin = controller.admin()
        apply(admin)
        agent = FakeAgent(controller.address, "h1", observed(1, 2))
        agents.append(agent)
        agent.receive("assignment")
        assert status(admin, "web").running == 2
        started = time.monotonic()

        def state() -> str:
            reply: admin_pb2.AgentsReply = admin.Agents(admin_pb2.AgentsRequest(), timeout=5)
            return reply.agents[0].state

        assert state() == "ready"
        wait_for(lambda: state() == "down", timeout=4, what="the agent to be down")
        assert time.monotonic() - started >= 0.5
        web = status(admin, "web")
        assert web.running == 0
        assert [p.state for p in web.processes] == [types_pb2.PROCESS_STATE_UNKNOWN] * 2
        assert all(p.host_id == "h1" for p in web.processes)
        info = admin.Agents(admin_pb2.AgentsRequest(), timeout=5).agents[0]
        assert (info.host_id, info.address, info.processes, info.version) == (
            "h1",
            "h1.test",
            2,
            "test",
        )
        events = list(admin.Events(admin_pb2.EventsRequest(), timeout=5))
        assert [(e.kind, e.host_id) for e in events if e.kind.startswith("agent_")] == [
            ("agent_up", ""),
            ("agent_down", ""),
        ]

        agent.send(observed=observed(1, 2))
        wait_for(lambda: state() == "ready", what="the agent to be ready again")
    finally:
        controller.kill9()


def test_a_second_connection_replaces_the_first_and_a_closed_stream_is_down_at_once(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    admin = controller.admin()
    apply(admin)
    first = FakeAgent(controller.address, "h1")
    agents.append(first)
    first.receive("assignment")
    second = FakeAgent(controller.address, "h1")
    agents.append(second)
    second.receive("assignment")
    assert first.ended.wait(5)

    def agent_states() -> list[str]:
        return [a.state for a in admin.Agents(admin_pb2.AgentsRequest(), timeout=5).agents]

    assert agent_states() == ["ready"]
    second.close()
    wait_for(lambda: agent_states() == ["down"], timeout=3, what="the agent to be down")
    # its share stays placed on it (not pending) until --reschedule-after
    assert status(admin, "web").pending == 0


def test_agent_streams_that_end_while_the_controller_writes_end_cleanly(
    controller: ControllerProcess,
) -> None:
    """An agent that half-closes right after its Hello ends its stream while the
    controller is still writing the Welcome and the Assignment. The write in flight must
    finish instead of being cancelled: gRPC cannot end a call whose write was abandoned,
    and the agent then waited out its deadline (DEADLINE_EXCEEDED instead of OK)."""
    apply(controller.admin())
    channel = grpc.insecure_channel(controller.address)
    connect = channel.stream_stream(
        "/stack.v1.AgentService/Connect", request_serializer=None, response_deserializer=None
    )
    codes = []
    for n in range(40):
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(host_id=f"h{n % 3}"))
        try:
            for _ in connect(iter([hello.SerializeToString()]), timeout=20):
                pass
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    channel.close()
    assert codes == [grpc.StatusCode.OK] * 40
    assert "ExecuteBatchError" not in controller.output()


def test_signal_log_tail_and_follow_go_through_the_agents(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    admin = controller.admin()
    apply(admin)
    agent = FakeAgent(controller.address, "h1", observed(1, 2))
    agents.append(agent)
    agent.receive("assignment")

    reply = admin.Signal(admin_pb2.SignalRequest(watcher="web", signal="sighup"), timeout=5)
    assert (reply.agents, reply.processes) == (1, 2)
    command = agent.receive("signal").signal
    assert (command.watcher, command.signal, command.wid) == ("web", "HUP", 0)
    no_such_wid = admin_pb2.SignalRequest(watcher="web", signal="HUP", wid=9)
    err = rpc_error(lambda: admin.Signal(no_such_wid))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "no running process of worker 9 of 'web' to signal",
    )
    err = rpc_error(lambda: admin.Signal(admin_pb2.SignalRequest(watcher="web", signal="FOO")))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown signal 'FOO'",
    )

    lines = admin.Logs(admin_pb2.LogsRequest(watcher="web", lines=2, follow=True), timeout=10)
    request = agent.receive("log_tail").log_tail
    assert (request.watcher, request.lines) == ("web", 2)

    def line(at: float, text: str, wid: int = 1) -> types_pb2.LogLine:
        return types_pb2.LogLine(at=at, watcher="web", wid=wid, stream="out", text=text)

    agent.send(
        log_tail=agent_pb2.LogTailReply(
            request_id=request.request_id,
            lines=[line(3.0, "c", 2), line(1.0, "a"), line(2.0, "b")],
        )
    )
    assert [(next(lines).text) for _ in range(2)] == ["b", "c"]
    agent.send(logs=agent_pb2.LogBatch(lines=[line(time.time(), "live")]))
    live = next(lines)
    assert (live.text, live.host_id) == ("live", "h1")
    lines.cancel()

    admin.Scale(admin_pb2.ScaleRequest(watcher="web", count=3), timeout=5)
    events = admin.Events(admin_pb2.EventsRequest(follow=True, watcher="web"), timeout=10)
    recent = next(events)
    assert (recent.kind, recent.host_id, recent.message) == ("scale", "", "scale web: 2 -> 3")
    agent.send(
        events=agent_pb2.EventBatch(
            events=[
                types_pb2.Event(watcher="other", kind="spawn"),
                types_pb2.Event(watcher="web", wid=1, kind="spawn", message="pid 1001"),
            ]
        )
    )
    event = next(events)
    assert (event.kind, event.host_id, event.wid) == ("spawn", "h1", 1)
    events.cancel()


def test_status_reports_the_worst_phase_of_the_agents(
    controller: ControllerProcess, agents: list[FakeAgent]
) -> None:
    admin = controller.admin()
    apply(admin)
    state = observed(1, 2)
    state.watchers[0].phase = types_pb2.WATCHER_PHASE_FLAPPING
    state.watchers[0].message = "flapping, retry in 5s"
    state.processes[1].state = types_pb2.PROCESS_STATE_BACKOFF
    agent = FakeAgent(controller.address, "h1", state)
    agents.append(agent)
    agent.receive("assignment")
    web = status(admin, "web")
    assert (web.phase, web.message, web.running) == (
        types_pb2.WATCHER_PHASE_FLAPPING,
        "flapping, retry in 5s",
        1,
    )
    assert status(admin, "job").phase == types_pb2.WATCHER_PHASE_STOPPED
