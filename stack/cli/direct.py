"""What stackctl runs without typer: `status`, the command people type most.

Loading typer costs about as much as the whole of `circusctl status`, and grpc, which
status cannot do without, as much again; so `status` is parsed here, from the command
table's entries, and run at once. Only the plain forms are taken (its WATCHER, `--host
H`, `--summary` and valid global options); anything else, a typo or a bad value, goes to
typer as every other command does, so that usage errors read the same everywhere. The
typer `status` command runs `show_status` too: both ways print the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from stack.cli.cmdline import CommandLine
from stack.cli.commands import CA, CERT, CERT_NAME, CONTROLLER, KEY, OUTPUT, TLS_DIR, Param
from stack.cli.options import GlobalOptions, OutputFormat
from stack.security.local import check_addresses, default_address


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

    def path(param: Param) -> Path | None:
        found = value(param)
        return Path(found) if found is not None else None

    try:
        controller = check_addresses(value(CONTROLLER) or default_address())
    except ValueError:
        return None
    output = value(OUTPUT) or OutputFormat.text.value
    if output not in OutputFormat.__members__:
        return None
    return GlobalOptions(
        controller=controller,
        output=OutputFormat(output),
        tls_dir=path(TLS_DIR),
        ca=path(CA),
        cert=path(CERT),
        key=path(KEY),
        cert_name=value(CERT_NAME),
    )


def status_arguments(args: list[str]) -> tuple[str, str, bool] | None:
    """(watcher, host, summary) from status's own part; None for anything unusual."""
    watcher, host, summary = "", "", False
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--summary":
            summary = True
        elif token.startswith("--host="):
            host = token.split("=", 1)[1]
        elif token == "--host" and i < len(args):
            host, i = args[i], i + 1
        elif token.startswith("-"):
            return None
        else:
            positional.append(token)
    if len(positional) > 1:
        return None
    if positional:
        watcher = positional[0]
    return watcher, host, summary


def show_status(options: GlobalOptions, watcher: str, host: str, summary: bool) -> None:
    """`stackctl status`: fetch and print (CommandError when the controller fails)."""
    client = options.connect()
    try:
        reply = client.status(watcher)
    finally:
        client.close()
    if options.structured:
        from stack.cli.documents import status_document

        options.print(status_document(reply, host))
        return
    from stack.cli.status_view import print_status, terminal_layout

    print_status(reply, time.time(), terminal_layout(options.wide, summary), host)


def run(line: CommandLine) -> bool:
    """Run `line` here if it is a plain `status`; False to leave it to typer."""
    if line.command is None or line.command.name != "status" or line.before:
        return False
    options = global_options(line.globals)
    arguments = status_arguments(line.args)
    if options is None or arguments is None:
        return False
    show_status(options, *arguments)
    return True
