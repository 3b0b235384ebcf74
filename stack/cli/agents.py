"""`stackctl agents`, `drain` and `undrain`: the hosts the controller knows and their duty."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from stack.cli import commands as table
from stack.cli import render
from stack.cli.documents import to_json
from stack.cli.options import open_client, options_of
from stack.cli.params import argument, option
from stack.cli.waiting import wait_until_drained

_DRAIN = table.BY_NAME["drain"]


def agents(ctx: typer.Context) -> None:
    """List agents: host, address, labels, state, processes, last seen, version, generation."""
    options = options_of(ctx)
    reply = open_client(ctx).agents()
    if options.structured:
        options.print(to_json(reply))
    elif not reply.agents:
        render.print_text("no agents")
    else:
        render.stdout_console().print(render.agents_table(reply.agents, time.time()))


HostArg = Annotated[str, argument(table.HOST)]


def drain(
    ctx: typer.Context,
    host: HostArg,
    wait: Annotated[bool, option(_DRAIN.param("wait"))] = False,
    timeout: Annotated[float, option(_DRAIN.param("timeout"), min=0)] = 60.0,
) -> None:
    """Move every process away from HOST (replacements run before originals stop)."""
    options = options_of(ctx)
    client = open_client(ctx)
    reply = client.drain(host)
    if options.structured:
        options.print(to_json(reply))
    else:
        render.print_text(f"draining {reply.host_id}: {reply.processes} processes to move")
    if wait:
        wait_until_drained(client, host, timeout, quiet=options.structured)


def undrain(ctx: typer.Context, host: HostArg) -> None:
    """Let HOST take processes again (nothing moves back on its own: see rebalance)."""
    options = options_of(ctx)
    reply = open_client(ctx).drain(host, undo=True)
    if options.structured:
        options.print(to_json(reply))
    else:
        render.print_text(f"{reply.host_id} takes processes again")


def register(app: typer.Typer) -> None:
    app.command("agents")(agents)
    app.command("drain")(drain)
    app.command("undrain")(undrain)
