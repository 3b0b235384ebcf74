"""`stackctl certs init` and `certs issue`: a CA and certificates for mutual TLS.

Works on local files only (no controller). The directory it writes is what
`--tls-dir DIR` reads as is, so one DIR can be copied to a test host. Keys are
written 0600 and never printed; the commands print only paths and identities.
cryptography loads when one of these commands runs, not when stackctl starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stack.cli import commands as table
from stack.cli import render
from stack.cli.errors import CommandError
from stack.cli.options import options_of
from stack.cli.params import option

_INIT = table.BY_NAME["certs init"]
_ISSUE = table.BY_NAME["certs issue"]

certs_app = typer.Typer(
    name="certs",
    help=table.GROUPS["certs"],
    no_args_is_help=True,
)

DaysOption = Annotated[int | None, option(_INIT.param("days"), min=1)]


def init(
    ctx: typer.Context,
    directory: Annotated[Path, option(_INIT.param("directory"))],
    controller_names: Annotated[list[str], option(_INIT.param("controller_names"))],
    days: DaysOption = None,
) -> None:
    """Create DIR's CA and the controller certificate (localhost and 127.0.0.1 included)."""
    from stack.security.certs import LEAF_DAYS, CertError, init_dir

    try:
        ca_path, cert_path = init_dir(directory, controller_names, days or LEAF_DAYS)
    except CertError as exc:
        raise CommandError(str(exc)) from None
    _report(ctx, "controller", "controller", cert_path, ca=str(ca_path))


def issue(
    ctx: typer.Context,
    directory: Annotated[Path, option(_ISSUE.param("directory"))],
    role: Annotated[str, option(_ISSUE.param("role"))],
    name: Annotated[str, option(_ISSUE.param("name"))],
    days: DaysOption = None,
    force: Annotated[bool, option(_ISSUE.param("force"))] = False,
    controller_names: Annotated[list[str] | None, option(_ISSUE.param("controller_names"))] = None,
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
    _report(ctx, role, name, cert_path)


def _report(ctx: typer.Context, role: str, name: str, cert_path: Path, **extra: str) -> None:
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
    options = options_of(ctx)
    if options.structured:
        options.print(document)
        return
    if "ca" in extra:
        render.print_text(f"CA: {extra['ca']}")
    render.print_text(
        f"{role} {name}: {document['certificate']} (key {document['key']}, 0600), "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    )


certs_app.command("init")(init)
certs_app.command("issue")(issue)


def register(app: typer.Typer) -> None:
    app.add_typer(certs_app)
