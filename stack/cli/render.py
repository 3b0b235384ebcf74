"""stackctl's presentation with rich: tables, coloured lines and progress bars.

The presentation layer is this module and the rich-free ones beside it: the words
(stack.cli.formats: "3m12s", "12.3 MiB", "exit 1 (crashed)"), the documents of `-o json`
and `-o yaml` (stack.cli.documents) and the status page (stack.cli.status_view), which
must not pay rich's import. Here: the tables of stats, agents and controllers, log and
event lines, apply plans, and the progress bar of --wait on a terminal. The command
modules fetch data and decide; these modules only show.

Whatever came over the wire is shown through `stack.cli.terminal` (each renderer of a
message escapes it first), so a worker's or an agent's text never drives the terminal.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol

# Re-exported: callers of the presentation layer find its words and documents here too.
from stack.cli.documents import (  # noqa: F401
    print_json,
    print_json_line,
    stats_document,
    status_document,
    to_json,
)
from stack.cli.formats import (  # noqa: F401
    flapping_text,
    format_ago,
    format_bytes,
    format_duration,
    format_elapsed,
    format_last_exit,
    format_percent,
    format_timestamp,
    process_note,
    signal_name,
    state_name,
    watcher_note,
)
from stack.cli.terminal import escaped, safe
from stack.v1 import admin_pb2, types_pb2

if TYPE_CHECKING:  # rich loads when something is rendered with it, not on import
    from google.protobuf.message import Message
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from stack.cli.options import GlobalOptions

# Width used when stdout is not a terminal, so piped tables are not squeezed
# into 80 columns (rich tables only take the room they need).
PIPE_WIDTH = 240

# -- consoles ------------------------------------------------------------------


def stdout_console() -> Console:
    """A console on the current stdout (looked up now, so test runners can swap it)."""
    return _console(sys.stdout)


def stderr_console() -> Console:
    return _console(sys.stderr)


def _console(stream: Any) -> Console:
    from rich.console import Console

    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=PIPE_WIDTH, color_system=None)
    return console


def print_text(text: str | Text) -> None:
    """A line of text on stdout, never wrapped or highlighted. A `str` is escaped
    (see stack.cli.terminal) and written as is; a `Text` comes from a renderer here that
    escaped its parts, and goes through rich for its colours."""
    if isinstance(text, str):
        sys.stdout.write(safe(text) + "\n")
        sys.stdout.flush()
        return
    stdout_console().print(text, soft_wrap=True, markup=False, highlight=False)


def answer(options: GlobalOptions, reply: Message, line: str) -> None:
    """What a command that acts says: its reply as the document -o json or yaml asks
    for, else `line`."""
    if options.structured:
        options.print(to_json(reply))
    else:
        print_text(line)


def print_raw(text: str) -> None:
    """`text` and a newline on stdout exactly as given: control characters included."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- tables and lines --------------------------------------------------------------

# Columns that may wrap on a narrow terminal rather than lose their text.
_WRAPPING = ("LAST EXIT", "MESSAGE", "LABELS")


def _table(*columns: str, right: Sequence[str] = ()) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        justify: Literal["left", "right"] = "right" if column in right else "left"
        wraps = column in _WRAPPING
        table.add_column(
            column, justify=justify, no_wrap=not wraps, min_width=len(column) if wraps else None
        )
    return table


def controllers_table(reply: admin_pb2.ControllersReply) -> Table:
    """One row per controller: id, address, leader or follower, version."""
    table = _table("CONTROLLER", "ADDRESS", "ROLE", "VERSION")
    for info in escaped(reply).controllers:
        role = "leader" if info.leader else "follower"
        table.add_row(info.controller_id, info.address, role, info.version)
    return table


def members_table(reply: admin_pb2.ControllersReply) -> Table:
    """One row per store member (etcd endpoint, or the SQLite file) and its health."""
    table = _table("STORE MEMBER", "HEALTH", "ERROR")
    for member in escaped(reply).members:
        table.add_row(member.endpoint, "ok" if member.healthy else "unreachable", member.error)
    return table


def stats_table(reply: admin_pb2.StatusReply, host: str = "") -> Table:
    """Per process cpu, memory, fds and children, and a total row per watcher."""
    from rich.text import Text

    table = _table(
        "WATCHER",
        "WID",
        "HOST",
        "PID",
        "CPU",
        "MEM",
        "FDS",
        "CHILDREN",
        right=("WID", "PID", "CPU", "MEM", "FDS", "CHILDREN"),
    )
    for watcher in stats_document(escaped(reply), host)["watchers"]:
        for p in watcher["processes"]:
            table.add_row(
                watcher["name"],
                str(p["wid"]),
                p["host_id"] or "-",
                str(p["pid"]),
                format_percent(p["cpu_percent"]),
                format_bytes(p["rss_bytes"]),
                str(p["num_fds"]),
                str(p["num_children"]),
            )
        total = watcher["total"]
        table.add_row(
            Text(f"{watcher['name']} total", style="bold"),
            "",
            "",
            str(len(watcher["processes"])),
            format_percent(total["cpu_percent"]),
            format_bytes(total["rss_bytes"]),
            str(total["num_fds"]),
            str(total["num_children"]),
            end_section=True,
        )
    return table


def agents_table(agents: Sequence[admin_pb2.AgentInfo], now: float) -> Table:
    from rich.text import Text

    table = _table(
        "HOST",
        "ADDRESS",
        "LABELS",
        "STATE",
        "PROCESSES",
        "LAST SEEN",
        "VERSION",
        "RE-EXECUTED",
        "GENERATION",
        right=("PROCESSES", "GENERATION"),
    )
    for agent in map(escaped, agents):
        labels = ",".join(f"{k}={v}" for k, v in sorted(agent.labels.items()))
        state_style = {"ready": "green", "reloading": "yellow"}.get(agent.state, "red")
        table.add_row(
            agent.host_id,
            agent.address or "-",
            labels or "-",
            Text(agent.state or "-", style=state_style),
            str(agent.processes),
            format_ago(agent.last_seen, now),
            agent.version or "-",
            format_ago(agent.reexecuted_at, now),
            str(agent.generation),
        )
    return table


_PREFIX_COLOURS = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta")


def _colour_for(key: str) -> str:
    return _PREFIX_COLOURS[zlib.crc32(key.encode()) % len(_PREFIX_COLOURS)]


def log_line_text(line: types_pb2.LogLine, with_host: bool) -> Text:
    """`2026-11-29 01:02:03 webapp[2] text` (host first when several hosts speak)."""
    from rich.text import Text

    line = escaped(line)
    source = f"{line.watcher}[{line.wid}]"
    if with_host:
        source = f"{line.host_id} {source}"
    text = Text(f"{format_timestamp(line.at)} ", style="dim")
    text.append(source, style=_colour_for(source) + (" italic" if line.stream == "err" else ""))
    text.append(" ")
    text.append(line.text)
    return text


def raw_log_line(line: types_pb2.LogLine, with_host: bool) -> str:
    """`logs --raw`: the line as `log_line_text` shows it, but the worker's text unescaped
    (the operator asked for it) and without colours; the prefix is still escaped."""
    source = safe(f"{line.watcher}[{line.wid}]")
    if with_host:
        source = f"{safe(line.host_id)} {source}"
    return f"{format_timestamp(line.at)} {source} {line.text}"


_SEVERITY_STYLE = {
    types_pb2.Severity.SEVERITY_WARNING: "yellow",
    types_pb2.Severity.SEVERITY_ERROR: "red",
}


