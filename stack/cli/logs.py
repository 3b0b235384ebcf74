"""`stackctl logs`: the tail of a watcher's output, and following it."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from stack.cli import commands as table
from stack.cli import render
from stack.cli.documents import print_item, to_json
from stack.cli.options import open_client, options_of
from stack.cli.params import argument, option

_LOGS = table.BY_NAME["logs"]


class StreamChoice(enum.StrEnum):
    """Which output stream to show."""

    out = "out"
    err = "err"


def logs(
    ctx: typer.Context,
    watcher: Annotated[str, argument(_LOGS.param("watcher"))],
    follow: Annotated[bool, option(_LOGS.param("follow"))] = False,
    lines: Annotated[int, option(_LOGS.param("lines"), min=0)] = 20,
    stream: Annotated[StreamChoice | None, option(_LOGS.param("stream"))] = None,
    host: Annotated[str, option(_LOGS.param("host"))] = "",
    raw: Annotated[bool, option(_LOGS.param("raw"))] = False,
) -> None:
    """Print a watcher's output lines, oldest first.

    -f keeps following, also across a controller restart or failover (Ctrl-C ends it);
    when no controller takes it back within 10 s it fails.
    """
    options = options_of(ctx)
    client = open_client(ctx)
    as_document = options.structured
    with_host = not host and not as_document and len(client.agents().agents) > 1
    lines_stream = client.logs(watcher, lines, follow, stream.value if stream else "", host)
    if as_document and not follow:
        options.print({"lines": [to_json(line) for line in lines_stream]})
        return
    try:
        for line in lines_stream:
            if as_document:
                print_item(to_json(line), options.output.value)
            elif raw:
                render.print_raw(render.raw_log_line(line, with_host))
            else:
                render.print_text(render.log_line_text(line, with_host))
    except KeyboardInterrupt:
        lines_stream.close()


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
