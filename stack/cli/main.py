"""`stackctl`, the operator's CLI: global options, the command table, and exit codes.

Exit status 0 on success; 1 on failure, with one line `stackctl: <why>` on
stderr and no traceback; 2 on usage errors. Each command lives in the module
of its noun and talks to the controller only through `stack.cli.client`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from stack.cli import agents, certs, controllers, events, logs, stackfile, status, watcher
from stack.cli.client import CommandError
from stack.cli.options import (
    CaOption,
    CertNameOption,
    CertOption,
    GlobalOptions,
    KeyOption,
    OutputFormat,
    TlsDirOption,
    parse_address,
)
from stack.cli.terminal import safe
from stack.security.local import default_address

PROG = "stackctl"


def fail(message: str) -> typer.Exit:
    """Print `stackctl: message` on stderr; returns the Exit(1) to raise."""
    sys.stderr.write(f"{PROG}: {safe(message)}\n")
    sys.stderr.flush()
    return typer.Exit(1)


class StackctlGroup(TyperGroup):
    """The command group; turns a CommandError from any command into exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError as error:
            raise fail(str(error)) from None


app = typer.Typer(
    name=PROG,
    cls=StackctlGroup,
    help="Operate a Stack: processes and sockets across hosts, the Circus way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def global_options(
    ctx: typer.Context,
    controller: Annotated[
        str,
        typer.Option(
            "--controller",
            metavar="unix:PATH|HOST:PORT",
            envvar="STACK_CONTROLLER",
            callback=parse_address,
            help="The controller's address; by default the local controller's socket.",
        ),
    ] = default_address(),
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Text for people or JSON.")
    ] = OutputFormat.text,
    tls_dir: TlsDirOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    cert_name: CertNameOption = None,
) -> None:
    """stackctl [--controller unix:PATH|HOST:PORT] [-o text|json] [--tls-dir DIR] COMMAND"""
    ctx.obj = GlobalOptions(
        controller=controller,
        output=output,
        tls_dir=tls_dir,
        ca=ca,
        cert=cert,
        key=key,
        cert_name=cert_name,
    )


for module in (stackfile, status, watcher, logs, events, agents, controllers, certs):
    module.register(app)


def main() -> None:
    """The `stackctl` console script."""
    app(prog_name=PROG)


if __name__ == "__main__":
    main()
