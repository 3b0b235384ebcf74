"""A small certificate authority for one Stack, and the directory layout it writes.

`stackctl certs init` makes a CA and the controller's certificate; `certs issue`
adds agents (one per host id) and users (admin or viewer). Who a certificate
belongs to is in its subject: the role in the OU, the name (host id for agents)
in the CN, so the controller can read both off the TLS peer without a database.

The layout under DIR is what `--tls-dir DIR` reads with no other flag:

    ca.crt  ca.key                 the CA (ca.key only where certificates are issued)
    controller.crt  controller.key
    agents/HOSTID.crt  agents/HOSTID.key
    users/NAME.crt  users/NAME.key  admin and viewer certificates

Private keys are written 0600 (atomically, never world-readable even briefly)
and are never printed. The names and paths that need no cryptography (Role, Identity,
CertDir, CertError) live in layout.py and are re-exported here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stack.security.layout import CertDir as CertDir
from stack.security.layout import CertError as CertError
from stack.security.layout import Identity as Identity
from stack.security.layout import Role as Role
from stack.security.layout import check_name as check_name

CA_DAYS = 3650
"""Validity of a new CA: ten years (rotating it means re-issuing everything)."""
LEAF_DAYS = 365
"""Validity of a new leaf certificate: one year."""
BACKDATE = datetime.timedelta(minutes=5)
"""Leaf and CA certificates start a little in the past, to absorb clock skew."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- making certificates ------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key: small, fast, and supported by every TLS stack gRPC uses."""
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(
    common_name: str = "Stack CA", days: int = CA_DAYS, now: datetime.datetime | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_key()
    start = (now or utcnow()) - BACKDATE
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    role: Role,
    name: str,
    *,
    days: int = LEAF_DAYS,
    hosts: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate for `role`/`name`, signed by the CA.

    `hosts` (DNS names or IP addresses) become subject alternative names: a
    client checks the controller's address against them. `now` lets tests make
    a certificate that has already expired.
    """
    check_name(name)
    if days < 1:
        raise CertError(f"--days must be at least 1, got {days}")
    key = new_key()
    start = (now or utcnow()) - BACKDATE
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Stack"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role is Role.controller:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(ca_cert)),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(hosts)), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def controller_hosts(names: Iterable[str]) -> list[str]:
    """The controller's SANs: the given names plus localhost and 127.0.0.1, once each."""
    hosts: list[str] = []
    for host in [*names, "localhost", "127.0.0.1"]:
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
                raise CertError(f"invalid controller name {host!r}: not a DNS name or IP") from None
            names.append(x509.DNSName(host))
    return names


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CertError("the CA's key is not an EC key")
    return public


# -- reading certificates -----------------------------------------------------


def identity_of(cert: x509.Certificate) -> Identity:
    """The role (OU) and name (CN) in a Stack certificate; CertError for any other."""
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    commons = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(units) != 1 or len(commons) != 1:
        raise CertError("not a Stack certificate: its subject needs one OU (role) and one CN")
    try:
        role = Role(str(units[0].value))
    except ValueError:
        raise CertError(f"not a Stack certificate: unknown role {units[0].value!r}") from None
    return Identity(role, str(commons[0].value))


def load_cert(path: Path) -> x509.Certificate:
    """A PEM certificate from `path`; CertError with the path when unreadable."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise CertError(f"cannot read certificate {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise CertError(f"{path} is not a PEM certificate") from None


def load_cas(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file: one CA, or several trusted at once while the
    stack moves from an old CA to a new one (see the README's Security section)."""
    try:
        cas = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise CertError(f"cannot read certificate {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise CertError(f"{path} is not a PEM certificate") from None
    return cas


def issuer_of(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The CA of `cas` that issued `cert`, if any."""
    return next((ca for ca in cas if signed_by(cert, ca)), None)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A PEM EC private key from `path` (the error never shows its content)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise CertError(f"cannot read key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise CertError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path} is not an EC private key")
    return key


def expired(cert: x509.Certificate, now: datetime.datetime | None = None) -> bool:
    return (now or utcnow()) > cert.not_valid_after_utc


def not_yet_valid(cert: x509.Certificate, now: datetime.datetime | None = None) -> bool:
    return (now or utcnow()) < cert.not_valid_before_utc


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` issued `cert` (issuer name and signature both match)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def key_matches(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    return key.public_key() == cert.public_key()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- the directory --------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the first byte, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate (0644), atomically."""
    write_private(path, data)
    path.chmod(0o644)


def init_dir(
    root: Path, controller_names: Sequence[str], days: int = LEAF_DAYS
) -> tuple[Path, Path]:
    """Create the CA and the controller's certificate in `root`; refuses an existing CA.

    Returns the paths of the CA and controller certificates.
    """
    layout = CertDir(root)
    for path in (layout.ca_cert, layout.ca_key):
        if path.exists():
            raise CertError(f"{path} exists: refusing to replace a CA (it would orphan every cert)")
    hosts = controller_hosts(controller_names)
    _general_names(hosts)  # validate before writing anything
    ca_key, ca_cert = make_ca()
    write_private(layout.ca_key, key_pem(ca_key))
    write_public(layout.ca_cert, cert_pem(ca_cert))
    return layout.ca_cert, issue_into(root, Role.controller, "controller", days, hosts)


def issue_into(
    root: Path,
    role: Role,
    name: str,
    days: int = LEAF_DAYS,
    hosts: Sequence[str] = (),
    replace: bool = False,
) -> Path:
    """Issue a certificate with the CA in `root` and write it where `--tls-dir` looks."""
    layout = CertDir(root)
    cert_path, key_path = layout.pair(role, name)
    if not replace and (cert_path.exists() or key_path.exists()):
        raise CertError(f"{cert_path} exists: pass --force to replace it")
    ca_cert = load_cert(layout.ca_cert)
    if not layout.ca_key.exists():
        raise CertError(f"no CA key at {layout.ca_key}: issue certificates where the CA lives")
    ca_key = load_key(layout.ca_key)
    if not key_matches(ca_key, ca_cert):
        raise CertError(f"{layout.ca_key} does not belong to {layout.ca_cert}")
    key, cert = issue(ca_key, ca_cert, role, name, days=days, hosts=hosts)
    write_private(key_path, key_pem(key))
    write_public(cert_path, cert_pem(cert))
    return cert_path
