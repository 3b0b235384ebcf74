"""The typer app: every stackctl command, its parsing and its usage errors.

stack.cli.main runs it for every command line it does not answer itself (help, version,
completion, the fast `status`), with the global options moved in front of the command,
where the callback below parses them. Each command lives in the module of its noun and
talks to the controller only through `stack.cli.client`. Typer shows no rich panels here:
its usage errors are click's plain ones (`Error: No such command 'stauts'.`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from stack.cli import agents, certs, commands, controllers, events, logs, stackfile, status, watcher
from stack.cli.errors import CommandError
from stack.cli.options import GlobalOptions, OutputFormat, parse_address
from stack.cli.params import argument, option
from stack.cli.terminal import safe
from stack.security.local import default_address

PROG = commands.PROG


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
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def global_options(
    ctx: typer.Context,
    controller: Annotated[
        str, option(commands.CONTROLLER, callback=parse_address)
    ] = default_address(),
    output: Annotated[OutputFormat, option(commands.OUTPUT)] = OutputFormat.text,
    tls_dir: Annotated[Path | None, option(commands.TLS_DIR)] = None,
    ca: Annotated[Path | None, option(commands.CA)] = None,
    cert: Annotated[Path | None, option(commands.CERT)] = None,
    key: Annotated[Path | None, option(commands.KEY)] = None,
    cert_name: Annotated[str | None, option(commands.CERT_NAME)] = None,
) -> None:
    """stackctl [OPTIONS] COMMAND: global options go before or after the command."""
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


@app.command("completion")
def completion(
    shell: Annotated[str, argument(commands.BY_NAME["completion"].param("shell"))],
) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from stack.cli.completion import SCRIPTS

    if shell not in SCRIPTS:
        raise typer.BadParameter(f"{shell!r} is not one of bash, zsh, fish", param_hint="SHELL")
    typer.echo(SCRIPTS[shell], nl=False)


def run(argv: list[str]) -> None:
    """Parse `argv` (global options first) and run its command; exits."""
    app(args=argv, prog_name=PROG)
