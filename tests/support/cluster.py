"""A real single-host Stack for tests: a controller and an agent as subprocesses.

Everything talks real gRPC over the controller's local socket (in its temporary
data dir), as stackctl and an agent on the controller's host do. Tests drive it
through `stackctl` (as a subprocess, the way a user does) and read state through
the AdminService for fast polling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests.support.harness import (
    AdminStub,
    Harness,
    admin_stub,
    answers,
    channel,
    new_tag,
    stackctl_to,
)
from tests.support.ports import listening_ports
from tests.support.processes import AGENT, CONTROLLER, Daemon
from tests.support.wait import wait_for


@dataclass
class Cluster(Harness):
    """A controller and one agent (host id `h1`) under `root`."""

    root: Path
    tag: str = field(default_factory=new_tag)
    """Put in workers' command lines (see watcher_toml) so a test finds exactly its own."""
    controller_options: tuple[str, ...] = ()
    agent_options: tuple[str, ...] = ("--stats-interval", "0.5", "--heartbeat-interval", "0.5")
    controller: Daemon = field(init=False)
    agent: Daemon = field(init=False)
    more_agents: dict[str, Daemon] = field(default_factory=dict)
    """Agents started by `add_agent`, by host id."""
    _channel: grpc.Channel | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.controller = Daemon(
            [*CONTROLLER, "--data-dir", str(self.root / "controller"), *self.controller_options],
            self.root / "controller.log",
        )
        self.agent = self._agent("h1", self.root / "agent", self.root / "agent.log")

    def _agent(self, host_id: str, data_dir: Path, log: Path, *options: str) -> Daemon:
        argv = [*AGENT, "--controller", self.address, "--host-id", host_id,
                "--data-dir", str(data_dir), *self.agent_options, *options]  # fmt: skip
        return Daemon(argv, log)

    @property
    def address(self) -> str:
        """The controller's local socket (the default one of its data dir)."""
        return f"unix:{self.root / 'controller' / 'controller.sock'}"

    def stackctl_argv(self) -> list[str]:
        return stackctl_to(self.address)

    def cwd(self) -> Path:
        return self.root

    def daemons(self) -> dict[str, Daemon]:
        return {**self.more_agents, "h1": self.agent, "controller": self.controller}

    # -- life cycle -------------------------------------------------------

    def start(self) -> Cluster:
        self.start_controller()
        self.start_agent()
        return self

    def start_controller(self) -> None:
        self.controller.start()
        wait_for(lambda: answers(self.controller, self.admin()), 30, "the controller to answer")

    def start_agent(self, wait_connected: bool = True) -> None:
        self.agent.start()
        if wait_connected:
            wait_for(lambda: self.agent_state() == "ready", 30, "the agent to connect")

    def add_agent(self, host_id: str, *options: str) -> Daemon:
        """Start one more agent, `host_id` (data dir ROOT/HOST_ID), and wait until it is ready."""
        agent = self._agent(
            host_id, self.root / host_id, self.root / f"{host_id}.log", *options
        ).start()
        self.more_agents[host_id] = agent
        wait_for(lambda: self.agent_state(host_id) == "ready", 30, f"agent {host_id} to connect")
        return agent

    def release(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # -- reading state ----------------------------------------------------

    def admin(self) -> AdminStub:
        if self._channel is None:
            self._channel = channel(self.address)
        return admin_stub(self._channel)

    def socket_port(self, timeout: float = 30.0) -> int:
        """The port of the one TCP socket agent h1 listens on (a stack socket with port 0
        gets its port from the kernel when the agent binds it)."""

        def bound() -> int:
            ports = listening_ports(self.agent.pid)
            assert len(ports) <= 1, f"agent h1 listens on several TCP ports: {ports}"
            return ports.pop() if ports else 0

        return wait_for(bound, timeout, "agent h1 to bind its TCP socket")


@contextlib.contextmanager
def running_cluster(root: Path, **kwargs: Any) -> Iterator[Cluster]:
    cluster = Cluster(root, **kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.close()
