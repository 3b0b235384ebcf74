"""The global options every stackctl command sees.

`stackctl [--controller HOST:PORT] [-o text|json] [TLS options] COMMAND`: the
main callback parses them into `GlobalOptions` and stores it on the typer
context; a command reads it back with `options_of(ctx)` and opens its one
client with `open_client(ctx)`. The TLS options (also from STACK_TLS_DIR,
STACK_CA, STACK_CERT, STACK_KEY and STACK_CERT_NAME) are read and checked only
when a command talks to the controller, so `certs init` works without them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from stack.cli.client import ClientSettings, CommandError, StackClient
from stack.security.certs import Role
from stack.security.local import check_addresses, default_address
from stack.security.tls import TlsError, TlsMaterial, load, resolve, user_pair


class OutputFormat(enum.StrEnum):
    """How commands print their result."""

    text = "text"
    json = "json"


@dataclass(frozen=True)
class GlobalOptions:
    """What the global options of one invocation asked for."""

    controller: str
    """The controller's AdminService address: unix:PATH or HOST:PORT (or several)."""
    output: OutputFormat = OutputFormat.text
    """Text for people (rich tables) or JSON for programs."""
    timeout: float = 10.0
    """Deadline in seconds for each unary call."""
    tls_dir: Path | None = None
    """A directory written by `stackctl certs` (CA, users/NAME.crt and .key)."""
    ca: Path | None = None
    """The CA that signed the controller's certificate (overrides the dir's)."""
    cert: Path | None = None
    """Our certificate (overrides the dir's)."""
    key: Path | None = None
    """Our private key (overrides the dir's)."""
    cert_name: str | None = None
    """Which users/NAME certificate of the dir to present (default: the admin one)."""

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.json

    def tls(self) -> TlsMaterial | None:
        """The checked TLS material, or None without TLS options; CommandError if unusable."""
        try:
            files = resolve(
                self.tls_dir, self.ca, self.cert, self.key, user_pair(self.tls_dir, self.cert_name)
            )
            return None if files is None else load(files, (Role.admin, Role.viewer))
        except TlsError as exc:
            raise CommandError(str(exc)) from None

    def client_settings(self) -> ClientSettings:
        return ClientSettings(address=self.controller, timeout=self.timeout, tls=self.tls())


def options_of(ctx: typer.Context) -> GlobalOptions:
    """The global options stored by the main callback (defaults when run alone)."""
    root = ctx.find_root()
    options = root.obj
    if isinstance(options, GlobalOptions):
        return options
    return GlobalOptions(controller=default_address())


def open_client(ctx: typer.Context) -> StackClient:
    """The invocation's one client; closed when the command's context closes."""
    client = StackClient(options_of(ctx).client_settings())
    ctx.call_on_close(client.close)
    return client


def parse_address(value: str) -> str:
    """Check a unix:PATH or HOST:PORT option (or several, comma-separated); a bad one is
    a usage error."""
    try:
        return check_addresses(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _path_option(flag: str, envvar: str, help_text: str) -> Any:
    """A typer option for a file or directory path, also read from `envvar`."""
    return typer.Option(flag, envvar=envvar, metavar="PATH", show_default=False, help=help_text)


TlsDirOption = Annotated[
    Path | None,
    _path_option("--tls-dir", "STACK_TLS_DIR", "Use mutual TLS with this `stackctl certs` dir."),
]
CaOption = Annotated[Path | None, _path_option("--ca", "STACK_CA", "CA certificate (PEM).")]
CertOption = Annotated[Path | None, _path_option("--cert", "STACK_CERT", "Our certificate (PEM).")]
KeyOption = Annotated[Path | None, _path_option("--key", "STACK_KEY", "Our private key (PEM).")]
CertNameOption = Annotated[
    str | None,
    typer.Option(
        "--cert-name",
        envvar="STACK_CERT_NAME",
        metavar="NAME",
        show_default=False,
        help="Present users/NAME.crt of --tls-dir (default: the admin certificate).",
    ),
]
