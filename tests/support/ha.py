"""A highly available Stack for tests: real etcd, several controllers, one agent.

Controllers run as `stack-controller --store etcd://...` subprocesses on
127.0.0.1 with short leases, on plaintext TCP ports (`--insecure`: followers
redirect agents and stackctl to the leader's TCP address, which is what these
tests exercise); the agent is given every controller's address, so those ports
are reserved (tests/support/ports.py) and a controller restarts on its own.
Tests kill, pause and resume controllers and etcd members like an operator's
worst day, and read state through whichever controller leads.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stack.v1 import admin_pb2
from tests.support.etcd import EtcdCluster, etcd_cluster
from tests.support.harness import RUNNING, AdminStub, Harness, admin_stub, new_tag, stackctl_to
from tests.support.ports import ReservedPort, reserve_port
from tests.support.processes import AGENT, CONTROLLER, Daemon
from tests.support.wait import wait_for

LEASE_TTL = 2.0
AGENT_TIMEOUT = 3.0


@dataclass
class HaCluster(Harness):
    """`controllers` controllers on one etcd cluster, and agent h1 knowing them all."""

    root: Path
    etcd: EtcdCluster
    controllers: int = 2
    lease_ttl: float = LEASE_TTL
    agent_timeout: float = AGENT_TIMEOUT
    tag: str = field(default_factory=new_tag)
    reserved: list[ReservedPort] = field(init=False)
    controller_daemons: list[Daemon] = field(init=False)
    agent: Daemon = field(init=False)
    _channel: grpc.Channel | None = None
    _address: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reserved = [reserve_port() for _ in range(self.controllers)]
        self.controller_daemons = [self._controller(index) for index in range(self.controllers)]
        self.agent = Daemon(
            [*AGENT, "--controller", ",".join(self.addresses),
             "--host-id", "h1", "--data-dir", str(self.root / "agent"),
             "--stats-interval", "0.5", "--heartbeat-interval", "0.5"],
            self.root / "agent.log",
        )  # fmt: skip

    @property
    def store(self) -> str:
        # Not the tag itself: worker_processes(tag) must find the workers, not controllers.
        prefix = self.tag.replace("stacktest-", "ha-")
        return "etcd://" + ",".join(self.etcd.endpoints) + "/" + prefix

    def _controller(self, index: int) -> Daemon:
        argv = [
            *CONTROLLER, "--listen", self.addresses[index], "--insecure",
            "--store", self.store, "--lease-ttl", str(self.lease_ttl),
            "--agent-timeout", str(self.agent_timeout), "--reschedule-after", "30",
            "--data-dir", str(self.root / f"c{index}"),
        ]  # fmt: skip
        if self.etcd.tls is not None:
            tls = self.etcd.tls
            argv += ["--etcd-ca", str(tls.ca), "--etcd-cert", str(tls.cert),
                     "--etcd-key", str(tls.key)]  # fmt: skip
        return Daemon(argv, self.root / f"c{index}.log")

    @property
    def ports(self) -> list[int]:
        return [reserved.port for reserved in self.reserved]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def stackctl_argv(self) -> list[str]:
        return stackctl_to(",".join(self.addresses))

    def daemons(self) -> dict[str, Daemon]:
        controllers = {f"c{i}": daemon for i, daemon in enumerate(self.controller_daemons)}
        return {"h1": self.agent, **controllers}

    def release(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel, self._address = None, ""
        for reserved in self.reserved:
            reserved.close()

    # -- life cycle -------------------------------------------------------

    def start(self) -> HaCluster:
        for daemon in self.controller_daemons:
            daemon.start()
        self.wait_leader()
        self.agent.start()
        wait_for(lambda: self.agent_state() == "ready", 30, "the agent to connect to the leader")
        return self

    # -- who leads --------------------------------------------------------

    def controllers_reply(self, address: str) -> admin_pb2.ControllersReply | None:
        try:
            with grpc.insecure_channel(address) as channel:
                reply: admin_pb2.ControllersReply = admin_stub(channel).Controllers(
                    admin_pb2.ControllersRequest(), timeout=2
                )
                return reply
        except grpc.RpcError:
            return None

    def leader(self) -> str:
        """The leader's address as a live controller that leads says it, or ""."""
        for index, address in enumerate(self.addresses):
            if not self.controller_daemons[index].alive():
                continue
            reply = self.controllers_reply(address)
            if reply is not None and reply.leader_address == address:
                info = [c for c in reply.controllers if c.address == address]
                if info and info[0].leader and self._serves(address):
                    return address
        return ""

    def _serves(self, address: str) -> bool:
        """The controller at `address` answers Status as leader (not a follower's refusal)."""
        try:
            with grpc.insecure_channel(address) as channel:
                admin_stub(channel).Status(admin_pb2.StatusRequest(), timeout=3)
        except grpc.RpcError:
            return False
        return True

    def wait_leader(self, timeout: float = 20.0, other_than: str = "") -> str:
        def found() -> str:
            leader = self.leader()
            return leader if leader and leader != other_than else ""

        try:
            return wait_for(found, timeout, "a controller to lead", interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def daemon_at(self, address: str) -> Daemon:
        return self.controller_daemons[self.addresses.index(address)]

    def wait_following(self, leader: str, timeout: float = 30.0) -> None:
        """Every other live controller has reached `leader` in its current term (only then
        can it tell, by refused connections, that the leader died). The term's token is
        in the line: the same address may have led before, and logs outlive restarts."""
        reply = self.controllers_reply(leader)
        assert reply is not None and reply.leader_address == leader, f"{leader} does not lead"
        line = f"following the leader at {leader} (token {reply.fencing_token})"
        for address, daemon in zip(self.addresses, self.controller_daemons, strict=True):
            if address != leader and daemon.alive():
                wait_for(
                    functools.partial(_says, daemon, line),
                    timeout,
                    f"{address} to reach the leader {leader}",
                )

    # -- reading state ----------------------------------------------------

    def admin(self) -> AdminStub:
        """A stub on the leader (on the first controller while none leads: it refuses)."""
        address = self.leader() or self.addresses[0]
        if address != self._address:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._address = grpc.insecure_channel(address), address
        return admin_stub(self._channel)

    def running_pids(self, watcher: str) -> dict[int, int]:
        """wid -> pid of the RUNNING workers, as the leader says; {} while none answers
        as leader (it is polled through elections)."""
        try:
            watchers = self.status().watchers
        except grpc.RpcError:
            return {}
        for w in watchers:
            if w.name == watcher:
                return {p.wid: p.pid for p in w.processes if p.state == RUNNING}
        return {}

    def desired(self, watcher: str) -> int:
        return next(w.numprocesses for w in self.status().watchers if w.name == watcher)


def _says(daemon: Daemon, line: str) -> bool:
    return line in daemon.output()


@contextlib.contextmanager
def ha_cluster(
    root: Path,
    members: int = 1,
    controllers: int = 2,
    lease_ttl: float = LEASE_TTL,
    agent_timeout: float = AGENT_TIMEOUT,
    etcd_tls: bool = False,
) -> Iterator[HaCluster]:
    """A started HA cluster; everything stopped (and etcd removed) on exit. With
    `etcd_tls` the controllers reach etcd over mutual TLS (as deploy/ha does)."""
    with etcd_cluster(members, etcd_tls) as etcd:
        cluster = HaCluster(root, etcd, controllers, lease_ttl, agent_timeout)
        try:
            yield cluster.start()
        finally:
            cluster.close()
