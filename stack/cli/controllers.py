"""`stackctl controllers`: every controller, which one leads, and the store's health."""

from __future__ import annotations

from stack.cli import render
from stack.cli.documents import to_json
from stack.cli.options import GlobalOptions


def controllers(options: GlobalOptions) -> None:
    """List controllers (leader or follower), the fencing token and the store's members."""
    with options.connect() as client:
        reply = client.controllers()
    if options.structured:
        options.print(to_json(reply))
        return
    console = render.stdout_console()
    console.print(render.controllers_table(reply))
    leader = reply.leader_address or "none (an election is going on)"
    render.print_text(f"leader: {leader}, fencing token {reply.fencing_token}")
    render.print_text(f"store: {reply.store}")
    console.print(render.members_table(reply))
