"""stackctl end to end against real gRPC on 127.0.0.1: nothing listening, or a scripted
AdminService that records what it was asked and answers what the test says."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from stack.cli.main import app
from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2

runner = CliRunner()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nothing_listens() -> str:
    return f"127.0.0.1:{closed_port()}"


class ScriptedAdmin(admin_pb2_grpc.AdminServiceServicer):
    """An AdminService whose answers the test sets; it records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.status_replies: list[admin_pb2.StatusReply] = []
        self.scale_reply = admin_pb2.ScaleReply(watcher="webapp", previous=4, numprocesses=2)
        self.apply_reply = admin_pb2.ApplyReply()
        self.log_lines: list[types_pb2.LogLine] = []
        self.error: tuple[grpc.StatusCode, str] | None = None

    def _record(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        self.requests.append((name, request))
        if self.error is not None:
            context.abort(*self.error)

    def Scale(self, request: Any, context: grpc.ServicerContext) -> admin_pb2.ScaleReply:
        self._record("Scale", request, context)
        return self.scale_reply

    def Apply(self, request: Any, context: grpc.ServicerContext) -> admin_pb2.ApplyReply:
        self._record("Apply", request, context)
        return self.apply_reply

    def Stop(self, request: Any, context: grpc.ServicerContext) -> admin_pb2.WatchersReply:
        self._record("Stop", request, context)
        return admin_pb2.WatchersReply(watchers=list(request.watchers) or ["a", "b"])

    def Status(self, request: Any, context: grpc.ServicerContext) -> admin_pb2.StatusReply:
        self._record("Status", request, context)
        if len(self.status_replies) > 1:
            return self.status_replies.pop(0)
        return self.status_replies[0] if self.status_replies else admin_pb2.StatusReply()

    def Agents(self, request: Any, context: grpc.ServicerContext) -> admin_pb2.AgentsReply:
        self._record("Agents", request, context)
        return admin_pb2.AgentsReply(agents=[admin_pb2.AgentInfo(host_id="h1", state="ready")])

    def Logs(self, request: Any, context: grpc.ServicerContext) -> Iterator[types_pb2.LogLine]:
        self._record("Logs", request, context)
        yield from self.log_lines


@pytest.fixture
def admin() -> Iterator[tuple[ScriptedAdmin, str]]:
    servicer = ScriptedAdmin()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def stackctl(address: str, *args: str) -> Any:
    return runner.invoke(app, ["--controller", address, *args])


# -- nothing listening -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["status"], ["scale", "webapp", "3"], ["logs", "webapp"], ["-o", "json", "agents"]],
)
def test_unreachable_controller_is_one_line_and_exit_1(args: list[str]) -> None:
    address = nothing_listens()
    result = stackctl(address, *args)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"stackctl: cannot reach the controller at {address} (is stack-controller running?)\n"
    )
    assert result.stdout == ""


def test_controller_address_comes_from_the_environment() -> None:
    address = nothing_listens()
    result = runner.invoke(app, ["status"], env={"STACK_CONTROLLER": address})
    assert result.exit_code == 1
    assert f"cannot reach the controller at {address}" in result.stderr


