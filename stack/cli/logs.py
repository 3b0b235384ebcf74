"""`stackctl logs`: the tail of a watcher's output, and following it."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from stack.cli import render
from stack.cli.options import open_client, options_of


class StreamChoice(enum.StrEnum):
    """Which output stream to show."""

    out = "out"
    err = "err"


def logs(
    ctx: typer.Context,
    watcher: Annotated[str, typer.Argument(metavar="WATCHER", show_default=False)],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, metavar="N", help="Lines of tail first.")
    ] = 20,
    stream: Annotated[
        StreamChoice | None, typer.Option("--stream", help="Only stdout or stderr.")
    ] = None,
    host: Annotated[str, typer.Option("--host", metavar="H", help="Only this host.")] = "",
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Write the output as the workers wrote it, escape sequences included "
            "(by default control characters are shown escaped, e.g. \\x1b).",
        ),
    ] = False,
) -> None:
    """Print a watcher's output lines, oldest first.

    -f keeps following, also across a controller restart or failover (Ctrl-C ends it);
    when no controller takes it back within 10 s it fails.
    """
    client = open_client(ctx)
    as_json = options_of(ctx).json
    with_host = not host and not as_json and len(client.agents().agents) > 1
    lines_stream = client.logs(watcher, lines, follow, stream.value if stream else "", host)
    if as_json and not follow:
        render.print_json({"lines": [render.to_json(line) for line in lines_stream]})
        return
    try:
        for line in lines_stream:
            if as_json:
                render.print_json_line(render.to_json(line))
            elif raw:
                render.print_raw(render.raw_log_line(line, with_host))
            else:
                render.print_text(render.log_line_text(line, with_host))
    except KeyboardInterrupt:
        lines_stream.close()


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
