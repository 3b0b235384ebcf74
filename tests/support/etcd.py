"""Real etcd members on 127.0.0.1 for tests: 1 or 3 of them, temporary data dirs.

Tests of the etcd store and of leader election need the real thing: raft,
leases, compaction and a member dying under a client. This helper starts
`etcd` (v3.4) with short raft timeouts so that elections and failovers take
a fraction of a second, and can kill -9, stop, pause and restart one member.
Everything is torn down when the `etcd_cluster` context exits, whatever
happened inside. Members' ports are reserved (tests/support/ports.py): the
cluster names its members' URLs before any binds them, and a member restarts
on its own ports.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyetcd
import pytest

from stack.controller.store.etcd_client import EtcdTls, connect
from stack.security.certs import CertDir, Role, init_dir
from tests.support.ports import ReservedPort, reserve_port
from tests.support.wait import wait_for

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
HAVE_ETCD = Path(ETCD).exists()
requires_etcd = pytest.mark.skipif(
    not HAVE_ETCD, reason="etcd is not installed (apt-get install etcd-server)"
)

# Raft in a few hundred milliseconds: leader elections and lease checks stay fast.
_TIMING = ("--heartbeat-interval", "50", "--election-timeout", "500")


@dataclass
class EtcdProcess:
    """One etcd process and what is done to it: started from `argv`, killed, paused.

    Subclasses say how it is started (`argv`): on loopback ports here (`EtcdMember`),
    inside a network namespace with TLS elsewhere (bench/chaoskit).
    """

    name: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, kw_only=True)

    def argv(self, initial_cluster: str) -> list[str]:
        """The etcd command line of this member in a cluster of `initial_cluster`."""
        raise NotImplementedError

    def start(self, initial_cluster: str) -> None:
        """Start (or restart, on the same data dir) this member."""
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                self.argv(initial_cluster), stdout=handle, stderr=handle, start_new_session=True
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: the member vanishes without a word to its peers or clients."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def member_argv(
    name: str, data_dir: Path, client_url: str, peer_url: str, initial_cluster: str
) -> list[str]:
    """etcd's command line for one member of a new cluster (short raft timings, warnings
    only in its log); callers add TLS flags or a namespace around it."""
    return [
        ETCD, "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
        "--initial-cluster-token", data_dir.parent.name,
        "--logger", "zap", "--log-level", "warn", *_TIMING,
    ]  # fmt: skip


@dataclass
class EtcdMember(EtcdProcess):
    """One etcd member on 127.0.0.1: its reserved ports, its data dir and its log."""

    client: ReservedPort = field(default_factory=reserve_port)
    peer: ReservedPort = field(default_factory=reserve_port)
    tls: EtcdTls | None = None
    """Clients must speak mutual TLS with these (the controller's) certificates; None:
    plain text."""

    @property
    def client_port(self) -> int:
        return self.client.port

    @property
    def peer_port(self) -> int:
        return self.peer.port

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def argv(self, initial_cluster: str) -> list[str]:
        if self.tls is None:
            return member_argv(
                self.name, self.data_dir, f"http://{self.endpoint}", self.peer_url, initial_cluster
            )
        argv = member_argv(
            self.name, self.data_dir, f"https://{self.endpoint}", self.peer_url, initial_cluster
        )
        return [*argv, "--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]  # fmt: skip

    def healthy(self) -> bool:
        """A linearizable read answered: this member is up and its cluster has quorum."""
        client = (
            pyetcd.client("127.0.0.1", self.client_port, timeout=1.0)
            if self.tls is None
            else connect([self.endpoint], 1.0, self.tls)
        )
        try:
            client.get("health")
        except Exception:
            return False
        finally:
            client.close()
        return True


@dataclass
class EtcdCluster:
    """`size` members forming one cluster under `root`."""

    root: Path
    size: int = 1
    tls: EtcdTls | None = None
    """Mutual TLS for clients (see `EtcdMember.tls`); None: plain text."""
    members: list[EtcdMember] = field(init=False)

    def __post_init__(self) -> None:
        self.members = [
            EtcdMember(f"m{i}", self.root / f"m{i}.etcd", self.root / f"m{i}.log", tls=self.tls)
            for i in range(self.size)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self) -> None:
        for member in self.members:
            member.start(self.initial_cluster)
        self.wait_healthy()

    def restart(self, index: int) -> None:
        """Start a stopped or killed member again on its old data dir."""
        self.members[index].start(self.initial_cluster)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Every running member answers a linearizable read."""
        running = [m for m in self.members if m.alive()]

        def ready() -> bool:
            for member in running:
                if not member.alive():
                    raise AssertionError(f"etcd {member.name} exited:\n{member.output()[-2000:]}")
            return all(member.healthy() for member in running)

        wait_for(ready, timeout=timeout, what="etcd members healthy", interval=0.1)

    def close(self) -> None:
        for member in self.members:
            member.kill9()
            member.client.close()
            member.peer.close()


@contextlib.contextmanager
def etcd_cluster(size: int = 1, tls: bool = False) -> Iterator[EtcdCluster]:
    """Started, healthy etcd members; killed and their data removed on exit. With `tls`
    they take clients over mutual TLS only, with a `stackctl certs` dir's controller
    certificate (in `tls` of the cluster)."""
    if not HAVE_ETCD:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    root = Path(tempfile.mkdtemp(prefix="stack-etcd-"))
    cluster = EtcdCluster(root, size, _etcd_tls(root / "tls") if tls else None)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


def _etcd_tls(tls_dir: Path) -> EtcdTls:
    """A new certificate dir; its controller certificate, valid for 127.0.0.1, is both
    the members' server certificate and their clients'."""
    ca, cert = init_dir(tls_dir, ["127.0.0.1"])
    return EtcdTls(ca, cert, CertDir(tls_dir).pair(Role.controller, "")[1])
