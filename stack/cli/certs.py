"""`stackctl certs init` and `certs issue`: a CA and certificates for mutual TLS.

Works on local files only (no controller). The directory it writes is what
`--tls-dir DIR` reads as is, so one DIR can be copied to a test host. Keys are
written 0600 and never printed; the commands print only paths and identities.
cryptography loads when one of these commands runs, not when stackctl starts.
"""

from __future__ import annotations

from pathlib import Path

from stack.cli import render
from stack.cli.errors import CommandError
from stack.cli.options import GlobalOptions


def init(
    options: GlobalOptions, directory: Path, controller_names: list[str], days: int | None = None
) -> None:
    """Create DIR's CA and the controller certificate (localhost and 127.0.0.1 included)."""
    from stack.security.certs import LEAF_DAYS, CertError, init_dir

    try:
        ca_path, cert_path = init_dir(directory, controller_names, days or LEAF_DAYS)
    except CertError as exc:
        raise CommandError(str(exc)) from None
    _report(options, "controller", "controller", cert_path, ca=str(ca_path))


def issue(
    options: GlobalOptions,
    directory: Path,
    role: str,
    name: str,
    days: int | None = None,
    force: bool = False,
    controller_names: list[str] | None = None,
) -> None:
    """Issue a certificate signed by DIR's CA: agent, admin, viewer, or a renewed controller's."""
    from stack.security.certs import LEAF_DAYS, CertError, Role, controller_hosts, issue_into

    if role not in {Role.agent, Role.admin, Role.viewer, Role.controller}:
        raise CommandError(f"--role must be agent, admin, viewer or controller, not {role!r}")
    if controller_names and role != Role.controller:
        raise CommandError("--controller-name goes with --role controller only")
    hosts = controller_hosts(controller_names or []) if role == Role.controller else []
    try:
        cert_path = issue_into(directory, Role(role), name, days or LEAF_DAYS, hosts, replace=force)
    except CertError as exc:
        raise CommandError(str(exc)) from None
    _report(options, role, name, cert_path)


def _report(options: GlobalOptions, role: str, name: str, cert_path: Path, **extra: str) -> None:
    """Say what was written: paths and identity, never key material."""
    from stack.security.certs import load_cert

    cert = load_cert(cert_path)
    document = {
        "role": role,
        "name": name,
        "certificate": str(cert_path),
        "key": str(cert_path.with_suffix(".key")),
        "not_after": cert.not_valid_after_utc.isoformat(),
        **extra,
    }
    if options.structured:
        options.print(document)
        return
    if "ca" in extra:
        render.print_text(f"CA: {extra['ca']}")
    render.print_text(
        f"{role} {name}: {document['certificate']} (key {document['key']}, 0600), "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    )
