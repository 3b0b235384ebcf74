"""A real multi-host Stack for tests: a controller and N agents, each in its own namespace.

The controller listens on 198.18.0.1:7450 in namespace "controller"; agent hN
runs in namespace "hN" at 198.18.0.(10+N) with host id hN. Tests act like an
operator on the controller's host (`stackctl` run there) and read state fast
through the AdminService, reached by a relay into the controller's namespace.
`spread_webapp` sets up the usual subject: webapp workers serving their pid on
a shared socket, port 8080, on every host.

The ports are fixed, unlike everywhere else in the tests: they are bound only on the
fleet's own network namespaces, which no other process on the machine can enter, so
nothing else can hold them. Tests reach them through the namespaces only.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from stack.v1 import types_pb2
from tests.support.harness import RUNNING, AdminStub, Harness, admin_stub, answers, stackctl_to
from tests.support.netns import Network, Node, Relay, connect
from tests.support.processes import AGENT, CONTROLLER, Daemon, reap
from tests.support.wait import wait_for
from tests.support.workers import read_pid, watcher_toml

PORT = 7450
WEB_PORT = 8080
CONTROLLER_ADDRESS = "198.18.0.1"
T = TypeVar("T")


def host_address(index: int) -> str:
    """The address of host h{index} (1-based)."""
    return f"198.18.0.{10 + index}"


@dataclass
class Fleet(Harness):
    """The controller and agents h1..hN on a test network under `root`."""

    root: Path
    hosts: int = 3
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """host id -> its agent's labels."""
    agent_timeout: float = 1.0
    reschedule_after: float = 2.0
    heartbeat_interval: float = 0.3
    tag: str = ""
    """Put in workers' command lines (see watcher_toml) so a test finds exactly its own."""
    network: Network = field(init=False)
    controller_node: Node = field(init=False)
    controller: Daemon = field(init=False)
    agents: dict[str, Daemon] = field(init=False, default_factory=dict)
    _relay: Relay | None = field(init=False, default=None)
    _channel: grpc.Channel | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.network = Network()
        self.tag = self.tag or f"stackfleet-{self.network.run_id}"

    @property
    def controller_address(self) -> str:
        return f"{CONTROLLER_ADDRESS}:{PORT}"

    @property
    def host_ids(self) -> list[str]:
        return [f"h{i}" for i in range(1, self.hosts + 1)]

    def node(self, host_id: str) -> Node:
        return self.network.nodes[host_id]

    # -- life cycle -------------------------------------------------------

    def start(self) -> Fleet:
        self.controller_node = self.network.add("controller", CONTROLLER_ADDRESS)
        for i, host_id in enumerate(self.host_ids, 1):
            self.network.add(host_id, host_address(i))
        self.controller = Daemon(
            self.controller_node.argv(
                [*CONTROLLER, "--listen", self.controller_address,
                 "--data-dir", str(self.root / "controller"),
                 "--agent-timeout", str(self.agent_timeout),
                 "--reschedule-after", str(self.reschedule_after), "--insecure"]
            ),
            self.root / "controller.log",
        )  # fmt: skip
        self.controller.start()
        self._relay = Relay(self.controller_node.netns, CONTROLLER_ADDRESS, PORT)
        wait_for(lambda: answers(self.controller, self.admin()), 30, "the controller to answer")
        for host_id in self.host_ids:
            self.agents[host_id] = self._agent(host_id)
            self.agents[host_id].start()
        wait_for(lambda: self.ready_hosts() == set(self.host_ids), 30, "every agent to connect")
        return self

    def _agent(self, host_id: str) -> Daemon:
        labels = [f"--label={k}={v}" for k, v in self.labels.get(host_id, {}).items()]
        return Daemon(
            self.node(host_id).argv(
                [*AGENT, "--controller", self.controller_address,
                 "--host-id", host_id, "--data-dir", str(self.root / host_id),
                 "--heartbeat-interval", str(self.heartbeat_interval),
                 "--stats-interval", "0.5", *labels]
            ),
            self.root / f"{host_id}.log",
        )  # fmt: skip

    def kill_agent(self, host_id: str) -> None:
        """SIGKILL the agent of `host_id` (its workers are left as they are)."""
        self.agents[host_id].kill9()

    def restart_agent(self, host_id: str) -> None:
        """Start `host_id`'s agent again, same data dir, and wait until it is ready."""
        self.agents[host_id] = self._agent(host_id)
        self.agents[host_id].start()
        wait_for(lambda: host_id in self.ready_hosts(), 30, f"agent {host_id} to reconnect")

    def partition(self, host_id: str) -> None:
        """Unplug the host: `ip link set eth0 down` inside its namespace."""
        self.node(host_id).link(up=False)

    def heal(self, host_id: str) -> None:
        self.node(host_id).link(up=True)

    def daemons(self) -> dict[str, Daemon]:
        controller = getattr(self, "controller", None)
        return {**self.agents, **({"controller": controller} if controller is not None else {})}

    def release(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def close(self) -> None:
        """Stop everything this fleet started and delete its namespaces, whatever state it is
        in: every process in them is killed (the agents' workers with them)."""
        with contextlib.suppress(ValueError):
            Harness._open.remove(self)
        self.release()
        for daemon in self.daemons().values():
            if daemon.proc is not None:
                with contextlib.suppress(OSError):
                    daemon.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    daemon.proc.wait(10)
        self.network.close()
        reap()

    # -- reading state ----------------------------------------------------

    def admin(self) -> AdminStub:
        if self._channel is None:
            assert self._relay is not None
            self._channel = grpc.insecure_channel(self._relay.target)
        return admin_stub(self._channel)

    def processes(self, watcher: str) -> list[types_pb2.ProcessStatus]:
        return [p for w in self.status(watcher).watchers for p in w.processes]

    def ready_hosts(self) -> set[str]:
        return {host for host, state in self.agent_states().items() if state == "ready"}

    def describe(self, watcher: str) -> str:
        """Agents' states and `watcher`'s processes in one line each, for failure messages."""
        lines = [f"agents: {self.agent_states()}"]
        for p in self.processes(watcher):
            state = types_pb2.ProcessState.Name(p.state).removeprefix("PROCESS_STATE_").lower()
            lines.append(f"{watcher}[{p.wid}] on {p.host_id}: pid {p.pid} {state} {p.message}")
        for host_id in self.host_ids:
            lines.append(f"{host_id} namespace: agent + {sorted(self.workers_in(host_id))}")
        return "\n".join(lines)

    def wait(self, check: Callable[[], T | None], timeout: float, what: str, watcher: str) -> T:
        """wait_for, failing with the fleet's state described."""
        try:
            found = wait_for(check, timeout, what)
            assert found is not None
            return found
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe(watcher)}") from None

    def running(self, watcher: str) -> dict[str, dict[int, int]]:
        """host -> wid -> pid of the RUNNING processes of `watcher`, as the controller says."""
        by_host: dict[str, dict[int, int]] = {}
        for p in self.processes(watcher):
            if p.state == RUNNING:
                by_host.setdefault(p.host_id, {})[p.wid] = p.pid
        return by_host

    def workers_in(self, host_id: str) -> set[int]:
        """The pids inside `host_id`'s namespace other than its agent's."""
        agent = self.agents[host_id]
        return self.node(host_id).pids() - ({agent.pid} if agent.alive() else set())

    def fetch(self, host_id: str, port: int) -> int:
        """Connect from the controller's host to `host_id`:port and read the pid that answers."""
        address = self.node(host_id).address
        with connect(self.controller_node.netns, address, port, timeout=10) as conn:
            return read_pid(conn)

    # -- acting like a user -----------------------------------------------

    def stackctl_argv(self) -> list[str]:
        """stackctl on the controller's host."""
        return self.controller_node.argv(stackctl_to(self.controller_address))

    def status_json(self) -> dict[str, object]:
        document: dict[str, object] = json.loads(
            self.stackctl("-o", "json", "status", check=True).out
        )
        return document


def web_stack(tag: str, numprocesses: int) -> str:
    """webapp: workers answering their pid on a socket bound on every address, port 8080."""
    head = f'[sockets.web]\nhost = "0.0.0.0"\nport = {WEB_PORT}\n\n'
    return head + watcher_toml(
        "webapp", tag, "--serve-fd", "$(circus.sockets.web)",
        numprocesses=numprocesses, sockets=["web"], graceful_timeout=2,
    )  # fmt: skip


def spread_webapp(fleet: Fleet, count: int) -> dict[str, dict[int, int]]:
    """Apply webapp with one worker, `stackctl scale webapp COUNT`, wait: host -> wid -> pid."""
    fleet.apply(web_stack(fleet.tag, 1))
    wait_for(lambda: fleet.running("webapp"), 15, "webapp's first worker to run")
    fleet.stackctl("scale", "webapp", str(count), check=True)

    def all_running() -> dict[str, dict[int, int]] | None:
        procs = fleet.processes("webapp")
        running = fleet.running("webapp")
        total = sum(len(wids) for wids in running.values())
        return running if total == count and len(procs) == count else None

    return fleet.wait(all_running, 20, f"{count} webapp workers to run", "webapp")
