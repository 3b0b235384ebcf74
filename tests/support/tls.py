"""A Stack over mutual TLS for tests: certificates made by `stackctl certs`, real daemons.

The controller and the agent (host id `h1`) run as subprocesses with `--tls-dir`
only, exactly as a user would start them; tests reach the AdminService through
gRPC channels with whatever certificate the case needs. The controller's port is
reserved (tests/support/ports.py): it is restarted at the address its agent was given.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stack.security import certs
from stack.security.certs import CertDir, Role
from tests.support.harness import AdminStub, Harness, admin_stub, new_tag, stackctl_to
from tests.support.ports import ReservedPort, reserve_port
from tests.support.processes import AGENT, CONTROLLER, STACKCTL, Daemon, Result, run_stackctl
from tests.support.wait import wait_for


def stackctl(cwd: Path, *args: str, check: bool = False) -> Result:
    """`stackctl ARGS` as a subprocess, from `cwd`."""
    return run_stackctl([*STACKCTL, *args], cwd, 60, check)


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
class TlsStack(Harness):
    """A TLS controller and a TLS agent `h1` under `root`, sharing one `stackctl certs` dir."""

    root: Path
    tls: Path
    tag: str = field(default_factory=lambda: new_tag("stacktls"))
    reserved: ReservedPort = field(default_factory=reserve_port)
    controller: Daemon = field(init=False)
    agent: Daemon = field(init=False)
    agent_options: tuple[str, ...] = ("--heartbeat-interval", "0.5", "--stats-interval", "0.5")
    """The agent's flags beyond address, host id, data dir and TLS: the tests' fast intervals."""
    _channels: list[grpc.Channel] = field(default_factory=list)
    _admin: AdminStub | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.controller = Daemon(
            [*CONTROLLER, "--listen", self.address,
             "--data-dir", str(self.root / "controller"), "--tls-dir", str(self.tls)],
            self.root / "controller.log",
        )  # fmt: skip
        self.agent = Daemon(
            [*AGENT, "--controller", self.address, "--host-id", "h1",
             "--data-dir", str(self.root / "agent"), "--tls-dir", str(self.tls),
             *self.agent_options],
            self.root / "agent.log",
        )  # fmt: skip

    @property
    def port(self) -> int:
        return self.reserved.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stackctl_argv(self) -> list[str]:
        return stackctl_to(self.address)

    def cwd(self) -> Path:
        return self.root

    def daemons(self) -> dict[str, Daemon]:
        return {"h1": self.agent, "controller": self.controller}

    def start(self) -> TlsStack:
        self.controller.start()
        wait_for(self._serving, 30, "the TLS controller to serve")
        self.agent.start()
        wait_for(lambda: self.agent_state("h1") == "ready", 30, "agent h1 to connect over TLS")
        return self

    def _serving(self) -> bool:
        if not self.controller.alive():
            raise AssertionError(f"controller exited:\n{self.controller.output()}")
        return bool(re.search(r"serving on .* with mutual TLS", self.controller.output()))

    def release(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._admin = None
        self.reserved.close()

    def admin_as(
        self, cert: Path | None, key: Path | None, ca_dir: Path | None = None
    ) -> AdminStub:
        """An AdminService stub over TLS with the given client certificate (or none)."""
        creds = credentials(ca_dir or self.tls, cert, key)
        channel = grpc.secure_channel(self.address, creds)
        self._channels.append(channel)
        return admin_stub(channel)

    def user(self, name: str) -> AdminStub:
        cert, key = CertDir(self.tls).pair(Role.admin, name)
        return self.admin_as(cert, key)

    def admin(self) -> AdminStub:
        if self._admin is None:
            self._admin = self.user("admin")
        return self._admin


@contextlib.contextmanager
def running_tls_stack(root: Path, *controller_options: str) -> Iterator[TlsStack]:
    """A started TlsStack (agent h1, users admin and vic) whose controller has these
    options too; closed at the end."""
    running = TlsStack(root, make_tls_dir(root, "h1"))
    running.controller.argv += list(controller_options)
    try:
        yield running.start()
    finally:
        running.close()


def https_client(tls: Path, role: Role | None, name: str = "") -> ssl.SSLContext:
    """An HTTPS client context trusting `tls`'s CA, with the certificate of `name` in
    `role` (none when `role` is None). The controller's name is not checked: tests reach
    it at 127.0.0.1."""
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.check_hostname = False
    if role is not None:
        cert, key = CertDir(tls).pair(role, name)
        context.load_cert_chain(str(cert), str(key))
    return context
