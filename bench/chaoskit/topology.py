"""The fleet the chaos harness breaks: every daemon in a network namespace of its own.

Ten namespaces on one bridge (tests/support/netns.py), addresses from 198.18.0.0/15:

    client  198.18.0.2         the operator's stackctl and the client load
    h1..h3  198.18.0.11-13     one stack-agent each, its data dir on a small tmpfs
    c1..c3  198.18.0.21-23     stack-controller, each `--store etcd://e1,e2,e3`
    e1..e3  198.18.0.31-33     etcd members

Everything speaks mutual TLS with the certificates of one `stackctl certs` dir: agents
and stackctl to the controllers, the controllers to etcd, etcd's members to each other
(the controller certificate names every controller and member address, as deploy/ha does).
Ports are fixed: they are bound only inside the run's own namespaces.

The harness acts on this fleet from outside: it signals daemons, unplugs a node's cable,
fills a disk, and reads what the controllers say through a relay into each controller's
namespace (a unix socket here, so that a partition never cuts the harness's own view).
What the operator does (stackctl) goes through the client's namespace and suffers the
partitions like any operator would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from stack.security.certs import CertDir, Role, init_dir, issue_into
from stack.v1 import admin_pb2
from tests.support.etcd import EtcdProcess, member_argv
from tests.support.harness import AdminStub, admin_stub
from tests.support.netns import Network, Node, Relay
from tests.support.processes import AGENT, CONTROLLER, STACKCTL, Daemon, stack_env
from tests.support.processes import Result as Result

CONTROLLER_PORT = 7450
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
WEB_PORT = 8080
CLIENT_ADDRESS = "198.18.0.2"
HOSTS = ("h1", "h2", "h3")
CONTROLLERS = ("c1", "c2", "c3")
MEMBERS = ("e1", "e2", "e3")
DATA_DIR_SIZE = "16m"
"""Each agent's data dir is a tmpfs of this size: small enough to fill in a moment."""
PR_SET_CHILD_SUBREAPER = 36


def address_of(name: str) -> str:
    """The address of node `name` ("client", "h2", "c1", "e3")."""
    if name == "client":
        return CLIENT_ADDRESS
    base = {"h": 10, "c": 20, "e": 30}[name[0]]
    return f"198.18.0.{base + int(name[1:])}"


@dataclass(frozen=True)
class Timing:
    """The daemons' timing options: short enough for faults to play out in seconds, and
    what tells a short outage (a host keeps its workers) from a long one (they move)."""

    agent_timeout: float = 3.0
    """Seconds of silence before an agent is down (--agent-timeout)."""
    reschedule_after: float = 12.0
    """Seconds down before its workers are placed elsewhere (--reschedule-after)."""
    lease_ttl: float = 3.0
    """The leader's etcd lease (--lease-ttl)."""
    heartbeat: float = 0.5
    """The agents' --heartbeat-interval."""


