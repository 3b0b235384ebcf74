"""The typer app: stackctl's commands as typer parses them, made from the command table.

stack.cli.main hands typer what stack.cli.direct leaves to it: a command line that is not
plainly well formed (a typo, a missing or bad value, an unknown option), or an unknown
command. Typer then says what is wrong the way it does (`Error: No such command 'stauts'.
Did you mean 'status'?`), with exit status 2, or runs the command. Each typer command is
made here from its entry in stack.cli.commands (flags, metavars, help, kinds, defaults)
and calls the same function as the direct path, with the global options typer parsed in
the callback. Typer shows no rich panels here: its messages are click's plain ones.
"""

from __future__ import annotations

import enum
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from stack.cli import commands as table
from stack.cli.commands import Command, Param
from stack.cli.direct import implementation
from stack.cli.errors import CommandError, UsageError
from stack.cli.options import GlobalOptions, OutputFormat, options_of, parse_address
from stack.cli.params import argument, option
from stack.cli.terminal import safe
from stack.security.local import default_address

PROG = table.PROG


def fail(message: str) -> typer.Exit:
    """Print `stackctl: message` on stderr; returns the Exit(1) to raise."""
    sys.stderr.write(f"{PROG}: {safe(message)}\n")
    sys.stderr.flush()
    return typer.Exit(1)


class StackctlGroup(TyperGroup):
    """The command group: a CommandError from any command is exit 1 with its line (a
    UsageError is a usage error of its command, exit 2: see typer_command)."""

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
        str, option(table.CONTROLLER, callback=parse_address)
    ] = default_address(),
    output: Annotated[OutputFormat, option(table.OUTPUT)] = OutputFormat.text,
    tls_dir: Annotated[Path | None, option(table.TLS_DIR)] = None,
    ca: Annotated[Path | None, option(table.CA)] = None,
    cert: Annotated[Path | None, option(table.CERT)] = None,
    key: Annotated[Path | None, option(table.KEY)] = None,
    cert_name: Annotated[str | None, option(table.CERT_NAME)] = None,
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


# -- typer commands from the table ---------------------------------------------------------

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "path": Path}


def _annotation(param: Param) -> Any:
    """The Python type typer reads `param` as, with its typer parameter."""
    kind: Any
    if not param.takes_value:
        kind = bool
    elif param.kind == "choice":
        kind = _choices(param)
    else:
        kind = _TYPES[param.kind]
    if param.many:
        kind = list[kind]
    if param.default is None and not param.required:
        kind = kind | None
    extra = {"min": param.minimum} if param.minimum is not None else {}
    made = option(param, **extra) if param.flags else argument(param, **extra)
    return Annotated[kind, made]


def _choices(param: Param) -> Any:
    """An Enum of `param`'s choices: typer checks a value against them."""
    return enum.Enum(param.name, [(choice, choice) for choice in param.choices])


def _default(param: Param) -> Any:
    if param.required:
        return inspect.Parameter.empty
    return Path(str(param.default)) if param.kind == "path" and param.default else param.default


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def typer_command(command: Command) -> Callable[..., None]:
    """A function typer makes `command` from: its signature is the table's parameters."""

    def run(ctx: typer.Context, **values: Any) -> None:
        function = implementation(command)
        try:
            function(options_of(ctx), **{k: _plain(v) for k, v in values.items()})
        except UsageError as error:
            raise typer.BadParameter(str(error), ctx, param_hint=error.param or None) from None

    parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {"ctx": typer.Context, "return": None}
    for param in command.params:
        annotations[param.name] = _annotation(param)
        parameters.append(
            inspect.Parameter(
                param.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=_default(param),
                annotation=annotations[param.name],
            )
        )
    parameters[0] = parameters[0].replace(annotation=typer.Context)
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = annotations
    run.__name__ = command.name.replace(" ", "_")
    run.__doc__ = command.summary
    return run


def _register() -> None:
    groups: dict[str, typer.Typer] = {}
    for command in table.COMMANDS:
        group, _, sub = command.name.rpartition(" ")
        target = app
        if group:
            if group not in groups:
                groups[group] = typer.Typer(name=group, help=table.GROUPS[group],
                                            no_args_is_help=True)  # fmt: skip
                app.add_typer(groups[group])
            target = groups[group]
        settings = {"ignore_unknown_options": True} if command.negative_numbers else {}
        target.command(sub, context_settings=settings)(typer_command(command))


_register()


def run(argv: list[str]) -> None:
    """Parse `argv` (global options first) and run its command; exits."""
    app(args=argv, prog_name=PROG)
