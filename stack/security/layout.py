"""Who a certificate names and where a TLS directory keeps each file, without cryptography.

A daemon needs these to find its TLS files and to name what is wrong with its flags
before it loads anything; the agent needs nothing more when it runs without TLS.
Importing the cryptography package costs a Python process 50-70 ms, which every reload
of an agent pays twice (its `--check`, then the new image): so it is imported only
where certificates are read or made (certs.py, tls.py), and only when TLS files are
given. certs.py re-exports these names.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Names become file names under DIR: no slashes, no surprises."""


class CertError(Exception):
    """A certificate operation failed; str() is one line for the operator."""


class Role(enum.StrEnum):
    """What a certificate's holder is; stored in the subject's OU."""

    agent = "agent"
    admin = "admin"
    viewer = "viewer"
    controller = "controller"


@dataclass(frozen=True)
class Identity:
    """Who a certificate says its holder is."""

    role: Role
    name: str
    """The CN: the host id for an agent, the person or script for admin and viewer."""

    def __str__(self) -> str:
        return f"{self.role} {self.name!r}"


def check_name(name: str, what: str = "name") -> str:
    """`name` if it is safe as a CN and a file name, else CertError."""
    if name in {".", ".."} or not NAME_RE.fullmatch(name):
        raise CertError(f"invalid {what} {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return name


@dataclass(frozen=True)
class CertDir:
    """Where each file lives under a TLS directory (see certs.py's docstring)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def pair(self, role: Role, name: str) -> tuple[Path, Path]:
        """(certificate, key) paths for `name` in `role`."""
        if role is Role.controller:
            return self.root / "controller.crt", self.root / "controller.key"
        check_name(name)
        folder = self.root / ("agents" if role is Role.agent else "users")
        return folder / f"{name}.crt", folder / f"{name}.key"

    def users(self) -> list[tuple[Identity, Path]]:
        """Every readable user certificate (admin and viewer), sorted by file name."""
        from stack.security.certs import identity_of, load_cert  # reads certificates

        found = []
        for path in sorted((self.root / "users").glob("*.crt")):
            try:
                found.append((identity_of(load_cert(path)), path))
            except CertError:
                continue
        return found
