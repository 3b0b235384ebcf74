"""tls.py's checks as a short-lived program, for a daemon that must not load cryptography.

The agent runs on every host and keeps its memory small: importing cryptography (and
the OpenSSL that Python's ssl maps) would add about 14 MiB to it for checks it makes
at start and when its files change. It runs this program instead and reads one JSON
line:

    python -m stack.security.tls_probe check ROLE CA CERT KEY
        -> {"name": "web-1", "role": "agent"}  or  {"error": "one line"}
    python -m stack.security.tls_probe diagnose ADDRESS PEER CA CERT KEY
        -> {"reason": "controller certificate has expired"}  (or null)

The exit status is 0 whenever a line was printed: the line is the verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stack.security.layout import Role
from stack.security.tls_files import TlsError, TlsFiles


def _files(ca: str, cert: str, key: str) -> TlsFiles:
    return TlsFiles(Path(ca), Path(cert), Path(key))


def verdict(argv: list[str]) -> dict[str, object]:
    """What the program prints for `argv` (its arguments), as a dict."""
    from stack.security import tls

    match argv:
        case ["check", role, ca, cert, key]:
            try:
                material = tls.load(_files(ca, cert, key), (Role(role),))
            except TlsError as exc:
                return {"error": str(exc)}
            identity = material.identity
            return {"name": identity.name, "role": identity.role.value}
        case ["diagnose", address, peer, ca, cert, key]:
            return {"reason": tls.diagnose(address, _files(ca, cert, key), peer)}
    return {
        "error": f"usage: check ROLE CA CERT KEY | diagnose ADDRESS PEER CA CERT KEY, not {argv}"
    }


def main() -> None:
    print(json.dumps(verdict(sys.argv[1:])), flush=True)


if __name__ == "__main__":
    main()
