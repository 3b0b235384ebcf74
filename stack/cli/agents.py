"""`stackctl agents`, `drain` and `undrain`: the hosts the controller knows and their duty."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from stack.cli import render
from stack.cli.options import open_client, options_of
from stack.cli.waiting import wait_until_drained


def agents(ctx: typer.Context) -> None:
    """List agents: host, address, labels, state, processes, last seen, version, generation."""
    reply = open_client(ctx).agents()
    if options_of(ctx).json:
        render.print_json(render.to_json(reply))
    elif not reply.agents:
        render.print_text("no agents")
    else:
        render.stdout_console().print(render.agents_table(reply.agents, time.time()))


HostArg = Annotated[str, typer.Argument(metavar="HOST", show_default=False)]


def drain(
    ctx: typer.Context,
    host: HostArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the host runs nothing.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait.")] = 60.0,
) -> None:
    """Move every process away from HOST (replacements run before originals stop)."""
    client = open_client(ctx)
    reply = client.drain(host)
    if options_of(ctx).json:
        render.print_json(render.to_json(reply))
    else:
        render.print_text(f"draining {reply.host_id}: {reply.processes} processes to move")
    if wait:
        wait_until_drained(client, host, timeout)


def undrain(ctx: typer.Context, host: HostArg) -> None:
    """Let HOST take processes again (nothing moves back on its own: see rebalance)."""
    reply = open_client(ctx).drain(host, undo=True)
    if options_of(ctx).json:
        render.print_json(render.to_json(reply))
    else:
        render.print_text(f"{reply.host_id} takes processes again")


def register(app: typer.Typer) -> None:
    app.command("agents")(agents)
    app.command("drain")(drain)
    app.command("undrain")(undrain)
