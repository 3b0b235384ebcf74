"""`stackctl events`: recent events (spawns, exits, flapping, ...) and following new ones."""

from __future__ import annotations

from stack.cli import render
from stack.cli.documents import print_item, to_json
from stack.cli.options import GlobalOptions


def events(
    options: GlobalOptions, follow: bool = False, watcher: str = "", lines: int = 20
) -> None:
    """Print events: time, host, watcher and worker id, kind, message.

    -f keeps following, also across a controller restart or failover (Ctrl-C ends it);
    when no controller takes it back within 10 s it fails.
    """
    with options.connect() as client:
        stream = client.events(follow, watcher, lines)
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
