"""Which TLS files a daemon or stackctl uses, checked by path: no cryptography, no gRPC.

What the flags name (`--tls-dir`, `--ca/--cert/--key`) is resolved here, and so is
whether a plaintext address is loopback. Reading and checking the certificates
themselves is tls.py's, which imports cryptography: a program given no TLS files
never needs it (see layout.py). tls.py re-exports these names.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from stack.security.layout import CertDir, CertError, Role

DEFAULT_USER = "admin"
"""The user certificate stackctl presents when --cert-name does not pick one."""


class TlsError(Exception):
    """TLS settings are unusable; str() is one line for the operator."""


@dataclass(frozen=True)
class TlsFiles:
    """The three files one side of a connection needs."""

    ca: Path
    """The CA that signed the peer's certificate (and ours)."""
    cert: Path
    """Our certificate."""
    key: Path
    """Our private key (0600; never printed)."""


def resolve(
    tls_dir: Path | None,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    default_pair: tuple[Path, Path] | None,
) -> TlsFiles | None:
    """Which files to use: explicit flags win over `tls_dir`; None when TLS is off.

    `default_pair` is where this component's (cert, key) live under `tls_dir`.
    """
    if tls_dir is None and ca is None and cert is None and key is None:
        return None
    if tls_dir is not None and not tls_dir.is_dir():
        raise TlsError(f"TLS directory {tls_dir} does not exist")
    layout_ca = CertDir(tls_dir).ca_cert if tls_dir is not None else None
    pair: tuple[Path | None, Path | None] = default_pair or (None, None)
    ca, cert, key = ca or layout_ca, cert or pair[0], key or pair[1]
    missing = [
        flag for flag, value in (("--ca", ca), ("--cert", cert), ("--key", key)) if not value
    ]
    if missing or ca is None or cert is None or key is None:
        raise TlsError(f"TLS needs {' and '.join(missing)} too (or --tls-dir DIR)")
    return TlsFiles(ca=ca, cert=cert, key=key)


def user_pair(tls_dir: Path | None, cert_name: str | None) -> tuple[Path, Path] | None:
    """stackctl's (cert, key) under `tls_dir`: --cert-name, else admin, else the only admin."""
    if tls_dir is None:
        if cert_name:
            raise TlsError("--cert-name needs --tls-dir DIR")
        return None
    layout = CertDir(tls_dir)
    try:
        if cert_name:
            return layout.pair(Role.admin, cert_name)
        default = layout.pair(Role.admin, DEFAULT_USER)
    except CertError as exc:
        raise TlsError(str(exc)) from None
    if default[0].exists():
        return default
    admins = [path for identity, path in layout.users() if identity.role is Role.admin]
    if len(admins) == 1:
        return admins[0], admins[0].with_suffix(".key")
    if not admins:
        raise TlsError(f"no admin certificate in {tls_dir / 'users'}: pick one with --cert-name")
    raise TlsError(f"several admin certificates in {tls_dir / 'users'}: pick one with --cert-name")


def is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback address."""
    host = host.strip("[]")
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )
