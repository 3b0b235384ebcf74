"""`stackctl logs`: the tail of a watcher's output, and following it."""

from __future__ import annotations

from stack.cli import render
from stack.cli.documents import print_item, to_json
from stack.cli.options import GlobalOptions


def logs(
    options: GlobalOptions,
    watcher: str,
    follow: bool = False,
    lines: int = 20,
    stream: str | None = None,
    host: str = "",
    raw: bool = False,
) -> None:
    """Print a watcher's output lines, oldest first (`stream`: only `out` or `err`).

    -f keeps following, also across a controller restart or failover (Ctrl-C ends it);
    when no controller takes it back within 10 s it fails.
    """
    as_document = options.structured
    with options.connect() as client:
        with_host = not host and not as_document and len(client.agents().agents) > 1
        lines_stream = client.logs(watcher, lines, follow, stream or "", host)
        if as_document and not follow:
            options.print({"lines": [to_json(line) for line in lines_stream]})
            return
        try:
            for line in lines_stream:
                if as_document:
                    print_item(to_json(line), options.output.value)
                elif raw:
                    render.print_raw(render.raw_log_line(line, with_host))
                else:
                    render.print_text(render.log_line_text(line, with_host))
        except KeyboardInterrupt:
            lines_stream.close()
