"""`stackctl events`: recent events (spawns, exits, flapping, ...) and following new ones."""

from __future__ import annotations

from typing import Annotated

import typer

from stack.cli import render
from stack.cli.options import open_client, options_of


def events(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    watcher: Annotated[str, typer.Option("--watcher", metavar="W", help="Only this watcher.")] = "",
    lines: Annotated[
        int,
        typer.Option(
            "--lines", "-n", min=0, metavar="N", help="The last N events first (0: every one kept)."
        ),
    ] = 20,
) -> None:
    """Print events: time, host, watcher and worker id, kind, message.

    -f keeps following, also across a controller restart or failover (Ctrl-C ends it);
    when no controller takes it back within 10 s it fails.
    """
    stream = open_client(ctx).events(follow, watcher, lines)
    as_json = options_of(ctx).json
    if as_json and not follow:
        render.print_json({"events": [render.to_json(event) for event in stream]})
        return
    try:
        for event in stream:
            if as_json:
                render.print_json_line(render.to_json(event))
            else:
                render.print_text(render.event_text(event))
    except KeyboardInterrupt:
        stream.close()


def register(app: typer.Typer) -> None:
    app.command("events")(events)
