"""The agent's session against a minimal AgentService on 127.0.0.1 (real gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

import stack
from stack.agent.engine import Engine
from stack.agent.session import Session
from stack.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from stack.wire.agent import assignment_to_proto
from tests.support.engine import assignment, run, running_pids, settings, watcher
from tests.support.ports import reserve_port
from tests.support.wait import until

CMD = "sh -c 'echo hello $STACK_WID; exec sleep 300'"


class FakeController(agent_pb2_grpc.AgentServiceServicer):
    """Records what the agent sends; the test pushes ControllerMessages through `send`."""

    def __init__(self) -> None:
        self.inbox: dict[str, asyncio.Queue[agent_pb2.AgentMessage]] = {
            kind: asyncio.Queue() for kind in ("hello", "observed", "events", "logs", "log_tail")
        }
        self.outbox: asyncio.Queue[agent_pb2.ControllerMessage] = asyncio.Queue()

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ControllerMessage],
    ) -> AsyncIterator[agent_pb2.ControllerMessage]:
        async def pump() -> None:
            async for msg in request_iterator:
                self.inbox[str(msg.WhichOneof("body"))].put_nowait(msg)

        reader = asyncio.ensure_future(pump())
        try:
            while True:
                yield await self.outbox.get()
        finally:
            reader.cancel()

    def send(self, **body: object) -> None:
        self.outbox.put_nowait(agent_pb2.ControllerMessage(**body))  # type: ignore[arg-type]

    async def expect(self, kind: str, timeout: float = 5.0) -> agent_pb2.AgentMessage:
        """The next message of `kind` (messages of each kind are queued separately)."""
        async with asyncio.timeout(timeout):
            return await self.inbox[kind].get()


@contextlib.asynccontextmanager
async def serving(port: int) -> AsyncIterator[FakeController]:
    server = grpc.aio.server()
    fake = FakeController()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(fake, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield fake
    finally:
        await server.stop(0)


def test_session_hello_assignment_observed_logs_tail_signal_heartbeat(
    tmp_path: Path, reserved_port: int
) -> None:
    port = reserved_port

    async def scenario() -> None:
        config = settings(tmp_path, controller=f"127.0.0.1:{port}", labels={"zone": "a"})
        async with serving(port) as fake, Engine(config) as engine, asyncio.TaskGroup() as tg:
            session = tg.create_task(Session(config, engine).run())
            hello = (await fake.expect("hello")).hello
            assert (hello.host_id, hello.version) == ("test-host", stack.__version__)
            assert dict(hello.labels) == {"zone": "a"} and hello.address
            fake.send(welcome=agent_pb2.Welcome(fencing_token=3, heartbeat_interval=0.3))
            fake.send(
                fencing_token=3,
                assignment=assignment_to_proto(
                    assignment(watcher("w", CMD, [1, 2]), generation=7, fencing_token=3)
                ),
            )
            observed = (await fake.expect("observed")).observed
            assert observed.generation == 7
            while len(running_pids(observed, "w")) < 2:
                observed = (await fake.expect("observed")).observed
            assert all(p.host_id == "test-host" for p in observed.processes)
            pids = running_pids(observed, "w")

            events = list((await fake.expect("events")).events.events)
            while not {"assignment_applied", "spawn"} <= {e.kind for e in events}:
                events += (await fake.expect("events")).events.events  # in as many batches
            assert all(e.host_id == "test-host" for e in events)
            lines = (await fake.expect("logs")).logs.lines
            assert {line.text for line in lines} <= {"hello 1", "hello 2"}

            fake.send(log_tail=agent_pb2.LogTailRequest(request_id=9, watcher="w", lines=5))
            reply = (await fake.expect("log_tail")).log_tail
            assert reply.request_id == 9 and sorted(ln.text for ln in reply.lines) == [
                "hello 1",
                "hello 2",
            ]
            fake.send(log_tail=agent_pb2.LogTailRequest(request_id=10, watcher="nope", lines=5))
            assert "nope" in (await fake.expect("log_tail")).log_tail.error

            fake.send(signal=agent_pb2.SignalCommand(watcher="w", wid=1, signal="TERM"))
            while running_pids(observed, "w").get(1, pids[1]) == pids[1]:
                observed = (await fake.expect("observed")).observed
            assert running_pids(observed, "w")[2] == pids[2]

            # Nothing changes: Observed still arrives every heartbeat interval, the Welcome's
            # 0.3 s (3 in 0.9 s), not the agent's own 2 s (3 in 4 s at least); the bound between
            # leaves a loaded machine's timers 2 s of lateness.
            started = time.monotonic()
            for _ in range(3):
                await fake.expect("observed")
            assert time.monotonic() - started < 3.0
            session.cancel()

    run(scenario())


def test_a_second_welcome_changes_the_heartbeat_interval_at_once(
    tmp_path: Path, reserved_port: int
) -> None:
    """A controller whose fleet grew or shrank tells the interval again on the stream: 30 s,
    and no heartbeat comes for 3 s; 0.3 s, and the agent stops waiting out the 30 s (a
    heartbeat within 3 s, not 30)."""
    port = reserved_port

    async def scenario() -> None:
        config = settings(tmp_path, controller=f"127.0.0.1:{port}")
        async with serving(port) as fake, Engine(config) as engine, asyncio.TaskGroup() as tg:
            session = tg.create_task(Session(config, engine).run())
            await fake.expect("hello")
            fake.send(welcome=agent_pb2.Welcome(fencing_token=3, heartbeat_interval=0.3))
            fake.send(
                fencing_token=3,
                assignment=assignment_to_proto(assignment(generation=1, fencing_token=3)),
            )
            await fake.expect("observed")
            fake.send(welcome=agent_pb2.Welcome(fencing_token=3, heartbeat_interval=30.0))
            late = 0  # sent before it heard of 30 s: one or two at most, then 3 s quiet
            with contextlib.suppress(TimeoutError):
                while True:
                    await fake.expect("observed", timeout=3.0)
                    late += 1
                    assert late <= 2, "still heartbeating every 0.3 s"
            fake.send(welcome=agent_pb2.Welcome(fencing_token=3, heartbeat_interval=0.3))
            started = time.monotonic()
            await fake.expect("observed", timeout=3.0)
            assert time.monotonic() - started < 3.0
            session.cancel()

    run(scenario())


def test_lost_controller_keeps_workers_and_agent_follows_redirect_and_reconnects(
    tmp_path: Path,
) -> None:
    with reserve_port() as first, reserve_port() as second:  # the agent is told both
        _follows_redirect_and_reconnects(tmp_path, first, second)


def _follows_redirect_and_reconnects(tmp_path: Path, first: int, second: int) -> None:

    async def scenario() -> None:
        config = settings(tmp_path, controller=f"127.0.0.1:{first}", reconnect_max=0.5)
        async with Engine(config) as engine, asyncio.TaskGroup() as tg:
            session = tg.create_task(Session(config, engine).run())
            async with serving(first) as fake:
                await fake.expect("hello")
                fake.send(welcome=agent_pb2.Welcome(fencing_token=1))
                fake.send(assignment=assignment_to_proto(assignment(watcher("w", CMD, [1, 2]))))
                pids = await until(
                    lambda: len(r := running_pids(engine.observed(), "w")) == 2 and r,
                    what="2 workers",
                )
                async with serving(second) as leader:
                    fake.send(redirect=agent_pb2.Redirect(leader_address=f"127.0.0.1:{second}"))
                    hello = (await leader.expect("hello")).hello
                    assert running_pids(hello.observed, "w") == pids
            # both controllers are gone now: the workers keep running
            await asyncio.sleep(0.5)
            assert running_pids(engine.observed(), "w") == pids
            async with serving(second) as back:
                hello = (await back.expect("hello", timeout=5)).hello
                assert running_pids(hello.observed, "w") == pids
                assert hello.last_generation == 1 and hello.last_fencing_token == 1
                fake_stale = assignment_to_proto(assignment(generation=2, fencing_token=0))
                back.send(welcome=agent_pb2.Welcome(fencing_token=1))
                back.send(assignment=fake_stale)  # fenced off: ignored, workers stay
                await back.expect("observed")
                assert running_pids(engine.observed(), "w") == pids
            session.cancel()
        states = {p.state for p in engine.observed().processes}
        assert states == {types_pb2.PROCESS_STATE_STOPPED}, "leaving the engine stops workers"

    run(scenario())


class ElectingController(agent_pb2_grpc.AgentServiceServicer):
    """Answers each of the first `leaderless` hellos with a Redirect naming no leader (an
    election under way), then welcomes; records when each hello came."""

    def __init__(self, leaderless: int) -> None:
        self.leaderless = leaderless
        self.hellos: list[float] = []
        self.welcomed = asyncio.Event()

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ControllerMessage],
    ) -> AsyncIterator[agent_pb2.ControllerMessage]:
        async for msg in request_iterator:
            if msg.WhichOneof("body") == "hello":
                break
        self.hellos.append(time.monotonic())
        if len(self.hellos) <= self.leaderless:
            yield agent_pb2.ControllerMessage(redirect=agent_pb2.Redirect(leader_address=""))
            return
        yield agent_pb2.ControllerMessage(welcome=agent_pb2.Welcome(fencing_token=1))
        self.welcomed.set()
        async for _ in request_iterator:
            pass


def test_an_agent_asks_again_within_a_second_all_through_a_long_election(
    tmp_path: Path, reserved_port: int
) -> None:
    # Twelve "no leader yet" answers in a row: with the backoff left to grow to its 10 s
    # cap the agent would come back to the new leader up to 10 s late, past the hold a
    # new leader keeps on an absent agent's share; it must keep asking about every second.
    port = reserved_port

    async def scenario() -> None:
        config = settings(tmp_path, controller=f"127.0.0.1:{port}")
        assert config.reconnect_max >= 10
        electing = ElectingController(leaderless=12)
        server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(electing, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            async with Engine(config) as engine, asyncio.TaskGroup() as tg:
                session = tg.create_task(Session(config, engine).run())
                async with asyncio.timeout(40):
                    await electing.welcomed.wait()
                session.cancel()
        finally:
            await server.stop(0)
        gaps = [b - a for a, b in itertools.pairwise(electing.hellos)]
        assert len(gaps) == 12
        # At most 1 s of backoff between two attempts, and 1.5 s for a loaded machine.
        assert max(gaps) < 2.5, [round(g, 2) for g in gaps]

    run(scenario())
