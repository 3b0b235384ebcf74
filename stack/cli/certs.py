"""`stackctl certs init` and `certs issue`: a CA and certificates for mutual TLS.

Works on local files only (no controller). The directory it writes is what
`--tls-dir DIR` reads as is, so one DIR can be copied to a test host. Keys are
written 0600 and never printed; the commands print only paths and identities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stack.cli import render
from stack.cli.client import CommandError
from stack.cli.options import options_of
from stack.security.certs import (
    LEAF_DAYS,
    CertError,
    Role,
    controller_hosts,
    init_dir,
    issue_into,
    load_cert,
)

certs_app = typer.Typer(
    name="certs",
    help="Create a CA and certificates for mutual TLS (local files, no controller).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path,
    typer.Option("--dir", metavar="DIR", help="The TLS directory (what --tls-dir reads)."),
]
DaysOption = Annotated[
    int, typer.Option("--days", min=1, help="Validity of the new certificate in days.")
]


def init(
    ctx: typer.Context,
    directory: DirOption,
    controller_names: Annotated[
        list[str],
        typer.Option(
            "--controller-name",
            metavar="NAME",
            help="A DNS name or IP agents and stackctl use for the controller (repeatable).",
        ),
    ],
    days: DaysOption = LEAF_DAYS,
) -> None:
    """Create DIR's CA and the controller certificate (localhost and 127.0.0.1 included)."""
    try:
        ca_path, cert_path = init_dir(directory, controller_names, days)
    except CertError as exc:
        raise CommandError(str(exc)) from None
    _report(ctx, "controller", "controller", cert_path, ca=str(ca_path))


def issue(
    ctx: typer.Context,
    directory: DirOption,
    role: Annotated[
        str,
        typer.Option(
            "--role", metavar="agent|admin|viewer|controller", help="What the holder may do."
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name", help="The host id (agent), the person or script's name, or `controller`."
        ),
    ],
    days: DaysOption = LEAF_DAYS,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing certificate (rotation).")
    ] = False,
    controller_names: Annotated[
        list[str] | None,
        typer.Option(
            "--controller-name",
            metavar="NAME",
            help="With --role controller: a DNS name or IP of the controller (repeatable).",
        ),
    ] = None,
) -> None:
    """Issue a certificate signed by DIR's CA: agent, admin, viewer, or a renewed controller's."""
    if role not in {Role.agent, Role.admin, Role.viewer, Role.controller}:
        raise CommandError(f"--role must be agent, admin, viewer or controller, not {role!r}")
    if controller_names and role != Role.controller:
        raise CommandError("--controller-name goes with --role controller only")
    hosts = controller_hosts(controller_names or []) if role == Role.controller else []
    try:
        cert_path = issue_into(directory, Role(role), name, days, hosts, replace=force)
    except CertError as exc:
        raise CommandError(str(exc)) from None
    _report(ctx, role, name, cert_path)


def _report(ctx: typer.Context, role: str, name: str, cert_path: Path, **extra: str) -> None:
    """Say what was written: paths and identity, never key material."""
    cert = load_cert(cert_path)
    document = {
        "role": role,
        "name": name,
        "certificate": str(cert_path),
        "key": str(cert_path.with_suffix(".key")),
        "not_after": cert.not_valid_after_utc.isoformat(),
        **extra,
    }
    if options_of(ctx).json:
        render.print_json(document)
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
