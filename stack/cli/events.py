"""`stackctl events`: recent events (spawns, exits, flapping, ...) and following new ones."""

from __future__ import annotations

from typing import Annotated

import typer

from stack.cli import commands as table
from stack.cli import render
from stack.cli.documents import print_item, to_json
from stack.cli.options import open_client, options_of
from stack.cli.params import option

_EVENTS = table.BY_NAME["events"]


def events(
    ctx: typer.Context,
    follow: Annotated[bool, option(_EVENTS.param("follow"))] = False,
    watcher: Annotated[str, option(_EVENTS.param("watcher"))] = "",
    lines: Annotated[int, option(_EVENTS.param("lines"), min=0)] = 20,
) -> None:
    """Print events: time, host, watcher and worker id, kind, message.

    -f keeps following, also across a controller restart or failover (Ctrl-C ends it);
    when no controller takes it back within 10 s it fails.
    """
    options = options_of(ctx)
    stream = open_client(ctx).events(follow, watcher, lines)
    if options.structured and not follow:
        options.print({"events": [to_json(event) for event in stream]})
        return
    try:
        for event in stream:
            if options.structured:
                print_item(to_json(event), options.output.value)
            else:
                render.print_text(render.event_text(event))
    except KeyboardInterrupt:
        stream.close()


def register(app: typer.Typer) -> None:
    app.command("events")(events)
