"""A highly available Stack for tests: real etcd, several controllers, one agent.

Controllers run as `stack-controller --store etcd://...` subprocesses on
127.0.0.1 with short leases, on plaintext TCP ports (`--insecure`: followers
redirect agents and stackctl to the leader's TCP address, which is what these
tests exercise); the agent is given every controller's address.
Tests kill, pause and resume controllers and etcd members like an operator's
worst day, and read state through whichever controller leads.
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from tests.integration.cluster import (
    PYTHON,
    ROOT,
    Daemon,
    Result,
    free_port,
    kill_descendants,
    run_stackctl,
    wait_for,
)
from tests.integration.etcd_cluster import EtcdCluster, etcd_cluster

LEASE_TTL = 2.0
AGENT_TIMEOUT = 3.0


@dataclass
class HaCluster:
    """`controllers` controllers on one etcd cluster, and agent h1 knowing them all."""

    root: Path
    etcd: EtcdCluster
    controllers: int = 2
    lease_ttl: float = LEASE_TTL
    tag: str = field(default_factory=lambda: f"stacktest-{uuid.uuid4().hex[:12]}")
    ports: list[int] = field(init=False)
    daemons: list[Daemon] = field(init=False)
    agent: Daemon = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(self.controllers)]
        self.daemons = [self._controller(index) for index in range(self.controllers)]
        self.agent = Daemon(
            [PYTHON, "-m", "stack.agent.main", "--controller", ",".join(self.addresses),
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
            PYTHON, "-m", "stack.controller.main", "--listen", self.addresses[index], "--insecure",
            "--store", self.store, "--lease-ttl", str(self.lease_ttl),
            "--agent-timeout", str(AGENT_TIMEOUT), "--reschedule-after", "30",
            "--data-dir", str(self.root / f"c{index}"),
        ]  # fmt: skip
        return Daemon(argv, self.root / f"c{index}.log")

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    # -- life cycle -------------------------------------------------------

    def start(self) -> HaCluster:
        for daemon in self.daemons:
            daemon.start()
        self.wait_leader()
        self.agent.start()
        wait_for(lambda: self.agent_state() == "ready", 20, "the agent to connect to the leader")
        return self

    def close(self) -> None:
        for daemon in [self.agent, *self.daemons]:
            with contextlib.suppress(Exception):
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.proc.send_signal(signal.SIGCONT)
                daemon.stop(timeout=15)
        kill_descendants()

    def logs(self) -> str:
        parts = [f"--- {d.log.name}\n{d.output()[-3000:]}" for d in [*self.daemons, self.agent]]
        return "\n".join(parts)

    # -- who leads --------------------------------------------------------

    def controllers_reply(self, address: str) -> admin_pb2.ControllersReply | None:
        try:
            with grpc.insecure_channel(address) as channel:
                stub = admin_pb2_grpc.AdminServiceStub(channel)
                reply: admin_pb2.ControllersReply = stub.Controllers(
                    admin_pb2.ControllersRequest(), timeout=2
                )
                return reply
        except grpc.RpcError:
            return None

    def leader(self) -> str:
        """The leader's address as a live controller that leads says it, or ""."""
        for index, address in enumerate(self.addresses):
            if not self.daemons[index].alive():
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
            self.status(address)
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
        return self.daemons[self.addresses.index(address)]

    def wait_following(self, leader: str, timeout: float = 30.0) -> None:
        """Every other live controller has reached `leader` in its current term (only then
        can it tell, by refused connections, that the leader died). The term's token is
        in the line: the same address may have led before, and logs outlive restarts."""
        reply = self.controllers_reply(leader)
        assert reply is not None and reply.leader_address == leader, f"{leader} does not lead"
        line = f"following the leader at {leader} (token {reply.fencing_token})"
        for address, daemon in zip(self.addresses, self.daemons, strict=True):
            if address != leader and daemon.alive():
                wait_for(
                    lambda d=daemon: line in d.output(),
                    timeout,
                    f"{address} to reach the leader {leader}",
                )

    # -- reading state ----------------------------------------------------

    def status(self, address: str = "") -> admin_pb2.StatusReply:
        address = address or self.leader() or self.addresses[0]  # (a follower refuses)
        with grpc.insecure_channel(address) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            reply: admin_pb2.StatusReply = stub.Status(admin_pb2.StatusRequest(), timeout=3)
            return reply

    def running_pids(self, watcher: str) -> dict[int, int]:
        """wid -> pid of the RUNNING workers, as the leader says; {} while none answers
        as leader (it is polled through elections)."""
        try:
            watchers = self.status().watchers
        except grpc.RpcError:
            return {}
        for w in watchers:
            if w.name == watcher:
                return {
                    p.wid: p.pid for p in w.processes if p.state == types_pb2.PROCESS_STATE_RUNNING
                }
        return {}

    def desired(self, watcher: str) -> int:
        return next(w.numprocesses for w in self.status().watchers if w.name == watcher)

    def agent_state(self) -> str:
        leader = self.leader()
        if not leader:
            return ""
        try:
            with grpc.insecure_channel(leader) as channel:
                stub = admin_pb2_grpc.AdminServiceStub(channel)
                reply = stub.Agents(admin_pb2.AgentsRequest(), timeout=2)
        except grpc.RpcError:
            return ""
        return next((a.state for a in reply.agents if a.host_id == "h1"), "")

    # -- acting like a user -----------------------------------------------

    def stackctl(self, *args: str, timeout: float = 60.0, check: bool = False) -> Result:
        controllers = ",".join(self.addresses)
        argv = [PYTHON, "-m", "stack.cli.main", "--controller", controllers, *args]
        return run_stackctl(argv, ROOT, timeout, check)

    def apply(self, text: str) -> Result:
        path = self.root / "stack.toml"
        path.write_text(text)
        return self.stackctl("apply", "--yes", str(path), check=True)


@contextlib.contextmanager
def ha_cluster(
    root: Path, members: int = 1, controllers: int = 2, lease_ttl: float = LEASE_TTL
) -> Iterator[HaCluster]:
    """A started HA cluster; everything stopped (and etcd removed) on exit."""
    with etcd_cluster(members) as etcd:
        cluster = HaCluster(root, etcd, controllers, lease_ttl)
        try:
            yield cluster.start()
        finally:
            cluster.close()