class Children:
    """Every process the harness starts, and a reaper for the orphans that come to it.

    The harness is a subreaper: the workers of a killed agent become its children (as
    they would become init's in production), and whatever of them exits must be reaped,
    or it stays a zombie that the checks would count. Processes the harness started
    itself are left to their Popen; the lock keeps the reaper from reaping a process in
    the instant between its fork and its registration.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.own: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self._thread = threading.Thread(target=self._reap, name="reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        with self.lock:
            proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
            self.own.add(proc.pid)
        return proc

    def started(self, start: Callable[[], int]) -> int:
        """Run `start` (which forks one process and returns its pid) under the lock."""
        with self.lock:
            pid = start()
            self.own.add(pid)
            return pid

    def _reap(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            with self.lock:
                for child in me.children():
                    if child.pid in self.own:
                        continue
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(child.pid, os.WNOHANG)


class NetnsEtcd(EtcdProcess):
    """An etcd member inside its node's namespace, clients and peers on mutual TLS."""

    def __init__(self, name: str, node: Node, root: Path, tls: Path) -> None:
        super().__init__(name, root / f"{name}.etcd", root / f"{name}.log")
        self.node = node
        self.tls = tls

    @property
    def client_url(self) -> str:
        return f"https://{self.node.address}:{ETCD_CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.node.address}:{ETCD_PEER_PORT}"

    def argv(self, initial_cluster: str) -> list[str]:
        ca, cert, key = (str(p) for p in controller_files(self.tls))
        command = member_argv(
            self.name, self.data_dir, self.client_url, self.peer_url, initial_cluster
        )
        tls = [
            "--trusted-ca-file", ca, "--cert-file", cert, "--key-file", key,
            "--client-cert-auth", "--peer-trusted-ca-file", ca, "--peer-cert-file", cert,
            "--peer-key-file", key, "--peer-client-cert-auth",
        ]  # fmt: skip
        return self.node.argv([*command, *tls])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def controller_files(tls: Path) -> tuple[Path, Path, Path]:
    """(CA, controller certificate, its key) of a `stackctl certs` dir."""
    cert, key = CertDir(tls).pair(Role.controller, "")
    return tls / "ca.crt", cert, key


