"""An agent the test scripts: the real AgentService protocol, whatever it is told to send.

For hostile and broken agents: it says Hello, keeps every Assignment it is given, and
sends the Observed reports, events and log lines the test writes, over one real gRPC
stream to a real controller. Its replies are read on a thread of its own.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import grpc

from stack.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from tests.integration.cluster import channel


class FakeAgent:
    """One scripted agent session; use it as a context manager."""

    def __init__(self, address: str, hello: agent_pb2.Hello) -> None:
        self.hello = hello
        self._outbox: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self._channel = channel(address)
        stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._outbox.put(agent_pb2.AgentMessage(hello=hello))
        self._call = stub.Connect(self._messages())
        self.assignments: list[agent_pb2.Assignment] = []
        self._got = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _messages(self) -> Iterator[agent_pb2.AgentMessage]:
        while (message := self._outbox.get()) is not None:
            yield message

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for message in self._call:
                if message.WhichOneof("body") == "assignment":
                    with self._got:
                        self.assignments.append(message.assignment)
                        self._got.notify_all()

    def wids(self, watcher: str, timeout: float = 30.0) -> list[int]:
        """The worker ids of `watcher` in the latest Assignment, once it has some."""

        def assigned() -> list[int]:
            latest = self.assignments[-1].watchers if self.assignments else ()
            return next((list(w.wids) for w in latest if w.spec.name == watcher), [])

        with self._got:
            if not self._got.wait_for(assigned, timeout):
                raise AssertionError(f"no worker of {watcher} was assigned to {self.hello.host_id}")
            return assigned()

    def observed(self, processes: list[types_pb2.ProcessStatus], generation: int = 0) -> None:
        generation = generation or (self.assignments[-1].generation if self.assignments else 0)
        self.send(
            agent_pb2.AgentMessage(
                observed=agent_pb2.Observed(generation=generation, processes=processes)
            )
        )

    def events(self, events: list[types_pb2.Event]) -> None:
        self.send(agent_pb2.AgentMessage(events=agent_pb2.EventBatch(events=events)))

    def send(self, message: agent_pb2.AgentMessage) -> None:
        self._outbox.put(message)

    def backlog(self) -> int:
        """Messages queued and not yet taken by gRPC."""
        return self._outbox.qsize()

    def close(self) -> None:
        self._outbox.put(None)
        self._call.cancel()
        self._channel.close()
        self._reader.join(5)

    def __enter__(self) -> FakeAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
