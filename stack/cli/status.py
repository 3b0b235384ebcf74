"""Read commands about processes: status (state, uptime, last exit) and stats (resources)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from stack.cli import render
from stack.cli.options import open_client, options_of

WatcherOptArg = Annotated[
    str, typer.Argument(metavar="WATCHER", help="Only this watcher.", show_default=False)
]
HostOpt = Annotated[str, typer.Option("--host", metavar="H", help="Only processes on this host.")]


def status(ctx: typer.Context, watcher: WatcherOptArg = "", host: HostOpt = "") -> None:
    """Show every process: state, uptime, restarts, resources and last exit."""
    reply = open_client(ctx).status(watcher)
    if options_of(ctx).json:
        render.print_json(render.status_document(reply, host))
    else:
        render.print_status(reply, time.time(), host)


def stats(ctx: typer.Context, watcher: WatcherOptArg = "", host: HostOpt = "") -> None:
    """Show cpu, memory, fds and children per process, with totals per watcher."""
    reply = open_client(ctx).status(watcher)
    if options_of(ctx).json:
        render.print_json(render.stats_document(reply, host))
    else:
        render.stdout_console().print(render.stats_table(reply, host))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("stats")(stats)
