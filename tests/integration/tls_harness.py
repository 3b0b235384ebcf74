"""A Stack over mutual TLS for tests: certificates made by `stackctl certs`, real daemons.

The controller and the agent (host id `h1`) run as subprocesses with `--tls-dir`
only, exactly as a user would start them; tests reach the AdminService through
gRPC channels with whatever certificate the case needs.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stack.security import certs
from stack.security.certs import CertDir, Role
from stack.v1 import admin_pb2, admin_pb2_grpc
from tests.integration.cluster import (
    PYTHON,
    Daemon,
    Result,
    free_port,
    run_stackctl,
    wait_for,
)


def stackctl(cwd: Path, *args: str, check: bool = False) -> Result:
    """`stackctl ARGS` as a subprocess, from `cwd`."""
    return run_stackctl([PYTHON, "-m", "stack.cli.main", *args], cwd, 60, check)


def make_tls_dir(root: Path, *hosts: str) -> Path:
    """`certs init` plus agents `hosts`, an admin `admin` and a viewer `vic`, via stackctl."""
    tls = root / "tls"
    stackctl(root, "certs", "init", "--dir", str(tls), "--controller-name", "localhost", check=True)
    for host in hosts:
        stackctl(root, "certs", "issue", "--dir", str(tls), "--role", "agent", "--name", host,
                 check=True)  # fmt: skip
    stackctl(root, "certs", "issue", "--dir", str(tls), "--role", "admin", "--name", "admin",
             check=True)  # fmt: skip
    stackctl(root, "certs", "issue", "--dir", str(tls), "--role", "viewer", "--name", "vic",
             check=True)  # fmt: skip
    return tls


def write_expired(tls: Path, role: Role, name: str) -> tuple[Path, Path]:
    """A certificate signed by the dir's CA that expired a month ago: (cert, key)."""
    ca_key = certs.load_key(tls / "ca.key")
    ca = certs.load_cert(tls / "ca.crt")
    past = certs.utcnow() - datetime.timedelta(days=40)
    key, cert = certs.issue(ca_key, ca, role, name, days=10, now=past)
    cert_path, key_path = CertDir(tls).pair(role, name)
    certs.write_private(key_path, certs.key_pem(key))
    certs.write_public(cert_path, certs.cert_pem(cert))
    return cert_path, key_path


def credentials(tls: Path, cert: Path | None, key: Path | None) -> grpc.ChannelCredentials:
    """Channel credentials trusting `tls`'s CA, presenting `cert`/`key` if given."""
    return grpc.ssl_channel_credentials(
        root_certificates=(tls / "ca.crt").read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


@dataclass
class TlsStack:
    """A TLS controller and a TLS agent `h1` under `root`, sharing one `stackctl certs` dir."""

    root: Path
    tls: Path
    port: int = field(default_factory=free_port)
    tag: str = field(default_factory=lambda: f"stacktls-{uuid.uuid4().hex[:12]}")
    controller: Daemon = field(init=False)
    agent: Daemon = field(init=False)
    _channels: list[grpc.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.controller = Daemon(
            [PYTHON, "-m", "stack.controller.main", "--listen", self.address,
             "--data-dir", str(self.root / "controller"), "--tls-dir", str(self.tls),
             "--agent-timeout", "2"],
            self.root / "controller.log",
        )  # fmt: skip
        self.agent = Daemon(
            [PYTHON, "-m", "stack.agent.main", "--controller", self.address, "--host-id", "h1",
             "--data-dir", str(self.root / "agent"), "--tls-dir", str(self.tls),
             "--heartbeat-interval", "0.5", "--stats-interval", "0.5"],
            self.root / "agent.log",
        )  # fmt: skip

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TlsStack:
        self.controller.start()
        wait_for(self._serving, 15, "the TLS controller to serve")
        self.agent.start()
        wait_for(lambda: self.agent_state("h1") == "ready", 15, "agent h1 to connect over TLS")
        return self

    def _serving(self) -> bool:
        if not self.controller.alive():
            raise AssertionError(f"controller exited:\n{self.controller.output()}")
        return bool(re.search(r"serving on .* with mutual TLS", self.controller.output()))

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        with contextlib.suppress(Exception):
            self.agent.stop()
        with contextlib.suppress(Exception):
            self.controller.stop()

    def admin(self, cert: Path | None, key: Path | None, ca_dir: Path | None = None) -> AdminStub:
        """An AdminService stub over TLS with the given client certificate (or none)."""
        creds = credentials(ca_dir or self.tls, cert, key)
        channel = grpc.secure_channel(self.address, creds)
        self._channels.append(channel)
        return admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]

    def user(self, name: str) -> AdminStub:
        cert, key = CertDir(self.tls).pair(Role.admin, name)
        return self.admin(cert, key)

    def agent_state(self, host_id: str) -> str:
        try:
            reply = self.user("admin").Agents(admin_pb2.AgentsRequest(), timeout=2)
        except grpc.RpcError:
            return ""
        return next((a.state for a in reply.agents if a.host_id == host_id), "")

    def stackctl(self, *args: str) -> Result:
        return stackctl(self.root, "--controller", self.address, *args)


AdminStub = admin_pb2_grpc.AdminServiceStub
