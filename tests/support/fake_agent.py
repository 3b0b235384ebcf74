"""An agent the test scripts: the real AgentService protocol, whatever it is told to send.

For the controller's tests and for hostile and broken agents: it says Hello, keeps every
message the controller sends (each Assignment also in `assignments`), and sends the
Observed reports, events and log lines the test writes, over one real gRPC stream to a
real controller. The controller's messages are read on a thread of its own.

`observed` and `running_observed` build the reports an honest agent would send for the
worker ids it runs; bench/many_agents.py's simulated agents send the same.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import grpc

from stack.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from tests.support.harness import channel

RUNNING = types_pb2.PROCESS_STATE_RUNNING


class FakeAgent:
    """One scripted agent session; `close` half-closes it as an agent that exits does,
    `cancel` cuts it. Use it as a context manager to have it cancelled at the end.

    It sends nothing on its own unless given a `heartbeat` interval: then it sends its
    last Observed again every `heartbeat` seconds, as a live agent does, so the controller
    never holds it down for silence however slowly the test goes on."""

    def __init__(
        self,
        address: str,
        host_id: str = "h1",
        observed: agent_pb2.Observed | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        hello: agent_pb2.Hello | None = None,
        heartbeat: float = 0.0,
    ) -> None:
        if hello is None:
            hello = agent_pb2.Hello(
                host_id=host_id, version="test", address=f"{host_id}.test", labels=labels or {}
            )
            if observed is not None:
                hello.observed.CopyFrom(observed)
        self.hello = hello
        self.host_id = hello.host_id
        self.inbox: queue.Queue[agent_pb2.ControllerMessage | None] = queue.Queue()
        """Every message the controller sent, in order; None once the stream ended."""
        self.assignments: list[agent_pb2.Assignment] = []
        self.ended = threading.Event()
        self._outbox: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self._outbox.put(agent_pb2.AgentMessage(hello=hello))
        self._got = threading.Condition()
        self._channel = channel(address)
        stub = agent_pb2_grpc.AgentServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._call = stub.Connect(self._messages())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._last_observed = hello.observed
        self.stats_wanted = 0
        """How many StatsWanted the controller sent (not queued in `inbox`)."""
        self._stopped = threading.Event()
        if heartbeat > 0:
            threading.Thread(target=self._beat, args=(heartbeat,), daemon=True).start()

    def _beat(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self._outbox.put(agent_pb2.AgentMessage(observed=self._last_observed))

    def _messages(self) -> Iterator[agent_pb2.AgentMessage]:
        while (message := self._outbox.get()) is not None:
            yield message

    def _read(self) -> None:
        try:
            for message in self._call:
                if message.WhichOneof("body") == "stats_wanted":
                    # An ask to sample figures (a status was read): a fake agent has none
                    # to sample, and the commands and Assignments it queues stay apart.
                    self.stats_wanted += 1
                    continue
                if message.WhichOneof("body") == "assignment":
                    with self._got:
                        self.assignments.append(message.assignment)
                        self._got.notify_all()
                self.inbox.put(message)
        except grpc.RpcError:
            pass
        finally:
            self.ended.set()
            self.inbox.put(None)

    # -- what the controller sent -------------------------------------------

    def receive(self, kind: str, timeout: float = 10.0) -> agent_pb2.ControllerMessage:
        """The next message with body `kind`, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.host_id}: no {kind} within {timeout}s") from None
            if message is None:
                raise AssertionError(f"{self.host_id}: stream ended while waiting for {kind}")
            if message.WhichOneof("body") == kind:
                return message

    def assignments_queued(self) -> list[agent_pb2.ControllerMessage]:
        """Take the messages queued now and return the Assignments among them. The others
        (a StatsWanted that a status call sends, say) are dropped; the end of the stream
        stays queued for `receive` to see."""
        found: list[agent_pb2.ControllerMessage] = []
        while not self.inbox.empty():
            message = self.inbox.get_nowait()
            if message is None:
                self.inbox.put(None)
                break
            if message.WhichOneof("body") == "assignment":
                found.append(message)
        return found

    def wids(self, watcher: str, timeout: float = 30.0) -> list[int]:
        """The worker ids of `watcher` in the latest Assignment, once it has some."""

        def assigned() -> list[int]:
            latest = self.assignments[-1].watchers if self.assignments else ()
            return next((list(w.wids) for w in latest if w.spec.name == watcher), [])

        with self._got:
            if not self._got.wait_for(assigned, timeout):
                raise AssertionError(f"no worker of {watcher} was assigned to {self.host_id}")
            return assigned()

    # -- what it sends --------------------------------------------------------

    def send(self, message: agent_pb2.AgentMessage | None = None, **body: object) -> None:
        """Send `message`, or one made of `body` (`send(observed=...)`)."""
        message = message or agent_pb2.AgentMessage(**body)  # type: ignore[arg-type]
        if message.WhichOneof("body") == "observed":
            self._last_observed = message.observed
        self._outbox.put(message)

    def report(self, processes: Sequence[types_pb2.ProcessStatus], generation: int = 0) -> None:
        """An Observed of `processes` (for the latest Assignment's generation by default)."""
        generation = generation or (self.assignments[-1].generation if self.assignments else 0)
        self.send(observed=agent_pb2.Observed(generation=generation, processes=processes))

    def events(self, events: Sequence[types_pb2.Event]) -> None:
        self.send(events=agent_pb2.EventBatch(events=events))

    def backlog(self) -> int:
        """Messages queued and not yet taken by gRPC."""
        return self._outbox.qsize()

    # -- ending ----------------------------------------------------------------

    def close(self) -> None:
        """Half-close the stream, as an agent that exits does."""
        self._stopped.set()
        self._outbox.put(None)

    def cancel(self) -> None:
        """Cut the stream and wait for the reader to see it."""
        self._stopped.set()
        self._outbox.put(None)
        self._call.cancel()
        self._channel.close()
        self._reader.join(5)

    def __enter__(self) -> FakeAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def running_observed(
    wids: Mapping[str, Sequence[int]],
    generation: int = 0,
    pid_base: int = 1000,
    host_id: str = "",
    started_at: Mapping[tuple[str, int], float] | None = None,
) -> agent_pb2.Observed:
    """What an agent that runs `wids` (watcher -> worker ids) reports: each watcher active,
    each worker RUNNING with a made-up pid (pid_base + 100 * the watcher's rank + wid)."""
    out = agent_pb2.Observed(generation=generation)
    for rank, (name, ids) in enumerate(sorted(wids.items())):
        out.watchers.append(
            types_pb2.WatcherObserved(name=name, phase=types_pb2.WATCHER_PHASE_ACTIVE)
        )
        for wid in ids:
            out.processes.append(
                types_pb2.ProcessStatus(
                    watcher=name, wid=wid, pid=pid_base + rank * 100 + wid, state=RUNNING,
                    started_at=(started_at or {}).get((name, wid), 0.0), host_id=host_id,
                )
            )  # fmt: skip
    return out


def observed(*wids: int, watcher: str = "web", generation: int = 0) -> agent_pb2.Observed:
    """`running_observed` of one watcher."""
    return running_observed({watcher: wids}, generation)


def wids_of(message: agent_pb2.ControllerMessage, watcher: str = "web") -> list[int]:
    """The worker ids of `watcher` in an Assignment: none when it is not named there
    (a host is sent only the watchers it has workers of)."""
    for assigned in message.assignment.watchers:
        if assigned.spec.name == watcher:
            assert assigned.wids, f"{watcher} is in the assignment without worker ids"
            return list(assigned.wids)
    return []
