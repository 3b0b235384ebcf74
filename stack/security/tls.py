"""TLS material for the daemons and stackctl: finding it, checking it, and saying what failed.

Each side loads its CA, certificate and key from `--tls-dir DIR` (the layout
`stackctl certs` writes) or from `--ca/--cert/--key`, and checks them *before*
dialing or serving: an expired certificate, one from another CA or a key that
does not match becomes one clear line instead of an opaque handshake failure.
When a handshake fails anyway, `diagnose` repeats it with Python's `ssl` module,
which (unlike gRPC) says why: unknown CA, expired, wrong host name. Which files to use
is tls_files.py's, which needs no cryptography (its names are re-exported here).
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509

from stack.security.certs import (
    CertError,
    Identity,
    Role,
    expired,
    identity_of,
    issuer_of,
    key_matches,
    load_cas,
    load_cert,
    load_key,
    not_yet_valid,
)
from stack.security.tls_files import DEFAULT_USER as DEFAULT_USER
from stack.security.tls_files import TlsError as TlsError
from stack.security.tls_files import TlsFiles as TlsFiles
from stack.security.tls_files import is_loopback as is_loopback
from stack.security.tls_files import resolve as resolve
from stack.security.tls_files import user_pair as user_pair


@dataclass(frozen=True)
class TlsMaterial:
    """Checked TLS files in memory, ready for gRPC credentials."""

    files: TlsFiles
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    identity: Identity
    """Who our certificate says we are."""
    not_after: datetime.datetime
    """When our certificate expires."""

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"TlsMaterial({self.identity}, cert={self.files.cert})"


def load(
    files: TlsFiles, roles: Collection[Role], now: datetime.datetime | None = None
) -> TlsMaterial:
    """Read and check the files: valid now, signed by the CA, key matching, right role."""
    try:
        cas = load_cas(files.ca)
        cert = load_cert(files.cert)
        key = load_key(files.key)
        identity = identity_of(cert)
    except CertError as exc:
        raise TlsError(str(exc)) from None
    ca = issuer_of(cert, cas)
    if ca is None:
        raise TlsError(f"certificate {files.cert} is not signed by the CA in {files.ca}")
    _check_valid(ca, f"CA certificate {files.ca}", now)
    _check_valid(cert, f"certificate {files.cert}", now)
    if not key_matches(key, cert):
        raise TlsError(f"key {files.key} does not belong to certificate {files.cert}")
    if identity.role not in roles:
        wanted = " or ".join(sorted(role.value for role in roles))
        raise TlsError(f"certificate {files.cert} is for {identity}; this needs {wanted}")
    return TlsMaterial(
        files=files,
        ca_pem=files.ca.read_bytes(),
        cert_pem=files.cert.read_bytes(),
        key_pem=files.key.read_bytes(),
        identity=identity,
        not_after=cert.not_valid_after_utc,
    )


def _check_valid(cert: x509.Certificate, what: str, now: datetime.datetime | None) -> None:
    if expired(cert, now):
        when = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
        raise TlsError(f"{what} expired on {when}")
    if not_yet_valid(cert, now):
        when = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC")
        raise TlsError(f"{what} is not valid before {when} (check the clock)")


# -- gRPC -----------------------------------------------------------------------


def server_credentials(material: TlsMaterial) -> grpc.ServerCredentials:
    """Serve with our certificate and require a client certificate from our CA."""
    return grpc.ssl_server_credentials(
        [(material.key_pem, material.cert_pem)],
        root_certificates=material.ca_pem,
        require_client_auth=True,
    )


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """Dial with our certificate and trust only servers our CA signed."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_pem,
        private_key=material.key_pem,
        certificate_chain=material.cert_pem,
    )


def peer_identity(context: Any) -> Identity | None:
    """Who the TLS peer of a server call is; None on a plaintext connection.

    gRPC has already verified the chain against our CA, so the subject can be trusted.
    """
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    try:
        return identity_of(x509.load_pem_x509_certificate(pems[0]))
    except (CertError, ValueError):
        return None


