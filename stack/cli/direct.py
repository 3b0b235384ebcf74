"""Commands run without typer: a well-formed command line is parsed from the table.

Importing typer costs about as much as the whole of `circusctl status`, and parsing with
it loads pydantic, as much again; grpc, which a command that talks to the controller
cannot do without, costs as much once more. So a command line whose every part is plain
(known options with valid values, the arguments the command takes, valid global
options) is parsed here, from the command table's entries, and its command is run at
once. Anything else, an unknown option, a missing or bad value, a number written
unusually, goes to typer (stack.cli.app), which parses it again and says what is wrong
the way it does; so does a UsageError the command raises before it changes anything.
Both ways call the same function with the same values (a unit test parses command lines
both ways and compares).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from stack.cli.cmdline import CommandLine
from stack.cli.commands import CA, CERT, CERT_NAME, CONTROLLER, KEY, OUTPUT, TLS_DIR, Command, Param
from stack.cli.errors import UsageError
from stack.cli.options import GlobalOptions, OutputFormat
from stack.security.local import check_addresses, default_address

_PLAIN_NUMBER = {"int": re.compile(r"[0-9]+"), "float": re.compile(r"[0-9]+(?:\.[0-9]+)?")}
"""The numbers taken here; others (`+5`, `1_000`, `1e3`) are typer's to judge."""


class _Unusual(Exception):
    """A part of the command line that typer should judge."""


def global_options(
    given: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> GlobalOptions | None:
    """The global options from their command-line values and the environment (as typer
    reads them: an empty variable counts as unset); None when one is not valid."""
    env = os.environ if environ is None else environ

    def value(param: Param) -> str | None:
        found = given.get(param.name)
        if found is None and param.envvar:
            found = env.get(param.envvar) or None
        return found

    try:
        controller = check_addresses(value(CONTROLLER) or default_address())
    except ValueError:
        return None
    output = value(OUTPUT) or OutputFormat.text.value
    if output not in OutputFormat.__members__:
        return None
    paths = {param.name: value(param) for param in (TLS_DIR, CA, CERT, KEY)}
    return GlobalOptions(
        controller=controller,
        output=OutputFormat(output),
        cert_name=value(CERT_NAME),
        **{name: _path(found) for name, found in paths.items() if found is not None},
    )


def _path(text: str) -> Any:
    from pathlib import Path  # (only with TLS files: a status without needs no pathlib)

    return Path(text)


def _value(param: Param, raw: str) -> Any:
    """`raw` as the command gets it; _Unusual when typer should judge it."""
    if param.kind in _PLAIN_NUMBER:
        if not _PLAIN_NUMBER[param.kind].fullmatch(raw):
            raise _Unusual
        number = int(raw) if param.kind == "int" else float(raw)
        if param.minimum is not None and number < param.minimum:
            raise _Unusual
        return number
    if param.kind == "choice" and raw not in param.choices:
        raise _Unusual
    return _path(raw) if param.kind == "path" else raw


def _option(command: Command, token: str) -> tuple[Param, str | None]:
    """The option `token` names, and the value written in it (`--lines=5`, `-n5`)."""
    if token.startswith("--"):
        flag, equals, inline = token.partition("=")
        param = command.option(flag)
        if param is None:
            raise _Unusual
        return param, inline if equals else None
    param = command.option(token[:2])
    if param is None or (len(token) > 2 and not param.takes_value):
        raise _Unusual  # unknown, or flags written together (-fn): typer's
    return param, token[2:] or None


def parse(command: Command, args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of `command`'s function for its part of the command line;
    None when something in it is for typer to judge."""
    try:
        return _parse(command, args)
    except _Unusual:
        return None


def _parse(command: Command, args: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    positional: list[str] = []
    i, options_end = 0, False
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--" and not options_end:
            options_end = True
            continue
        negative = command.negative_numbers and token[1:].isdigit()
        if options_end or not token.startswith("-") or token == "-" or negative:
            positional.append(token)
            continue
        param, inline = _option(command, token)
        if not param.takes_value:
            if inline is not None:
                raise _Unusual
            values[param.name] = True
            continue
        if inline is None:
            if i >= len(args):
                raise _Unusual
            inline, i = args[i], i + 1
        value = _value(param, inline)
        if param.many:
            values.setdefault(param.name, []).append(value)
        else:
            values[param.name] = value  # (given twice: the last one wins, as in typer)
    for param in command.arguments:
        if param.many:
            taken, positional = positional, []
            if taken:
                values[param.name] = [_value(param, raw) for raw in taken]
        elif positional:
            values[param.name] = _value(param, positional.pop(0))
    if positional:
        raise _Unusual  # more arguments than the command takes
    for param in command.params:
        if param.name not in values:
            if param.required:
                raise _Unusual
            default = param.default
            if param.many:
                default = []  # as typer hands over a repeatable parameter not given
            elif param.kind == "path" and default:
                default = _path(str(default))
            values[param.name] = default
    return values


def implementation(command: Command) -> Callable[..., None]:
    """The function that runs `command` (loaded when it runs)."""
    module, _, name = command.run.partition(":")
    function: Callable[..., None] = getattr(importlib.import_module(module), name)
    return function


def run(line: CommandLine) -> bool:
    """Run `line`'s command here if the line is plain; False to leave it to typer (then
    nothing has been done)."""
    command = line.command
    if command is None or line.before:
        return False
    options = global_options(line.globals)
    values = parse(command, line.args)
    if options is None or values is None:
        return False
    try:
        implementation(command)(options, **values)
    except UsageError:
        return False  # typer says it, as a usage error
    return True
