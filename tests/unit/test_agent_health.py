"""Health checks: the pure verdict, target parsing, one check against real local sockets,
and how status shows health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from stack.agent.health import (
    CheckContext,
    CheckFailed,
    Endpoint,
    Health,
    HealthState,
    check,
    http_endpoint,
    parse_status_line,
    record,
    tcp_endpoint,
)
from stack.agent.reaper import Reaper
from stack.agent.sockets import BoundSocket, SocketPool
from stack.cli import render
from stack.cli.status_view import Layout, status_lines
from stack.spec.model import HealthSpec, SocketSpec
from stack.v1 import admin_pb2, types_pb2

S, H, U = Health.STARTING, Health.HEALTHY, Health.UNHEALTHY
FAIL = "tcp 127.0.0.1:1: connection refused"


# -- the verdict ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "failure", "retries", "after", "restart"),
    [
        # A pass makes a process healthy and clears the run of failures, keeping the text.
        (HealthState(S), None, 3, HealthState(H), False),
        (HealthState(S, 2, FAIL), None, 3, HealthState(H, 0, FAIL), False),
        # Failures below `retries` leave the health as it was.
        (HealthState(S), FAIL, 3, HealthState(S, 1, FAIL), False),
        (HealthState(H), FAIL, 3, HealthState(H, 1, FAIL), False),
        (HealthState(H, 1, "old"), FAIL, 3, HealthState(H, 2, FAIL), False),
        # The retries-th failure in a row is unhealthy and restarts the process.
        (HealthState(H, 2, "old"), FAIL, 3, HealthState(U, 3, FAIL), True),
        (HealthState(S, 2, "old"), FAIL, 3, HealthState(U, 3, FAIL), True),
        (HealthState(S), FAIL, 1, HealthState(U, 1, FAIL), True),
        # retries below 1 is taken as 1.
        (HealthState(S), FAIL, 0, HealthState(U, 1, FAIL), True),
        # Unhealthy is final for the process: no second restart.
        (HealthState(U, 3, FAIL), FAIL, 3, HealthState(U, 3, FAIL), False),
        (HealthState(U, 3, FAIL), None, 3, HealthState(U, 3, FAIL), False),
    ],
)
def test_record_turns_check_results_into_health_and_a_restart(
    before: HealthState, failure: str | None, retries: int, after: HealthState, restart: bool
) -> None:
    assert record(before, failure, retries) == (after, restart)


def test_only_retries_failures_in_a_row_restart_a_process() -> None:
    state = HealthState()
    results: list[bool] = []
    for failure in [FAIL, FAIL, None, FAIL, FAIL, FAIL]:
        state, restart = record(state, failure, 3)
        results.append(restart)
    assert results == [False, False, False, False, False, True]
    assert state.health is U


# -- targets -------------------------------------------------------------------------


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[SocketPool]:
    pool = SocketPool()
    pool.sync(
        [
            SocketSpec(name="web", host="0.0.0.0", port=0),
            SocketSpec(name="local", port=0),
            SocketSpec(name="unix", path=str(tmp_path / "s.sock")),
        ]
    )
    yield pool
    pool.close()


def named(pool: SocketPool) -> dict[str, BoundSocket]:
    return {bound.spec.name: bound for bound in pool.all()}


def context(pool: SocketPool, inherited: tuple[str, ...] = ()) -> CheckContext:
    return CheckContext(named(pool), inherited, env={}, pid=0, cwd="", reaper=Reaper())


def port_of(pool: SocketPool, name: str) -> int:
    bound = named(pool).get(name)
    assert bound is not None and bound.sock is not None
    return int(bound.sock.getsockname()[1])


def test_tcp_target_is_a_loopback_port_or_a_socket_name(pool: SocketPool, tmp_path: Path) -> None:
    ctx = context(pool)
    assert tcp_endpoint("8080", ctx) == Endpoint("127.0.0.1", 8080)
    assert tcp_endpoint("web", ctx) == Endpoint("127.0.0.1", port_of(pool, "web"))
    assert tcp_endpoint("unix", ctx) == Endpoint(path=str(tmp_path / "s.sock"))
    with pytest.raises(CheckFailed, match="socket 'nope' is not bound"):
        tcp_endpoint("nope", ctx)


def test_http_path_goes_to_the_first_inherited_tcp_socket(pool: SocketPool) -> None:
    ctx = context(pool, inherited=("unix", "local", "web"))
    where, path = http_endpoint("/health", ctx)
    assert (where, path) == (Endpoint("127.0.0.1", port_of(pool, "local")), "/health")
    with pytest.raises(CheckFailed, match="inherits no TCP socket"):
        http_endpoint("/health", context(pool, inherited=("unix",)))


@pytest.mark.parametrize(
    ("url", "where", "path"),
    [
        ("http://127.0.0.1:8080/health", Endpoint("127.0.0.1", 8080), "/health"),
        ("http://localhost/", Endpoint("localhost", 80), "/"),
        ("http://[::1]:81", Endpoint("::1", 81), "/"),
        ("http://10.0.0.1:9/ready?deep=1", Endpoint("10.0.0.1", 9), "/ready?deep=1"),
    ],
)
def test_http_url_target_gives_host_port_and_path(
    pool: SocketPool, url: str, where: Endpoint, path: str
) -> None:
    assert http_endpoint(url, context(pool)) == (where, path)


@pytest.mark.parametrize("url", ["https://example.test/", "health", "http:///x"])
def test_http_target_that_is_neither_a_path_nor_an_http_url_fails(
    pool: SocketPool, url: str
) -> None:
    with pytest.raises(CheckFailed):
        http_endpoint(url, context(pool))


@pytest.mark.parametrize(
    ("line", "status"),
    [(b"HTTP/1.1 200 OK\r\n", 200), (b"HTTP/1.0 503 Service Unavailable\r\n", 503),
     (b"HTTP/1.1 302\r\n", 302)],
)  # fmt: skip
def test_status_line_gives_the_status_code(line: bytes, status: int) -> None:
    assert parse_status_line(line) == status


@pytest.mark.parametrize(
    ("line", "why"),
    [(b"", "connection closed without a response"), (b"SSH-2.0-OpenSSH\r\n", "not an HTTP")],
)
def test_anything_but_a_status_line_fails(line: bytes, why: str) -> None:
    with pytest.raises(CheckFailed, match=why):
        parse_status_line(line)


# -- one check against real local servers --------------------------------------------


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(response: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.sleep(10)
    finally:
        writer.close()


def run_check_against(handler: Handler, target: str, timeout: float = 1.0) -> str | None:
    async def scenario() -> str | None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        spec = HealthSpec(type="http", target=target.format(port=port), timeout=timeout)
        async with server:
            return await check(spec, context(SocketPool()))

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("response", "result"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", None),
        (b"HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n", None),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", "status 404"),
        (b"HTTP/1.1 503 Busy\r\n\r\n", "status 503"),
        (b"hello\r\n", "not an HTTP response: 'hello'"),
    ],
)
def test_http_check_passes_on_2xx_and_3xx_only(response: bytes, result: str | None) -> None:
    outcome = run_check_against(answering(response), "http://127.0.0.1:{port}/health")
    if result is None:
        assert outcome is None
    else:
        assert outcome is not None and outcome.endswith(f"/health: {result}")


def test_http_check_of_a_server_that_never_answers_times_out() -> None:
    outcome = run_check_against(silent, "http://127.0.0.1:{port}/", timeout=0.1)
    assert outcome is not None and outcome.endswith(": timed out after 0.1s")


def test_tcp_check_by_socket_name_passes_while_the_agent_socket_is_bound(
    pool: SocketPool, tmp_path: Path
) -> None:
    # No worker accepts here: the agent's own listening socket completes the connect.
    async def scenario() -> list[str | None]:
        ctx = context(pool)
        return [await check(HealthSpec(type="tcp", target=t), ctx) for t in ("web", "unix")]

    assert asyncio.run(scenario()) == [None, None]


def test_tcp_check_of_a_closed_port_says_connection_refused() -> None:
    async def scenario() -> tuple[int, str | None]:
        closed = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        return port, await check(HealthSpec(type="tcp", target=str(port)), context(SocketPool()))

    port, outcome = asyncio.run(scenario())
    assert outcome == f"tcp 127.0.0.1:{port}: connection refused"


def test_unknown_check_type_fails_with_a_reason() -> None:
    outcome = asyncio.run(check(HealthSpec(type="grpc", target="x"), context(SocketPool())))
    assert outcome == "grpc x: unknown check type 'grpc'"


# -- status --------------------------------------------------------------------------


def rendered(watchers: list[admin_pb2.WatcherStatus], layout: Layout) -> list[str]:
    return status_lines(admin_pb2.StatusReply(watchers=watchers), 0.0, layout)


def status_with(*processes: types_pb2.ProcessStatus) -> list[admin_pb2.WatcherStatus]:
    return [admin_pb2.WatcherStatus(name="web", numprocesses=len(processes), processes=processes)]


RUNNING = types_pb2.PROCESS_STATE_RUNNING


def test_wide_status_has_a_health_column_only_when_a_process_has_a_check() -> None:
    checked = status_with(
        types_pb2.ProcessStatus(watcher="web", wid=1, pid=10, state=RUNNING,
                                health=types_pb2.HEALTH_HEALTHY),
        types_pb2.ProcessStatus(watcher="web", wid=2, pid=11, state=RUNNING,
                                health=types_pb2.HEALTH_STARTING,
                                health_message="http /health: status 503"),
    )  # fmt: skip
    lines = rendered(checked, Layout(wide=True))
    assert lines[1].split()[:5] == ["WID", "HOST", "PID", "STATE", "HEALTH"]
    assert lines[2].split()[3:5] == ["running", "healthy"]
    assert lines[3].split()[3:5] == ["running", "starting"]
    assert lines[3].endswith("http /health: status 503")  # why it is not healthy yet
    # 80 columns: no HEALTH column, but the message says why it is not healthy yet
    assert rendered(checked, Layout())[3].endswith("http /health: status 503")
    plain = status_with(types_pb2.ProcessStatus(watcher="web", wid=1, pid=10, state=RUNNING))
    assert "HEALTH" not in "\n".join(rendered(plain, Layout(wide=True)))


def test_last_exit_of_an_unhealthy_restart_says_why() -> None:
    last = types_pb2.LastExit(
        signal=15, reason=types_pb2.EXIT_REASON_UNHEALTHY, at=1.0, message="exec ./check: exit 1"
    )
    assert render.format_last_exit(last) == "SIGTERM (unhealthy: exec ./check: exit 1)"


def test_json_status_names_health_like_the_other_enums() -> None:
    names = [
        render.to_json(types_pb2.ProcessStatus(health=value))["health"]
        for value in (
            types_pb2.HEALTH_UNSPECIFIED,
            types_pb2.HEALTH_STARTING,
            types_pb2.HEALTH_HEALTHY,
            types_pb2.HEALTH_UNHEALTHY,
        )
    ]
    assert names == ["unspecified", "starting", "healthy", "unhealthy"]
    document = render.to_json(types_pb2.ProcessStatus(health_message="tcp 1: refused"))
    assert document["health_message"] == "tcp 1: refused"