def is_local_peer(context: Any) -> bool:
    """Whether a server call came over the controller's local socket (see
    stack.security.local), whose callers the kernel limited to its owner and group."""
    kind: list[bytes] = context.auth_context().get("transport_security_type", [])
    return kind == [b"local"]


# -- HTTPS (metrics and the web console) ----------------------------------------


def https_context(material: TlsMaterial) -> ssl.SSLContext:
    """Serve HTTPS with our certificate and require a client certificate from our CA,
    as the gRPC port does (see server_credentials)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(material.files.cert), str(material.files.key))
    context.load_verify_locations(cadata=material.ca_pem.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def identity_of_der(der: bytes | None) -> Identity | None:
    """Who the TLS peer whose certificate is `der` is (ssl verified it against our CA);
    None without a certificate or for one that is not Stack's."""
    if not der:
        return None
    try:
        return identity_of(x509.load_der_x509_certificate(der))
    except (CertError, ValueError):
        return None


# -- explaining failures ----------------------------------------------------------

_SERVER_VERIFY = {
    10: "certificate expired",
    9: "certificate not yet valid (check the clock)",
    18: "not signed by our CA (unknown CA)",
    19: "not signed by our CA (unknown CA)",
    20: "not signed by our CA (unknown CA)",
    21: "not signed by our CA (unknown CA)",
    26: "is for a client, not a server (unsupported purpose)",
}
_ALERTS = {
    "UNKNOWN_CA": "does not trust our certificate (unknown CA)",
    "CERTIFICATE_EXPIRED": "refused our certificate: expired",
    "CERTIFICATE_REQUIRED": "requires a client certificate",
    "BAD_CERTIFICATE": "refused our certificate",
    "CERTIFICATE_UNKNOWN": "refused our certificate",
    "UNSUPPORTED_CERTIFICATE": "refused our certificate (wrong key usage)",
    "WRONG_VERSION_NUMBER": "does not speak TLS (is it running without --tls-dir?)",
}


def diagnose(address: str, files: TlsFiles | None, peer: str, timeout: float = 2.0) -> str | None:
    """Why a TLS connection to `address` fails, in a few words; None if it did not.

    Repeats the handshake with Python's ssl, which reports the verification error
    gRPC keeps to itself. `peer` names the other side in the message ("controller").
    With `files` None it probes whether `address` speaks TLS at all.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])
    if files is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=str(files.ca))
        context.load_cert_chain(str(files.cert), str(files.key))
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            if files is None:
                return f"the {peer} speaks TLS (pass --tls-dir)"
            # With TLS 1.3 the server judges our certificate after the handshake: a
            # gRPC server that refuses it closes the connection without a word.
            if conn.recv(1) == b"":
                return f"the {peer} {_refusal_reason(files)}"
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == 62:
            return f"{peer} certificate is not valid for {host} (not in its names)"
        reason = _SERVER_VERIFY.get(exc.verify_code, exc.verify_message)
        return f"{peer} certificate {reason}"
    except ssl.SSLError as exc:
        if files is None:
            return None  # plaintext on both sides: not a TLS problem
        text = str(exc.reason or exc)
        for marker, reason in _ALERTS.items():
            if marker in text:
                return f"the {peer} {reason}"
        return f"TLS error: {text}"
    except OSError:
        return None
    return None


def _refusal_reason(files: TlsFiles) -> str:
    """Why a peer that trusts our CA would refuse our certificate, judged locally."""
    try:
        cas, cert = load_cas(files.ca), load_cert(files.cert)
    except CertError:
        return "refused our certificate"
    if expired(cert):
        return "refused our certificate: expired"
    if issuer_of(cert, cas) is None:
        return "does not trust our certificate (unknown CA)"
    return "refused our certificate"
