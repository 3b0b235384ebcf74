"""Read commands about processes: status (state, uptime, last exit) and stats (resources).

`status` usually runs without typer (stack.cli.direct); this typer command is the way in
for the command lines direct leaves to typer, and runs the same `show_status`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from stack.cli import commands as table
from stack.cli import render
from stack.cli.direct import show_status
from stack.cli.documents import stats_document
from stack.cli.options import open_client, options_of
from stack.cli.params import argument, option

_STATUS = table.BY_NAME["status"]
WatcherOptArg = Annotated[str, argument(table.ONLY_WATCHER)]
HostOpt = Annotated[str, option(table.HOST_FILTER)]


def status(
    ctx: typer.Context,
    watcher: WatcherOptArg = "",
    host: HostOpt = "",
    summary: Annotated[bool, option(_STATUS.param("summary"))] = False,
) -> None:
    """Show each watcher and its processes: state, uptime, restarts, why."""
    show_status(options_of(ctx), watcher, host, summary)


def stats(ctx: typer.Context, watcher: WatcherOptArg = "", host: HostOpt = "") -> None:
    """Show cpu, memory, fds and children per process, with totals per watcher."""
    options = options_of(ctx)
    reply = open_client(ctx).status(watcher)
    if options.structured:
        options.print(stats_document(reply, host))
    else:
        render.stdout_console().print(render.stats_table(reply, host))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("stats")(stats)
