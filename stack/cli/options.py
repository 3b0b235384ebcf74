"""The global options every stackctl command sees, and the client they open.

`--controller`, `-o/--output`, `--tls-dir`, `--cert-name`, `--ca`, `--cert` and `--key`
(also from STACK_CONTROLLER, STACK_TLS_DIR, STACK_CERT_NAME, STACK_CA, STACK_CERT and
STACK_KEY) are accepted before or after the command and end up in one `GlobalOptions`,
made by stack.cli.direct from the command line or by the typer app's callback (then
`options_of(ctx)` finds it). Each command gets it first, and opens its one client with
`options.connect()`.

Cheap to import: grpc loads only when a client is opened, and the TLS files (with
cryptography) are read and checked only when TLS options were given and a command talks
to the controller, so `certs init` works without them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stack.security.local import check_addresses, default_address

if TYPE_CHECKING:
    import typer

    from stack.cli.client import ClientSettings, StackClient
    from stack.security.tls import TlsMaterial


class OutputFormat(enum.StrEnum):
    """How commands print their result."""

    text = "text"
    wide = "wide"
    json = "json"
    yaml = "yaml"


@dataclass(frozen=True)
class GlobalOptions:
    """What the global options of one invocation asked for."""

    controller: str
    """The controller's AdminService address: unix:PATH or HOST:PORT (or several)."""
    output: OutputFormat = OutputFormat.text
    """Text for people (`wide`: every column) or a document for programs (JSON, YAML)."""
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

    @property
    def structured(self) -> bool:
        """A document for programs (JSON or YAML) rather than text."""
        return self.output in (OutputFormat.json, OutputFormat.yaml)

    @property
    def wide(self) -> bool:
        return self.output is OutputFormat.wide

    def tls(self) -> TlsMaterial | None:
        """The checked TLS material, or None without TLS options; CommandError if unusable."""
        if not (self.tls_dir or self.ca or self.cert or self.key or self.cert_name):
            return None
        from stack.cli.errors import CommandError
        from stack.security.certs import Role
        from stack.security.tls import TlsError, load, resolve, user_pair

        try:
            files = resolve(
                self.tls_dir, self.ca, self.cert, self.key, user_pair(self.tls_dir, self.cert_name)
            )
            return None if files is None else load(files, (Role.admin, Role.viewer))
        except TlsError as exc:
            raise CommandError(str(exc)) from None

    def client_settings(self) -> ClientSettings:
        from stack.cli.client import ClientSettings

        return ClientSettings(address=self.controller, timeout=self.timeout, tls=self.tls())

    def connect(self) -> StackClient:
        """A client of the controller these options name."""
        from stack.cli.client import StackClient

        return StackClient(self.client_settings())

    def print(self, document: object) -> None:
        """`document` as the JSON or YAML that -o asked for."""
        from stack.cli.documents import print_document

        print_document(document, self.output.value)


def options_of(ctx: typer.Context) -> GlobalOptions:
    """The global options stored by the main callback (defaults when run alone)."""
    root = ctx.find_root()
    options = root.obj
    if isinstance(options, GlobalOptions):
        return options
    return GlobalOptions(controller=default_address())


def parse_address(value: str) -> str:
    """Check a unix:PATH or HOST:PORT option (or several, comma-separated); a bad one is
    a usage error."""
    try:
        return check_addresses(value)
    except ValueError as exc:
        import typer

        raise typer.BadParameter(str(exc)) from None
