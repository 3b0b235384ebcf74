"""`stackctl agents`: the hosts the controller knows and how they are doing."""

from __future__ import annotations

import time

import typer

from stack.cli import render
from stack.cli.options import open_client, options_of


def agents(ctx: typer.Context) -> None:
    """List agents: host, address, labels, state, processes, last seen, version, generation."""
    reply = open_client(ctx).agents()
    if options_of(ctx).json:
        render.print_json(render.to_json(reply))
    elif not reply.agents:
        render.print_text("no agents")
    else:
        render.stdout_console().print(render.agents_table(reply.agents, time.time()))


def register(app: typer.Typer) -> None:
    app.command("agents")(agents)
