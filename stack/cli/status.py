"""Read commands about processes: status (state, uptime, last exit) and stats (resources).

`status` must be quick (it is what people type most): it loads grpc and protobuf, and
neither typer nor rich; its page is stack.cli.status_view.
"""

from __future__ import annotations

import time

from stack.cli.options import GlobalOptions


def status(
    options: GlobalOptions, watcher: str = "", host: str = "", summary: bool = False
) -> None:
    """Show each watcher and its processes: state, uptime, restarts, why."""
    with options.connect() as client:
        reply = client.status(watcher)
    if options.structured:
        from stack.cli.documents import status_document

        options.print(status_document(reply, host))
        return
    from stack.cli.status_view import print_status, terminal_layout

    print_status(reply, time.time(), terminal_layout(options.wide, summary), host)


def stats(options: GlobalOptions, watcher: str = "", host: str = "") -> None:
    """Show cpu, memory, fds and children per process, with totals per watcher."""
    from stack.cli import render
    from stack.cli.documents import stats_document

    with options.connect() as client:
        reply = client.status(watcher)
    if options.structured:
        options.print(stats_document(reply, host))
    else:
        render.stdout_console().print(render.stats_table(reply, host))
