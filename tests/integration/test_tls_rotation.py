"""Moving a stack to a new CA while it runs: both CAs trusted at once, then the new one only."""

from __future__ import annotations

import shutil
from pathlib import Path

from stack.security.certs import CertDir, Role
from stack.v1 import admin_pb2
from tests.support.tls import TlsStack, make_tls_dir
from tests.support.wait import wait_for


def copy_pair(source: Path, target: Path, role: Role, name: str) -> None:
    for src, dst in zip(
        CertDir(source).pair(role, name), CertDir(target).pair(role, name), strict=True
    ):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def test_a_bundle_of_the_old_and_new_ca_lets_old_and_new_certificates_meet(
    tmp_path: Path,
) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = make_tls_dir(tmp_path / "old", "h1")
    new = make_tls_dir(tmp_path / "new", "h1")
    bundle = (old / "ca.crt").read_bytes() + (new / "ca.crt").read_bytes()
    # What each host holds mid-rotation: both CAs, and its old certificate still.
    host = tmp_path / "host"
    for role, name in ((Role.controller, ""), (Role.agent, "h1"), (Role.admin, "admin")):
        copy_pair(old, host, role, name)
    (host / "ca.crt").write_bytes(bundle)

    stack = TlsStack(tmp_path, host)
    try:
        stack.start()
        # A user already on the new CA reaches the controller still on the old one.
        new_admin = CertDir(new).pair(Role.admin, "admin")
        result = stack.stackctl(
            "--ca", str(host / "ca.crt"), "--cert", str(new_admin[0]), "--key", str(new_admin[1]),
            "agents",
        )  # fmt: skip
        assert result.code == 0, result
        assert "h1" in result.out

        # The controller moves to the new CA; the agent, still on the old one, reconnects.
        stack.controller.stop()
        copy_pair(new, host, Role.controller, "")
        stack.controller.start()
        wait_for(lambda: stack.agent_state("h1") == "ready", 20, "the old agent to reconnect")
        status = stack.admin_as(*new_admin, ca_dir=host).Status(
            admin_pb2.StatusRequest(), timeout=5
        )
        assert status is not None

        # Last, the agent gets its new certificate: it takes it at its next connection.
        copy_pair(new, host, Role.agent, "h1")
        stack.controller.stop()
        stack.controller.start()
        wait_for(lambda: stack.agent_state("h1") == "ready", 20, "the agent on its new certificate")
    finally:
        stack.close()
