"""The CA, the certificate layout, the checks made before dialing, and the role table."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509

from stack.security import certs
from stack.security.certs import CertDir, CertError, Identity, Role
from stack.security.roles import refusal
from stack.security.tls import TlsError, TlsFiles, load, resolve, user_pair


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tls"
    certs.init_dir(root, ["ctl.example", "198.18.0.1"])
    certs.issue_into(root, Role.agent, "h1")
    certs.issue_into(root, Role.admin, "admin")
    certs.issue_into(root, Role.viewer, "vic")
    return root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_and_issue_write_the_layout_tls_dir_reads(tls_dir: Path) -> None:
    expected = [
        "agents/h1.crt", "agents/h1.key", "ca.crt", "ca.key", "controller.crt",
        "controller.key", "users/admin.crt", "users/admin.key", "users/vic.crt", "users/vic.key",
    ]  # fmt: skip
    found = sorted(str(p.relative_to(tls_dir)) for p in tls_dir.rglob("*") if p.is_file())
    assert found == expected


def test_private_keys_are_0600_and_certificates_readable(tls_dir: Path) -> None:
    for key in tls_dir.rglob("*.key"):
        assert mode(key) == 0o600, key
    for cert in tls_dir.rglob("*.crt"):
        assert mode(cert) == 0o644, cert


def test_ca_may_sign_only_leaves_and_leaves_are_not_cas(tls_dir: Path) -> None:
    layout = CertDir(tls_dir)
    ca = certs.load_cert(layout.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == datetime.timedelta(days=3650)
    leaf = certs.load_cert(layout.pair(Role.agent, "h1")[0])
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(days=365)
    assert certs.signed_by(leaf, ca)


def test_identity_is_the_role_in_ou_and_the_name_in_cn(tls_dir: Path) -> None:
    layout = CertDir(tls_dir)
    cases = {
        layout.pair(Role.agent, "h1")[0]: Identity(Role.agent, "h1"),
        layout.pair(Role.admin, "admin")[0]: Identity(Role.admin, "admin"),
        layout.pair(Role.viewer, "vic")[0]: Identity(Role.viewer, "vic"),
        layout.pair(Role.controller, "")[0]: Identity(Role.controller, "controller"),
    }
    for path, identity in cases.items():
        assert certs.identity_of(certs.load_cert(path)) == identity


def test_controller_certificate_names_always_include_localhost(tls_dir: Path) -> None:
    cert = certs.load_cert(CertDir(tls_dir).pair(Role.controller, "")[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ctl.example", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "198.18.0.1",
        "127.0.0.1",
    ]


def test_an_existing_ca_is_never_replaced(tls_dir: Path) -> None:
    before = (tls_dir / "ca.key").read_bytes()
    with pytest.raises(CertError, match="refusing to replace a CA"):
        certs.init_dir(tls_dir, [])
    assert (tls_dir / "ca.key").read_bytes() == before


def test_reissuing_needs_force(tls_dir: Path) -> None:
    cert_path, _ = CertDir(tls_dir).pair(Role.agent, "h1")
    before = cert_path.read_bytes()
    with pytest.raises(CertError, match="--force"):
        certs.issue_into(tls_dir, Role.agent, "h1")
    certs.issue_into(tls_dir, Role.agent, "h1", replace=True)
    assert cert_path.read_bytes() != before


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "..", "x" * 65, "spa ce"])
def test_names_that_are_not_safe_file_names_are_refused(tls_dir: Path, name: str) -> None:
    with pytest.raises(CertError, match="invalid name"):
        certs.issue_into(tls_dir, Role.agent, name)


def test_a_bad_controller_name_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="not a DNS name or IP"):
        certs.init_dir(tmp_path / "tls", ["bad name!"])
    assert not (tmp_path / "tls" / "ca.key").exists()


# -- the checks before dialing ---------------------------------------------------


def agent_files(root: Path, name: str = "h1") -> TlsFiles:
    cert, key = CertDir(root).pair(Role.agent, name)
    return TlsFiles(ca=root / "ca.crt", cert=cert, key=key)


def test_good_files_load_with_their_identity(tls_dir: Path) -> None:
    material = load(agent_files(tls_dir), (Role.agent,))
    assert material.identity == Identity(Role.agent, "h1")
    assert b"PRIVATE KEY" not in repr(material).encode()


def test_an_expired_certificate_is_refused_before_dialing(tls_dir: Path) -> None:
    ca_key = certs.load_key(tls_dir / "ca.key")
    ca = certs.load_cert(tls_dir / "ca.crt")
    past = certs.utcnow() - datetime.timedelta(days=30)
    key, cert = certs.issue(ca_key, ca, Role.agent, "old", days=1, now=past)
    files = agent_files(tls_dir, "old")
    certs.write_private(files.key, certs.key_pem(key))
    certs.write_public(files.cert, certs.cert_pem(cert))
    with pytest.raises(TlsError, match=r"certificate .*old.crt expired on \d{4}-"):
        load(files, (Role.agent,))


def test_a_certificate_from_another_ca_is_refused(tls_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    certs.init_dir(other, [])
    certs.issue_into(other, Role.agent, "h1")
    files = TlsFiles(
        ca=tls_dir / "ca.crt", cert=agent_files(other).cert, key=agent_files(other).key
    )
    with pytest.raises(TlsError, match="is not signed by the CA in"):
        load(files, (Role.agent,))


def test_a_key_of_another_certificate_is_refused(tls_dir: Path) -> None:
    files = TlsFiles(
        ca=tls_dir / "ca.crt", cert=agent_files(tls_dir).cert, key=tls_dir / "users" / "vic.key"
    )
    with pytest.raises(TlsError, match="does not belong to certificate"):
        load(files, (Role.agent,))


def test_a_certificate_of_the_wrong_role_is_refused(tls_dir: Path) -> None:
    with pytest.raises(TlsError, match="is for agent 'h1'; this needs admin or viewer"):
        load(agent_files(tls_dir), (Role.admin, Role.viewer))


def test_a_missing_file_is_named(tls_dir: Path) -> None:
    files = agent_files(tls_dir, "nobody")
    with pytest.raises(TlsError, match=r"cannot read certificate .*nobody.crt"):
        load(files, (Role.agent,))


def test_no_tls_options_means_plaintext_and_partial_ones_are_an_error(tmp_path: Path) -> None:
    assert resolve(None, None, None, None, None) is None
    with pytest.raises(TlsError, match="TLS needs --ca and --key too"):
        resolve(None, None, tmp_path / "c.crt", None, None)


def test_explicit_files_override_the_dir(tls_dir: Path, tmp_path: Path) -> None:
    pair = CertDir(tls_dir).pair(Role.agent, "h1")
    files = resolve(tls_dir, None, None, tmp_path / "k.key", pair)
    assert files == TlsFiles(ca=tls_dir / "ca.crt", cert=pair[0], key=tmp_path / "k.key")


def test_stackctl_picks_admin_then_the_only_admin_then_asks(tls_dir: Path) -> None:
    users = tls_dir / "users"
    assert user_pair(tls_dir, None) == (users / "admin.crt", users / "admin.key")
    assert user_pair(tls_dir, "vic") == (users / "vic.crt", users / "vic.key")
    for suffix in (".crt", ".key"):
        (users / f"admin{suffix}").rename(users / f"ops{suffix}")
    assert user_pair(tls_dir, None) == (users / "ops.crt", users / "ops.key")
    certs.issue_into(tls_dir, Role.admin, "ci")
    with pytest.raises(TlsError, match="several admin certificates"):
        user_pair(tls_dir, None)
    with pytest.raises(TlsError, match="--cert-name needs --tls-dir"):
        user_pair(None, "vic")


# -- who may call what -----------------------------------------------------------

ADMIN = "/stack.v1.AdminService/"
AGENT = "/stack.v1.AgentService/Connect"


@pytest.mark.parametrize(
    ("role", "method", "reason"),
    [
        (Role.admin, ADMIN + "Scale", None),
        (Role.admin, ADMIN + "Status", None),
        (Role.viewer, ADMIN + "Status", None),
        (Role.viewer, ADMIN + "Logs", None),
        (Role.viewer, ADMIN + "Export", None),
        (Role.viewer, ADMIN + "Scale", "permission denied: viewer may not Scale"),
        (Role.viewer, ADMIN + "Apply", "permission denied: viewer may not Apply"),
        (Role.viewer, ADMIN + "SomethingNew", "permission denied: viewer may not SomethingNew"),
        (Role.agent, ADMIN + "Status", "permission denied: agent certificates may not call"),
        (Role.controller, ADMIN + "Status", "permission denied: controller certificates may"),
        (Role.agent, AGENT, None),
        (Role.admin, AGENT, "permission denied: admin certificates may not connect as an agent"),
        (Role.viewer, AGENT, "permission denied: viewer certificates may not connect"),
        (Role.admin, "/grpc.health.v1.Health/Check", "permission denied: admin may not call"),
    ],
)
def test_role_table(role: Role, method: str, reason: str | None) -> None:
    found = refusal(Identity(role, "x"), method)
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


def test_no_certificate_may_call_nothing() -> None:
    assert refusal(None, ADMIN + "Status") == "permission denied: no client certificate"