def event_text(event: types_pb2.Event) -> Text:
    """`time  host  watcher[wid]  kind  message`."""
    from rich.text import Text

    event = escaped(event)
    about = event.watcher or "-"
    if event.watcher and event.wid:
        about = f"{event.watcher}[{event.wid}]"
    text = Text(f"{format_timestamp(event.at)}  ", style="dim")
    text.append(f"{event.host_id or '-'}  {about}  ")
    text.append(event.kind or "-", style=_SEVERITY_STYLE.get(event.severity, "bold"))
    text.append(f"  {event.message}")
    return text


def change_lines(changes: Sequence[admin_pb2.Change]) -> list[Text]:
    """An apply's changes like a diff: `+ watcher ticker`, `~ watcher webapp` + details."""
    from rich.text import Text

    symbols = {"add": ("+", "green"), "remove": ("-", "red")}
    lines: list[Text] = []
    for change in map(escaped, changes):
        symbol, style = symbols.get(change.op, ("~", "yellow"))
        head = f"{symbol} {change.kind} {change.name}"
        details = list(change.details)
        if change.op == "scale":
            head += " (scale)"
            if len(details) == 1:
                head += f" {details.pop()}"
        if change.replaces:
            head += " (replaces its workers)"
        lines.append(Text(head, style=style))
        lines.extend(Text(f"    {detail}") for detail in details)
    return lines


def warning_lines(warnings: Sequence[str]) -> list[Text]:
    """`warning: ...` for each of an apply's warnings."""
    from rich.text import Text

    return [Text(f"warning: {safe(warning)}", style="yellow") for warning in warnings]


def _names(kind: str, names: Sequence[str]) -> str:
    return f"{kind}{'s' if len(names) > 1 else ''} {', '.join(names)}"


def plan_risks(changes: Sequence[admin_pb2.Change]) -> str:
    """What an apply's plan takes away, in words, or "" when it takes nothing away:
    `remove watcher b and socket s, and replace the workers of watcher a`."""
    removed = [
        _names(kind, names)
        for kind in ("watcher", "socket")
        if (names := [safe(c.name) for c in changes if c.op == "remove" and c.kind == kind])
    ]
    replaced = [safe(c.name) for c in changes if c.replaces]
    parts = [f"remove {' and '.join(removed)}"] if removed else []
    if replaced:
        parts.append(f"replace the workers of {_names('watcher', replaced)}")
    return ", and ".join(parts)


def apply_outcome(reply: admin_pb2.ApplyReply, dry_run: bool) -> str:
    if not reply.changes:
        return "no changes"
    if dry_run:
        return "dry run: nothing applied"
    if reply.applied:
        return f"applied (generation {reply.generation})"
    return "nothing applied"


# -- waiting ---------------------------------------------------------------------


class WaitDisplay(Protocol):
    def update(self, done: int, total: int, text: str, elapsed: float) -> None:
        """Where the wait stands `elapsed` seconds in: `done` of `total`, and in words."""


class _NoDisplay:
    def update(self, done: int, total: int, text: str, elapsed: float) -> None:
        return None


class _StepLines:
    """Each new step on a line of its own on stdout, with the time since the start."""

    def __init__(self) -> None:
        self._last = ""

    def update(self, done: int, total: int, text: str, elapsed: float) -> None:
        if text and text != self._last:
            self._last = text
            print_text(f"{text} ({format_elapsed(elapsed)})")


class _BarDisplay:
    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    def update(self, done: int, total: int, text: str, elapsed: float) -> None:
        self._progress.update(self._task, completed=done, total=max(total, 1))


@contextmanager
def wait_display(description: str, quiet: bool = False) -> Iterator[WaitDisplay]:
    """How a wait shows its steps: each on its own line on stdout when stdout is not a
    terminal (a log, a pipe, CI), a progress bar on stderr when that is a terminal,
    nothing with `quiet` (a document on stdout must stay parseable)."""
    if quiet:
        yield _NoDisplay()
        return
    if not sys.stdout.isatty():
        yield _StepLines()
        return
    console = stderr_console()
    if not console.is_terminal:
        yield _NoDisplay()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield _BarDisplay(progress, description)
