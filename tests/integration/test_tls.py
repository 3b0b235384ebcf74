"""Mutual TLS, roles and safe defaults over real connections: every refusal, and the happy path.

One TLS controller and one TLS agent serve the whole module (started with
`--tls-dir` only); the cases that need a daemon of their own start it.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from stack.security import certs
from stack.security.certs import CertDir, Role
from stack.security.tls import TlsFiles, diagnose
from stack.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
from tests.support.harness import served_address
from tests.support.processes import (
    AGENT,
    CONTROLLER,
    STACKCTL,
    Daemon,
    stack_env,
    worker_processes,
)
from tests.support.tls import TlsStack, credentials, make_tls_dir, stackctl, write_expired
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    root = tmp_path_factory.mktemp("tls")
    tls = make_tls_dir(root, "h1", "h2")
    running = TlsStack(root, tls)
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA with its own controller, agents and users."""
    return make_tls_dir(tmp_path_factory.mktemp("other"), "h1")


# -- certs commands ------------------------------------------------------------------


def test_certs_commands_write_0600_keys_and_never_print_them(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    results = [
        stackctl(tmp_path, "certs", "init", "--dir", str(tls), "--controller-name", "ctl.lan"),
        stackctl(tmp_path, "certs", "issue", "--dir", str(tls), "--role", "agent", "--name", "h1"),
        stackctl(tmp_path, "-o", "json", "certs", "issue", "--dir", str(tls),
                 "--role", "viewer", "--name", "vic"),
    ]  # fmt: skip
    assert [r.code for r in results] == [0, 0, 0], results
    keys = sorted(tls.rglob("*.key"))
    assert [k.relative_to(tls).as_posix() for k in keys] == [
        "agents/h1.key", "ca.key", "controller.key", "users/vic.key",
    ]  # fmt: skip
    printed = "".join(r.out + r.err for r in results)
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        body = key.read_text().splitlines()[1]
        assert body not in printed
    assert "PRIVATE KEY" not in printed
    assert "agent h1: " in results[1].out
    assert results[2].json()["name"] == "vic"


def test_certs_init_refuses_to_replace_a_ca(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    args = ("certs", "init", "--dir", str(tls), "--controller-name", "ctl")
    assert stackctl(tmp_path, *args).code == 0
    before = (tls / "ca.key").read_bytes()
    again = stackctl(tmp_path, *args)
    assert again.code == 1
    assert again.err == f"stackctl: {tls / 'ca.crt'} exists: refusing to replace a CA" + (
        " (it would orphan every cert)\n"
    )
    assert (tls / "ca.key").read_bytes() == before


# -- the happy path --------------------------------------------------------------------


def test_tls_dir_alone_runs_a_stack_and_stackctl_scales_a_watcher(stack: TlsStack) -> None:
    stackfile = stack.root / "stack.toml"
    stackfile.write_text(watcher_toml("web", stack.tag, numprocesses=1))
    tls = ("--tls-dir", str(stack.tls))
    applied = stack.stackctl(*tls, "apply", str(stackfile))
    assert applied.code == 0, applied
    scaled = stack.stackctl(*tls, "scale", "web", "3", "--wait", "--timeout", "20")
    assert scaled.code == 0, scaled
    wait_for(lambda: len(worker_processes(stack.tag)) == 3, 15, "3 workers to run")
    status = stack.stackctl(*tls, "-o", "json", "status")
    assert status.code == 0, status
    assert "web" in status.out


def test_a_tls_agent_maps_neither_cryptography_nor_grpcio(stack: TlsStack) -> None:
    """The agent's certificate checks run in a child (stack.security.tls_probe) and its
    stream is h2 over Python's ssl: the agent keeps cryptography and grpcio's library out
    (OpenSSL, which its TLS uses, is in)."""
    wait_for(lambda: stack.agent_state("h1") == "ready", 30, "the TLS agent to connect")
    maps = Path(f"/proc/{stack.agent.pid}/maps").read_text()
    for library in ("cryptography", "cygrpc"):
        assert library not in maps, f"the TLS agent maps {library}"
    assert "libssl.so" in maps, "the TLS agent's stream is not Python's ssl"


def test_stackctl_reads_tls_settings_from_the_environment(stack: TlsStack) -> None:
    argv = [*STACKCTL, "--controller", stack.address, "agents"]
    env = stack_env(STACK_TLS_DIR=str(stack.tls), STACK_CERT_NAME="vic")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "h1" in proc.stdout


# -- refusals ---------------------------------------------------------------------------


def test_a_client_without_certificate_is_refused(stack: TlsStack) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stack.admin_as(None, None).Status(admin_pb2.StatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    plain = stack.stackctl("status")
    assert plain.code == 1
    assert "the controller speaks TLS (pass --tls-dir)" in plain.err


def test_beside_tls_the_local_socket_serves_its_owner_as_an_admin_without_certificate(
    stack: TlsStack,
) -> None:
    local = f"unix:{stack.root / 'controller' / 'controller.sock'}"
    agents = stackctl(stack.root, "--controller", local, "-o", "json", "agents")
    assert agents.code == 0, agents
    assert [a["host_id"] for a in agents.json()["agents"]] == ["h1"]
    exported = stackctl(stack.root, "--controller", local, "export", "--show-secrets")
    assert exported.code == 0, exported
    # STACK_TLS_DIR set for HOST:PORT addresses does not get in the way of the socket
    tls = ("--tls-dir", str(stack.tls), "--cert-name", "vic")
    as_viewer = stackctl(stack.root, "--controller", local, *tls, "scale", "nope", "1")
    assert as_viewer.err == "stackctl: unknown watcher 'nope'\n", "an admin, not the viewer"


def test_a_certificate_from_another_ca_is_refused(stack: TlsStack, other_ca: Path) -> None:
    cert, key = CertDir(other_ca).pair(Role.admin, "admin")
    with pytest.raises(grpc.RpcError) as refused:
        stack.admin_as(cert, key).Status(admin_pb2.StatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    files = TlsFiles(ca=stack.tls / "ca.crt", cert=cert, key=key)
    assert diagnose(stack.address, files, "controller") == (
        "the controller does not trust our certificate (unknown CA)"
    )
    # stackctl with the other dir does not trust the controller either, and says so.
    result = stack.stackctl("--tls-dir", str(other_ca), "status")
    assert result.code == 1
    assert result.err == (
        f"stackctl: TLS connection to the controller at {stack.address} failed: "
        "controller certificate not signed by our CA (unknown CA)\n"
    )


def test_an_expired_certificate_is_refused_and_said_to_be_expired(
    stack: TlsStack, tmp_path: Path
) -> None:
    cert, key = write_expired(stack.tls, Role.admin, "old")
    with pytest.raises(grpc.RpcError) as refused:
        stack.admin_as(cert, key).Status(admin_pb2.StatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    files = TlsFiles(ca=stack.tls / "ca.crt", cert=cert, key=key)
    assert "expired" in (diagnose(stack.address, files, "controller") or "")
    result = stack.stackctl("--tls-dir", str(stack.tls), "--cert-name", "old", "status")
    assert result.code == 1
    assert result.err.startswith(f"stackctl: certificate {cert} expired on ")


def test_an_agent_certificate_may_not_call_the_admin_service(stack: TlsStack) -> None:
    cert, key = CertDir(stack.tls).pair(Role.agent, "h2")
    with pytest.raises(grpc.RpcError) as refused:
        stack.admin_as(cert, key).Status(admin_pb2.StatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == (
        "permission denied: agent certificates may not call AdminService"
    )


def test_a_viewer_reads_but_may_not_change_state(stack: TlsStack) -> None:
    as_viewer = ("--tls-dir", str(stack.tls), "--cert-name", "vic")
    status = stack.stackctl(*as_viewer, "status")
    assert status.code == 0, status
    scale = stack.stackctl(*as_viewer, "scale", "web", "1")
    assert scale.code == 1
    assert scale.err == "stackctl: permission denied: viewer may not Scale\n"
    wait_for(
        lambda: (
            "refused /stack.v1.AdminService/Scale from viewer 'vic'" in stack.controller.output()
        ),
        5,
        "the controller to log the refusal",
    )


def test_follow_streams_are_capped_per_certificate(stack: TlsStack) -> None:
    viewer = stack.admin_as(*CertDir(stack.tls).pair(Role.viewer, "vic"))
    follows = [
        viewer.Events(admin_pb2.EventsRequest(follow=True, lines=1), timeout=30) for _ in range(8)
    ]
    for events in follows:
        next(events)
    with pytest.raises(grpc.RpcError) as refused:
        next(viewer.Events(admin_pb2.EventsRequest(follow=True), timeout=30))
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many follow streams for viewer 'vic': at most 8 at once; "
        "close one (logs -f, events -f) first",
    )
    admin = stack.user("admin").Events(admin_pb2.EventsRequest(follow=True, lines=1), timeout=30)
    assert next(admin).kind, "another certificate has slots of its own"
    for stream in [*follows, admin]:
        stream.cancel()


def test_a_person_may_not_connect_as_an_agent(stack: TlsStack) -> None:
    cert, key = CertDir(stack.tls).pair(Role.admin, "admin")
    code, details = connect_as(stack, cert, key, "h2")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "permission denied: admin certificates may not connect as an agent"


def test_an_agent_claiming_another_host_id_is_refused(stack: TlsStack) -> None:
    cert, key = CertDir(stack.tls).pair(Role.agent, "h2")
    code, details = connect_as(stack, cert, key, "h1")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "agent certificate is for host h2 but Hello says h1"
    assert stack.agent_state("h1") == "ready", "the real h1 must keep its session"
    wait_for(
        lambda: "agent certificate is for host h2 but Hello says h1" in stack.controller.output(),
        5,
        "the controller to log the refusal",
    )


def connect_as(stack: TlsStack, cert: Path, key: Path, host_id: str) -> tuple[object, str]:
    """Open AgentService.Connect with `cert` and say Hello as `host_id`: (code, details)."""
    channel = grpc.secure_channel(stack.address, credentials(stack.tls, cert, key))
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(host_id=host_id))
        replies = stub.Connect(iter([hello]), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            for _ in replies:
                pass
        return refused.value.code(), refused.value.details()
    finally:
        channel.close()


def test_an_agent_with_another_hosts_certificate_does_not_start(stack: TlsStack) -> None:
    cert, key = CertDir(stack.tls).pair(Role.agent, "h2")
    proc = subprocess.run(
        [*AGENT, "--controller", stack.address, "--host-id", "h3",
         "--data-dir", str(stack.root / "agent-h3"), "--ca", str(stack.tls / "ca.crt"),
         "--cert", str(cert), "--key", str(key)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == f"stack-agent: certificate {cert} is for host h2, not h3\n"


def test_an_agent_of_another_ca_says_the_controller_is_unknown(
    stack: TlsStack, other_ca: Path
) -> None:
    agent = Daemon(
        [*AGENT, "--controller", stack.address, "--host-id", "h1",
         "--data-dir", str(stack.root / "agent-other"), "--tls-dir", str(other_ca)],
        stack.root / "agent-other.log",
    )  # fmt: skip
    agent.start()
    try:
        wait_for(
            lambda: (
                "TLS: controller certificate not signed by our CA (unknown CA)" in agent.output()
            ),
            15,
            "the agent to explain the refused controller",
        )
    finally:
        agent.stop()
    assert stack.agent_state("h1") == "ready"


def test_an_agent_certificate_cannot_pose_as_the_controller(stack: TlsStack) -> None:
    cert, key = CertDir(stack.tls).pair(Role.agent, "h2")
    impostor = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
        admin_pb2_grpc.AdminServiceServicer(), impostor
    )
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = impostor.add_secure_port("127.0.0.1:0", creds)
    impostor.start()
    try:
        result = stackctl(
            stack.root, "--controller", f"127.0.0.1:{port}", "--tls-dir", str(stack.tls), "status"
        )
    finally:
        impostor.stop(0)
    assert result.code == 1
    assert result.err == (
        f"stackctl: TLS connection to the controller at 127.0.0.1:{port} failed: "
        "controller certificate is for a client, not a server (unsupported purpose)\n"
    )


# -- safe defaults ----------------------------------------------------------------------


def controller_argv(root: Path, listen: str, *extra: str) -> list[str]:
    return [*CONTROLLER, "--listen", listen,
            "--data-dir", str(root / "controller"), *extra]  # fmt: skip


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_plaintext_tcp_refuses_to_start_even_on_loopback(tmp_path: Path, host: str) -> None:
    listen = f"{host}:0"  # refused before anything is bound
    proc = subprocess.run(
        controller_argv(tmp_path, listen), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"stack-controller: refusing to serve plaintext on {listen}: any user who reaches it "
        "could run commands as root on every agent; use --tls-dir, or --insecure (on this "
        f"host, stackctl needs neither: unix:{tmp_path / 'controller' / 'controller.sock'})\n"
    )
    assert not (tmp_path / "controller").exists(), "refused before anything was created"


def test_insecure_starts_on_a_non_loopback_address_with_a_warning(
    stack: TlsStack, tmp_path: Path
) -> None:
    listen = "0.0.0.0:0"
    daemon = Daemon(controller_argv(tmp_path, listen, "--insecure"), tmp_path / "ctl.log")
    daemon.start()
    try:
        port = int(served_address(daemon).rsplit(":", 1)[1])
        assert daemon.alive()
        assert f"WARNING stack.controller: INSECURE: serving plaintext on {listen}" in (
            daemon.output()
        )
        address = f"127.0.0.1:{port}"
        mismatch = stackctl(
            tmp_path, "--controller", address, "--tls-dir", str(stack.tls), "agents"
        )
    finally:
        daemon.stop()
    assert mismatch.err == (
        f"stackctl: TLS connection to the controller at {address} failed: "
        "the controller does not speak TLS (is it running without --tls-dir?)\n"
    )


def test_a_controller_with_an_expired_certificate_does_not_start(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    certs.init_dir(tls, [])
    cert, _ = write_expired(tls, Role.controller, "controller")
    proc = subprocess.run(
        controller_argv(tmp_path, "127.0.0.1:0", "--tls-dir", str(tls)),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"stack-controller: certificate {cert} expired on ")
