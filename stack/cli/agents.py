"""`stackctl agents`, `drain` and `undrain`: the hosts the controller knows and their duty."""

from __future__ import annotations

import time

from stack.cli import render
from stack.cli.documents import to_json
from stack.cli.options import GlobalOptions
from stack.cli.waiting import wait_until_drained


def agents(options: GlobalOptions) -> None:
    """List agents: host, address, labels, state, processes, last seen, version, generation."""
    with options.connect() as client:
        reply = client.agents()
    if options.structured:
        options.print(to_json(reply))
    elif not reply.agents:
        render.print_text("no agents")
    else:
        render.stdout_console().print(render.agents_table(reply.agents, time.time()))


def drain(options: GlobalOptions, host: str, wait: bool = False, timeout: float = 60.0) -> None:
    """Move every process away from HOST (replacements run before originals stop)."""
    with options.connect() as client:
        reply = client.drain(host)
        render.answer(
            options, reply, f"draining {reply.host_id}: {reply.processes} processes to move"
        )
        if wait:
            wait_until_drained(client, host, timeout, quiet=options.structured)


def undrain(options: GlobalOptions, host: str) -> None:
    """Let HOST take processes again (nothing moves back on its own: see rebalance)."""
    with options.connect() as client:
        reply = client.drain(host, undo=True)
    render.answer(options, reply, f"{reply.host_id} takes processes again")