@dataclass
class Fleet:
    """The ten namespaces, the certificates and every daemon of one chaos run."""

    root: Path
    tag: str
    timing: Timing = field(default_factory=Timing)
    children: Children = field(default_factory=Children)
    network: Network = field(init=False)
    nodes: dict[str, Node] = field(init=False, default_factory=dict)
    etcd: dict[str, NetnsEtcd] = field(init=False, default_factory=dict)
    controllers: dict[str, Daemon] = field(init=False, default_factory=dict)
    agents: dict[str, Daemon] = field(init=False, default_factory=dict)
    paused: set[str] = field(init=False, default_factory=set)
    """Daemons the harness has SIGSTOPped and not continued yet."""
    cut: set[str] = field(init=False, default_factory=set)
    """Nodes whose cable the harness has unplugged."""
    mounted: list[Path] = field(init=False, default_factory=list)
    last_leader: str = field(init=False, default="")
    """The controller `leader` last found leading."""
    _relays: dict[str, Relay] = field(init=False, default_factory=dict)
    _channels: dict[str, grpc.Channel] = field(init=False, default_factory=dict)

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def store_url(self) -> str:
        members = ",".join(f"{address_of(m)}:{ETCD_CLIENT_PORT}" for m in MEMBERS)
        return f"etcd://{members}/chaos"

    @property
    def controller_addresses(self) -> list[str]:
        return [f"{address_of(c)}:{CONTROLLER_PORT}" for c in CONTROLLERS]

    # -- building it ------------------------------------------------------

    def start(self) -> Fleet:
        self.root.mkdir(parents=True, exist_ok=True)
        self.children.start()
        self.network = Network()
        for name in ("client", *HOSTS, *CONTROLLERS, *MEMBERS):
            self.nodes[name] = self.network.add(name, address_of(name))
        self._certificates()
        initial = ",".join(f"{m}=https://{address_of(m)}:{ETCD_PEER_PORT}" for m in MEMBERS)
        self._initial_cluster = initial
        for name in MEMBERS:
            self.etcd[name] = NetnsEtcd(name, self.nodes[name], self.root, self.tls)
            self.start_daemon(name)
        for name in CONTROLLERS:
            self.controllers[name] = Daemon(self._controller_argv(name), self.root / f"{name}.log")
            self.start_daemon(name)
        self.wait(lambda: bool(self.leader()), 60, "a controller to lead")
        for name in HOSTS:
            data = self.root / name
            data.mkdir(mode=0o700)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DATA_DIR_SIZE},mode=0700",
                            "tmpfs", str(data)], check=True)  # fmt: skip
            self.mounted.append(data)
            self.agents[name] = Daemon(self._agent_argv(name), self.root / f"{name}.log")
            self.start_daemon(name)
        self.wait(lambda: self.agent_states() == dict.fromkeys(HOSTS, "ready"), 60,
                  "every agent to connect")  # fmt: skip
        return self

    def _certificates(self) -> None:
        names = [address_of(n) for n in (*CONTROLLERS, *MEMBERS)]
        init_dir(self.tls, names)
        for host in HOSTS:
            issue_into(self.tls, Role.agent, host)
        issue_into(self.tls, Role.admin, "admin")

    def _controller_argv(self, name: str) -> list[str]:
        address = f"{address_of(name)}:{CONTROLLER_PORT}"
        ca, cert, key = (str(p) for p in controller_files(self.tls))
        t = self.timing
        return self.nodes[name].argv([
            *CONTROLLER, "--listen", address, "--advertise", address,
            "--tls-dir", str(self.tls), "--data-dir", str(self.root / name),
            "--store", self.store_url, "--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key,
            "--lease-ttl", f"{t.lease_ttl:g}", "--agent-timeout", f"{t.agent_timeout:g}",
            "--reschedule-after", f"{t.reschedule_after:g}",
        ])  # fmt: skip

    def _agent_argv(self, name: str) -> list[str]:
        return self.nodes[name].argv([
            *AGENT, "--controller", ",".join(self.controller_addresses),
            "--host-id", name, "--data-dir", str(self.root / name), "--tls-dir", str(self.tls),
            "--heartbeat-interval", f"{self.timing.heartbeat:g}",
        ])  # fmt: skip

    def close(self) -> None:
        """Stop everything, whatever state it is in; unmount the data dirs."""
        for name in list(self.paused):
            with contextlib.suppress(Exception):
                self.cont(name)
        for channel in self._channels.values():
            channel.close()
        for relay in self._relays.values():
            relay.close()
        for daemon in [*self.agents.values(), *self.controllers.values()]:
            with contextlib.suppress(Exception):
                daemon.stop(timeout=10)
        for member in self.etcd.values():
            with contextlib.suppress(Exception):
                member.kill9()
        with contextlib.suppress(AttributeError):
            self.network.close()
        for path in self.mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        self.children.stop()

    # -- daemons ----------------------------------------------------------

    def names(self) -> list[str]:
        """Every daemon by name: agents, controllers, etcd members."""
        return [*HOSTS, *CONTROLLERS, *MEMBERS]

    def pid(self, name: str) -> int | None:
        """The pid of daemon `name` while it runs (paused or not)."""
        proc = self._proc(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def _proc(self, name: str) -> subprocess.Popen[bytes] | None:
        if name in self.etcd:
            return self.etcd[name].proc
        daemon = self.agents.get(name) or self.controllers.get(name)
        return daemon.proc if daemon is not None else None

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def start_daemon(self, name: str) -> None:
        """Start daemon `name` (again), with the same command line and data dir."""
        if name in self.etcd:
            member = self.etcd[name]

            def start_member() -> int:
                member.start(self._initial_cluster)
                return member.pid

            self.children.started(start_member)
            return
        daemon = self.agents.get(name) or self.controllers[name]
        self.children.started(lambda: daemon.start().pid)

    def kill9(self, name: str) -> None:
        proc = self._proc(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self.paused.discard(name)

    def stop(self, name: str) -> None:
        """SIGSTOP: the daemon hangs with every connection open."""
        pid = self.pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(name)

    def cont(self, name: str) -> None:
        pid = self.pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.paused.discard(name)

    def reload(self, host: str) -> None:
        """SIGHUP an agent: it re-executes itself in place."""
        pid = self.pid(host)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def exited(self) -> dict[str, int]:
        """Daemons that are not running: name -> exit code."""
        gone = {}
        for name in self.names():
            proc = self._proc(name)
            if proc is not None and proc.poll() is not None:
                gone[name] = proc.returncode
        return gone

    # -- the network and the disk ----------------------------------------

    def partition(self, node: str) -> None:
        self.nodes[node].link(up=False)
        self.cut.add(node)

    def heal(self, node: str) -> None:
        self.nodes[node].link(up=True)
        self.cut.discard(node)

    def fill_disk(self, host: str) -> int:
        """Fill `host`'s data dir until ENOSPC; returns the bytes written."""
        written = 0
        chunk = b"\0" * (1 << 20)
        fd = os.open(self.root / host / "chaos-filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    try:  # the last partial page
                        while os.write(fd, b"\0" * 4096):
                            written += 4096
                    except OSError:
                        pass
                    return written
        finally:
            os.close(fd)

    def free_disk(self, host: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / host / "chaos-filler").unlink()

    # -- the operator -----------------------------------------------------

    def stackctl(self, *args: str, timeout: float = 30.0) -> Result:
        """`stackctl ARGS` from the client's namespace, over mutual TLS to every controller."""
        argv = self.nodes["client"].argv([
            *STACKCTL, "--controller", ",".join(self.controller_addresses),
            "--tls-dir", str(self.tls), *args,
        ])  # fmt: skip
        proc = self.children.popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=stack_env(), cwd=self.root
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Result(-9, out.decode(errors="replace"), f"timed out after {timeout:g}s")
        return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    # -- the harness's own view -------------------------------------------

    def admin_of(self, controller: str) -> AdminStub:
        """An admin stub on controller `controller`, through a relay into its namespace."""
        if controller not in self._channels:
            node = self.nodes[controller]
            relay = Relay(node.netns, node.address, CONTROLLER_PORT)
            self._relays[controller] = relay
            ca, cert, key = (self.tls / "ca.crt", *CertDir(self.tls).pair(Role.admin, "admin"))
            creds = grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes(),
                                                 cert.read_bytes())  # fmt: skip
            # The relay's name is no name the certificate has; the controller's is.
            options = [("grpc.ssl_target_name_override", "localhost"),
                       ("grpc.max_reconnect_backoff_ms", 500),
                       ("grpc.initial_reconnect_backoff_ms", 100),
                       ("grpc.min_reconnect_backoff_ms", 100)]  # fmt: skip
            self._channels[controller] = grpc.secure_channel(relay.target, creds, options)
        return admin_stub(self._channels[controller])

    def leader(self) -> str:
        """The controller that leads, as it and its address agree; "" when none does."""
        for name in CONTROLLERS:
            if self.pid(name) is None or name in self.paused:
                continue
            address = f"{address_of(name)}:{CONTROLLER_PORT}"
            try:
                reply = self.admin_of(name).Controllers(admin_pb2.ControllersRequest(), timeout=2)
            except grpc.RpcError:
                continue
            if reply.leader_address == address:
                self.last_leader = name
                return name
        return ""

    def leader_admin(self) -> AdminStub | None:
        name = self.leader()
        return self.admin_of(name) if name else None

    def agent_states(self) -> dict[str, str]:
        """host -> "ready", "draining", "down", as the leader says; {} without a leader."""
        admin = self.leader_admin()
        if admin is None:
            return {}
        try:
            reply = admin.Agents(admin_pb2.AgentsRequest(), timeout=3)
        except grpc.RpcError:
            return {}
        return {a.host_id: a.state for a in reply.agents}

    def status(self) -> admin_pb2.StatusReply | None:
        admin = self.leader_admin()
        if admin is None:
            return None
        try:
            reply: admin_pb2.StatusReply = admin.Status(admin_pb2.StatusRequest(), timeout=3)
        except grpc.RpcError:
            return None
        return reply

    @staticmethod
    def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.2)


@contextlib.contextmanager
def fleet(root: Path, tag: str, timing: Timing) -> Iterator[Fleet]:
    """A started fleet, torn down on exit whatever happened."""
    built = Fleet(root, tag, timing)
    try:
        yield built.start()
    finally:
        built.close()
