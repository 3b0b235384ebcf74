"""A TLS-enabled etcd: the store and a controller reach it with their own TLS settings."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stack.controller.store.base import StaleTerm, StoreError
from stack.controller.store.etcd import EtcdStore
from stack.controller.store.etcd_client import EtcdTls
from stack.security.certs import CertDir, Role, init_dir
from stack.v1 import admin_pb2
from tests.support.etcd import ETCD, requires_etcd
from tests.support.etcd_term import TermTakingEtcdStore
from tests.support.harness import AdminStub
from tests.support.ports import reserve_port
from tests.support.processes import CONTROLLER, Daemon
from tests.support.wait import wait_for

pytestmark = requires_etcd


@dataclass(frozen=True)
class SecureEtcd:
    endpoint: str
    tls: EtcdTls
    """The controller certificate of `stackctl certs init`, as etcd client."""


@contextlib.contextmanager
def secure_etcd(root: Path) -> Iterator[SecureEtcd]:
    """One etcd member that speaks only mutual TLS, with certificates from `stackctl certs`."""
    tls_dir = root / "tls"
    ca, cert = init_dir(tls_dir, ["127.0.0.1"])
    key = CertDir(tls_dir).pair(Role.controller, "")[1]
    client, peer = reserve_port(), reserve_port()
    client_port, peer_port = client.port, peer.port
    endpoint = f"127.0.0.1:{client_port}"
    argv = [
        ETCD, "--name", "secure", "--data-dir", str(root / "etcd"),
        "--listen-client-urls", f"https://{endpoint}",
        "--advertise-client-urls", f"https://{endpoint}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"secure=http://127.0.0.1:{peer_port}",
        "--cert-file", str(cert), "--key-file", str(key),
        "--trusted-ca-file", str(ca), "--client-cert-auth",
        "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn",
    ]  # fmt: skip
    with (root / "etcd.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    tls = EtcdTls(ca, cert, key)
    try:

        def answers() -> bool:
            try:
                store = EtcdStore([endpoint], "/probe", tls=tls)
            except StoreError:
                return False
            try:
                return all(health.healthy for health in store.health())
            finally:
                store.close()

        wait_for(answers, 20, "the TLS etcd to answer")
        yield SecureEtcd(endpoint, tls)
    finally:
        proc.kill()
        proc.wait(10)
        client.close()
        peer.close()
        shutil.rmtree(root / "etcd", ignore_errors=True)


def test_the_store_commits_and_is_fenced_over_tls(tmp_path: Path) -> None:
    with secure_etcd(tmp_path) as etcd:
        store = TermTakingEtcdStore([etcd.endpoint], "/tls-test", tls=etcd.tls, lease_ttl=2.0)
        try:
            term = store.acquire_term()
            store.commit(term, {"stack/a": b"1"}, [])
            assert store.load("stack/") == {"stack/a": b"1"}
            newer = store.acquire_term()
            assert newer > term
            with pytest.raises(StaleTerm):
                store.commit(term, {"stack/a": b"2"}, [])
            assert store.load("stack/") == {"stack/a": b"1"}
        finally:
            store.close()


def test_without_a_client_certificate_etcd_is_unhealthy_with_a_reason(tmp_path: Path) -> None:
    with secure_etcd(tmp_path) as etcd:
        store = EtcdStore([etcd.endpoint], "/tls-test", tls=EtcdTls(etcd.tls.ca))
        try:
            (health,) = store.health()
            assert not health.healthy and health.error
            with pytest.raises(StoreError) as refused:
                store.load("stack/")
            assert "\n" not in str(refused.value)
        finally:
            store.close()


def test_a_controller_leads_on_a_tls_etcd_with_its_etcd_flags(
    tmp_path: Path, reserved_port: int
) -> None:
    with secure_etcd(tmp_path) as etcd:
        address = f"127.0.0.1:{reserved_port}"  # reserved for the controller to bind
        controller = Daemon(
            [*CONTROLLER, "--listen", address, "--insecure",
             "--store", f"etcd://{etcd.endpoint}/tls", "--lease-ttl", "2",
             "--etcd-ca", str(etcd.tls.ca), "--etcd-cert", str(etcd.tls.cert),
             "--etcd-key", str(etcd.tls.key), "--data-dir", str(tmp_path / "c")],
            tmp_path / "controller.log",
        )  # fmt: skip
        controller.start()
        try:

            def leads() -> admin_pb2.ControllersReply | None:
                try:
                    with grpc.insecure_channel(address) as channel:
                        reply: admin_pb2.ControllersReply = AdminStub(channel).Controllers(
                            admin_pb2.ControllersRequest(), timeout=2
                        )
                except grpc.RpcError:
                    return None
                return reply if reply.leader_address == address else None

            reply = wait_for(leads, 20, "the controller to lead")
            assert reply.store == "etcd"
            assert [m.healthy for m in reply.members] == [True]
        finally:
            controller.stop()