def test_scale_accepts_a_negative_count_without_double_dash() -> None:
    # It parses and gets as far as calling the controller (exit 1, not a usage error).
    result = stackctl(nothing_listens(), "scale", "webapp", "-2")
    assert result.exit_code == 1, result.output
    assert "cannot reach the controller" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["scale", "webapp", "two"],
        ["scale", "webapp"],
        ["stop"],
        ["stop", "webapp", "--all"],
        ["-o", "xml", "status"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = stackctl(nothing_listens(), *args)
    assert result.exit_code == 2, result.output


def test_bad_controller_address_is_a_usage_error() -> None:
    result = runner.invoke(app, ["--controller", "localhost", "status"])
    assert result.exit_code == 2


def test_unreadable_stack_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "webapp.toml"
    result = stackctl(nothing_listens(), "apply", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"stackctl: cannot read {missing}: No such file or directory\n"


def test_stackctl_runs_as_a_module_and_fails_without_a_traceback() -> None:
    address = nothing_listens()
    proc = subprocess.run(
        [sys.executable, "-m", "stack.cli.main", "--controller", address, "status"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == (
        f"stackctl: cannot reach the controller at {address} (is stack-controller running?)\n"
    )


# -- a scripted controller ----------------------------------------------------------


def test_scale_sends_a_relative_count_and_prints_old_and_new(
    admin: tuple[ScriptedAdmin, str],
) -> None:
    servicer, address = admin
    result = stackctl(address, "scale", "webapp", "-2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "webapp: 4 -> 2\n"
    ((name, request),) = servicer.requests
    assert (name, request.watcher, request.count, request.relative) == ("Scale", "webapp", -2, True)


def test_scale_json_prints_the_reply(admin: tuple[ScriptedAdmin, str]) -> None:
    _, address = admin
    result = stackctl(address, "-o", "json", "scale", "webapp", "2")
    assert json.loads(result.stdout) == {"watcher": "webapp", "previous": 4, "numprocesses": 2}


def test_server_errors_are_printed_as_the_servers_one_line(
    admin: tuple[ScriptedAdmin, str],
) -> None:
    servicer, address = admin
    servicer.error = (grpc.StatusCode.NOT_FOUND, "unknown watcher 'nope'")
    result = stackctl(address, "scale", "nope", "3")
    assert result.exit_code == 1
    assert result.stderr == "stackctl: unknown watcher 'nope'\n"


def test_unavailable_with_a_server_message_is_not_called_unreachable(
    admin: tuple[ScriptedAdmin, str],
) -> None:
    servicer, address = admin
    servicer.error = (grpc.StatusCode.UNAVAILABLE, "not the leader; try 10.0.0.2:7450")
    result = stackctl(address, "status")
    assert result.stderr == "stackctl: not the leader; try 10.0.0.2:7450\n"


def running_webapp(running: int, want: int) -> admin_pb2.StatusReply:
    processes = [
        types_pb2.ProcessStatus(
            watcher="webapp", wid=wid, pid=100 + wid, state=types_pb2.PROCESS_STATE_RUNNING
        )
        for wid in range(1, running + 1)
    ]
    watcher = admin_pb2.WatcherStatus(
        name="webapp", numprocesses=want, active=True, running=running, processes=processes
    )
    return admin_pb2.StatusReply(watchers=[watcher])


def test_scale_wait_polls_status_until_the_count_is_running(
    admin: tuple[ScriptedAdmin, str],
) -> None:
    servicer, address = admin
    servicer.scale_reply = admin_pb2.ScaleReply(watcher="webapp", previous=1, numprocesses=3)
    servicer.status_replies = [running_webapp(1, 3), running_webapp(2, 3), running_webapp(3, 3)]
    result = stackctl(address, "scale", "webapp", "3", "--wait", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert [name for name, _ in servicer.requests] == ["Scale", "Status", "Status", "Status"]


def test_scale_wait_times_out_saying_what_is_missing(admin: tuple[ScriptedAdmin, str]) -> None:
    servicer, address = admin
    servicer.scale_reply = admin_pb2.ScaleReply(watcher="webapp", previous=1, numprocesses=6)
    servicer.status_replies = [running_webapp(3, 6)]
    result = stackctl(address, "scale", "webapp", "+5", "--wait", "--timeout", "0.3")
    assert result.exit_code == 1
    assert result.stderr == "stackctl: timed out after 0.3s: webapp has 3 of 6 running\n"


def test_stop_all_names_every_watcher_acted_on(admin: tuple[ScriptedAdmin, str]) -> None:
    servicer, address = admin
    result = stackctl(address, "stop", "--all")
    assert result.stdout == "stopping a\nstopping b\n"
    ((_, request),) = servicer.requests
    assert request.all and list(request.watchers) == []


def test_apply_sends_the_file_name_and_text_and_prints_the_diff(
    admin: tuple[ScriptedAdmin, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, address = admin
    (tmp_path / "webapp.toml").write_text('[watchers.ticker]\ncmd = "sleep 1"\n')
    monkeypatch.chdir(tmp_path)
    servicer.apply_reply = admin_pb2.ApplyReply(
        changes=[admin_pb2.Change(op="add", kind="watcher", name="ticker")],
        applied=True,
        generation=5,
    )
    result = stackctl(address, "apply", "webapp.toml")
    assert result.stdout == "+ watcher ticker\napplied (generation 5)\n"
    ((_, plan), (_, request)) = servicer.requests
    assert plan.dry_run and not plan.HasField("if_generation")
    assert request.filename == "webapp.toml"
    assert request.content == '[watchers.ticker]\ncmd = "sleep 1"\n'
    assert not request.dry_run
    assert request.if_generation == 5, "applied only if the stack is still as planned"


def test_apply_that_removes_is_refused_without_a_terminal_unless_yes(
    admin: tuple[ScriptedAdmin, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, address = admin
    (tmp_path / "small.toml").write_text('[watchers.ticker]\ncmd = "sleep 1"\n')
    monkeypatch.chdir(tmp_path)
    servicer.apply_reply = admin_pb2.ApplyReply(
        changes=[
            admin_pb2.Change(op="remove", kind="watcher", name="webapp"),
            admin_pb2.Change(op="change", kind="watcher", name="ticker", replaces=True),
        ],
        generation=7,
    )
    refused = stackctl(address, "apply", "small.toml")
    assert refused.exit_code == 1
    assert refused.stdout == "- watcher webapp\n~ watcher ticker (replaces its workers)\n"
    assert refused.stderr == (
        "stackctl: this apply would remove watcher webapp, and replace the workers of "
        "watcher ticker: nothing was applied; run it on a terminal to confirm, or pass --yes\n"
    )
    assert [request.dry_run for _, request in servicer.requests] == [True]
    servicer.requests.clear()
    assert stackctl(address, "apply", "small.toml", "--yes").exit_code == 0
    ((_, request),) = servicer.requests
    assert not request.dry_run and not request.HasField("if_generation")


def test_logs_print_one_line_each_and_json_is_one_document(
    admin: tuple[ScriptedAdmin, str],
) -> None:
    servicer, address = admin
    servicer.log_lines = [
        types_pb2.LogLine(at=1.0, host_id="h1", watcher="webapp", wid=wid, stream="out", text=t)
        for wid, t in ((1, "one"), (2, "two"))
    ]
    text = stackctl(address, "logs", "webapp", "-n", "2", "--stream", "err")
    assert [line.split(" ", 2)[2] for line in text.stdout.splitlines()] == [
        "webapp[1] one", "webapp[2] two",
    ]  # fmt: skip
    logs_requests = [r for name, r in servicer.requests if name == "Logs"]
    assert (logs_requests[0].lines, logs_requests[0].stream) == (2, "err")
    document = json.loads(stackctl(address, "-o", "json", "logs", "webapp").stdout)
    assert [line["text"] for line in document["lines"]] == ["one", "two"]


def test_status_json_is_one_document_from_the_controller(
    admin: tuple[ScriptedAdmin, str],
) -> None:
    servicer, address = admin
    servicer.status_replies = [running_webapp(2, 2)]
    document = json.loads(stackctl(address, "-o", "json", "status").stdout)
    (watcher,) = document["watchers"]
    assert [p["state"] for p in watcher["processes"]] == ["running", "running"]


# -- the direct path (no typer) and typer print the same ----------------------------------


def run_direct(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`stackctl ARGS` through its front door, in-process."""
    from stack.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "args",
    [
        ["scale", "webapp", "-2"],
        ["-o", "json", "scale", "webapp", "2"],
        ["stop", "--all"],
        ["status"],
        ["-o", "yaml", "status"],
        ["-o", "wide", "status", "webapp"],
        ["logs", "webapp", "-n", "2"],
    ],
)
def test_the_direct_path_prints_what_typer_prints(
    admin: tuple[ScriptedAdmin, str], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    servicer, address = admin
    servicer.status_replies = [running_webapp(2, 2)]
    through_typer = stackctl(address, *args)
    code, out, err = run_direct(capsys, "--controller", address, *args)
    assert (code, err) == (through_typer.exit_code, through_typer.stderr)
    assert out == through_typer.stdout


def test_global_options_after_the_command_reach_the_controller(
    admin: tuple[ScriptedAdmin, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = admin
    servicer.status_replies = [running_webapp(2, 2)]
    code, out, _ = run_direct(capsys, "status", "-o", "json", "--controller", address)
    assert code == 0 and json.loads(out)["watchers"][0]["name"] == "webapp"
    code, out, _ = run_direct(capsys, "scale", "webapp", "2", "--controller", address, "-ojson")
    assert code == 0 and json.loads(out)["numprocesses"] == 2
    assert [name for name, _ in servicer.requests] == ["Status", "Scale"]
