"""The one presentation layer of stackctl.

Everything a person or a program reads comes from here: durations ("3m12s"),
sizes ("12.3 MiB"), the last-exit text ("exit 1 (crashed)"), rich tables for
status, stats and agents, log and event lines, and JSON documents with stable
snake_case keys (enum values as lowercase names without their prefix, e.g.
"running"). The command modules fetch data and decide; this module only shows.

Whatever came over the wire is shown through `stack.cli.terminal` (each renderer of a
message escapes it first), so a worker's or an agent's text never drives the terminal.
"""

from __future__ import annotations

import json
import math
import re
import signal
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from stack.cli.terminal import escaped, safe
from stack.v1 import admin_pb2, types_pb2

PS = types_pb2.ProcessState
ER = types_pb2.ExitReason
WP = types_pb2.WatcherPhase
HL = types_pb2.Health

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
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=PIPE_WIDTH, color_system=None)
    return console


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def print_json_line(document: Any) -> None:
    """One compact JSON document per line (for streams that follow)."""
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def print_text(text: str | Text) -> None:
    """A line of text on stdout, never wrapped or highlighted. A `str` is escaped
    (see stack.cli.terminal); a `Text` comes from a renderer here that escaped its parts."""
    shown = safe(text) if isinstance(text, str) else text
    stdout_console().print(shown, soft_wrap=True, markup=False, highlight=False)


def print_raw(text: str) -> None:
    """`text` and a newline on stdout exactly as given: control characters included."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- pure formatting -------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """A short human duration: `45s`, `3m12s`, `2h05m`, `3d04h`."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_bytes(count: int) -> str:
    """Binary units with one decimal: `512 B`, `12.3 MiB`."""
    if count < 1024:
        return f"{max(count, 0)} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024.0
        if value < 1024.0 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_ago(at: float, now: float) -> str:
    """`3s ago` for a unix time in the past; `never` for 0."""
    if at <= 0:
        return "never"
    return f"{format_duration(now - at)} ago"


def format_timestamp(at: float) -> str:
    """`2026-11-29 01:02:03` in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def format_percent(value: float) -> str:
    return f"{value:.1f}%"


def signal_name(number: int) -> str:
    """`SIGKILL` for 9; `signal 99` for a number this system does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_REASON_TEXT = {
    ER.EXIT_REASON_CRASHED: "crashed",
    ER.EXIT_REASON_STOPPED: "stopped by user",
    ER.EXIT_REASON_FLAPPING: "flapping",
    ER.EXIT_REASON_SPAWN_ERROR: "spawn error",
    ER.EXIT_REASON_KILLED: "killed",
    ER.EXIT_REASON_MAX_AGE: "max age",
    ER.EXIT_REASON_RESTARTED: "restarted",
    ER.EXIT_REASON_UNHEALTHY: "unhealthy",
}


def has_last_exit(process: types_pb2.ProcessStatus) -> bool:
    if not process.HasField("last_exit"):
        return False
    last = process.last_exit
    return bool(last.reason or last.code or last.signal or last.at or last.message)


def format_last_exit(last: types_pb2.LastExit | None) -> str:
    """`exit 1 (crashed)`, `SIGTERM (stopped by user)`, `spawn error: ...`; empty for none."""
    if last is None or not (last.reason or last.code or last.signal or last.at or last.message):
        return ""
    if last.reason == ER.EXIT_REASON_SPAWN_ERROR:
        message = last.message.removeprefix("spawn error: ")
        return f"spawn error: {message}" if message else "spawn error"
    head = signal_name(last.signal) if last.signal else f"exit {last.code}"
    if last.code_unknown:
        head = "exit status unknown"
    reason = _REASON_TEXT.get(last.reason, "")
    if last.reason == ER.EXIT_REASON_CRASHED and last.message:
        reason = f"{reason}, {last.message}" if reason else last.message
    if last.reason == ER.EXIT_REASON_UNHEALTHY and last.message:
        reason = f"{reason}: {last.message}"
    return f"{head} ({reason})" if reason else head


def flapping_text(retry_at: float, now: float) -> str:
    """`flapping, retry in 5s` from the unix time of the next retry."""
    remaining = math.ceil(retry_at - now)
    if remaining <= 0:
        return "flapping, retrying now"
    return f"flapping, retry in {format_duration(remaining)}"


_COUNTDOWN = re.compile(r"flapping, retry(?:ing now| in [0-9a-z]+)")


def watcher_note(watcher: admin_pb2.WatcherStatus, now: float) -> str:
    """What is special about a watcher: flapping (with a fresh countdown, and which
    workers when not all of them), fatal, ..."""
    retry_at = float(watcher.retry_at)
    if watcher.phase == WP.WATCHER_PHASE_FLAPPING:
        if retry_at > 0:
            fresh = flapping_text(retry_at, now)
            text, found = _COUNTDOWN.subn(lambda _: fresh, watcher.message, count=1)
            return text if found else fresh
        return watcher.message or "flapping"
    if watcher.phase == WP.WATCHER_PHASE_FATAL:
        if watcher.message.startswith("fatal"):
            return watcher.message
        return f"fatal: {watcher.message}" if watcher.message else "fatal"
    return watcher.message


def process_note(
    process: types_pb2.ProcessStatus, watcher: admin_pb2.WatcherStatus | None, now: float
) -> str:
    """The process's own message, with a fresh flapping countdown when one is known;
    for a process kept because its new version cannot start here, why."""
    if process.blocked:
        return f"kept, its new version cannot start: {process.blocked}"
    retry_at = float(watcher.retry_at) if watcher is not None else 0.0
    flapping = process.state == PS.PROCESS_STATE_BACKOFF or process.message.startswith("flapping")
    if flapping and retry_at > 0:
        return flapping_text(retry_at, now)
    if not process.message and process.health == HL.HEALTH_STARTING:
        return process.health_message  # why it is not healthy yet
    return process.message


# -- enums and JSON ----------------------------------------------------------------


def _enum_prefix(descriptor: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


def enum_name(descriptor: EnumDescriptor | None, number: int) -> str:
    """`running` for PROCESS_STATE_RUNNING: lowercase, without the type's prefix."""
    if descriptor is None:
        return str(number)
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    name = value.name
    prefix = _enum_prefix(descriptor)
    if name.startswith(prefix):
        name = name[len(prefix) :]
    return name.lower()


def state_name(state: int) -> str:
    return enum_name(PS.DESCRIPTOR, state)


def phase_name(phase: int) -> str:
    return enum_name(WP.DESCRIPTOR, phase)


def health_name(health: int) -> str:
    """`healthy`, `starting`, `unhealthy`; empty for a process without a check."""
    return "" if health == HL.HEALTH_UNSPECIFIED else enum_name(HL.DESCRIPTOR, health)


def _scalar(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    return value


def to_json(message: Message) -> dict[str, Any]:
    """A message as a dict with every field (proto field names, enums as names).

    Unlike MessageToDict, 64-bit integers stay numbers, enum values drop their
    prefix, and an unset sub-message is `null` rather than missing: the keys are
    the same whatever the values.
    """
    document: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            document[field.name] = {
                str(key): _scalar(value_field, item) for key, item in sorted(value.items())
            }
        elif field.is_repeated:
            document[field.name] = [_scalar(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(field.name):
            document[field.name] = None
        else:
            document[field.name] = _scalar(field, value)
    return document


def status_document(reply: admin_pb2.StatusReply, host: str = "") -> dict[str, Any]:
    """`status -o json`: {"generation", "watchers": [{..., "processes": [...]}]}."""
    document = to_json(reply)
    if host:
        for watcher in document["watchers"]:
            watcher["processes"] = [p for p in watcher["processes"] if p["host_id"] == host]
    return document


_STATS_KEYS = ("cpu_percent", "rss_bytes", "num_fds", "num_children")


def stats_document(reply: admin_pb2.StatusReply, host: str = "") -> dict[str, Any]:
    """`stats -o json`: per watcher its live processes' figures and their totals."""
    watchers = []
    for watcher in reply.watchers:
        processes: list[dict[str, Any]] = [
            {
                "wid": p.wid,
                "host_id": p.host_id,
                "pid": p.pid,
                "cpu_percent": p.cpu_percent,
                "rss_bytes": p.rss_bytes,
                "num_fds": p.num_fds,
                "num_children": p.num_children,
            }
            for p in live_processes(watcher.processes, host)
        ]
        total = {key: sum(p[key] for p in processes) for key in _STATS_KEYS}
        watchers.append({"name": watcher.name, "processes": processes, "total": total})
    return {"watchers": watchers}


def live_processes(
    processes: Iterable[types_pb2.ProcessStatus], host: str = ""
) -> list[types_pb2.ProcessStatus]:
    return [p for p in processes if p.pid and (not host or p.host_id == host)]


# -- tables and lines --------------------------------------------------------------

_STATE_STYLE = {
    PS.PROCESS_STATE_RUNNING: "green",
    PS.PROCESS_STATE_STARTING: "yellow",
    PS.PROCESS_STATE_STOPPING: "yellow",
    PS.PROCESS_STATE_EXITED: "red",
    PS.PROCESS_STATE_BACKOFF: "red",
    PS.PROCESS_STATE_FATAL: "bold red",
    PS.PROCESS_STATE_STOPPED: "dim",
    PS.PROCESS_STATE_UNKNOWN: "magenta",
}

_HEALTH_STYLE = {
    HL.HEALTH_HEALTHY: "green",
    HL.HEALTH_STARTING: "yellow",
    HL.HEALTH_UNHEALTHY: "red",
}

_HAS_UPTIME = (PS.PROCESS_STATE_RUNNING, PS.PROCESS_STATE_STARTING, PS.PROCESS_STATE_STOPPING)


# Columns that may wrap on a narrow terminal rather than lose their text.
_WRAPPING = ("LAST EXIT", "MESSAGE", "LABELS")


def _table(*columns: str, right: Sequence[str] = ()) -> Table:
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


_STATUS_COLUMNS = (
    "WATCHER",
    "WID",
    "HOST",
    "PID",
    "STATE",
    "HEALTH",
    "UPTIME",
    "RESTARTS",
    "CPU",
    "MEM",
    "LAST EXIT",
    "MESSAGE",
)
# Columns left out when no row has anything to say in them, to leave room
# (HEALTH: when no process has a health check).
_OPTIONAL_COLUMNS = ("HEALTH", "LAST EXIT", "MESSAGE")


def status_rows(
    watchers: Sequence[admin_pb2.WatcherStatus], now: float, host: str = ""
) -> list[list[str | Text]]:
    """The cells of the status table, one row per process, in _STATUS_COLUMNS order."""
    rows: list[list[str | Text]] = []
    for watcher in map(escaped, watchers):
        for p in watcher.processes:
            if host and p.host_id != host:
                continue
            running = p.pid != 0
            uptime = (
                format_duration(now - p.started_at)
                if p.started_at > 0 and p.state in _HAS_UPTIME
                else "-"
            )
            rows.append(
                [
                    p.watcher or watcher.name,
                    str(p.wid),
                    p.host_id or "-",
                    str(p.pid) if running else "-",
                    Text(state_name(p.state), style=_STATE_STYLE.get(p.state, "")),
                    Text(health_name(p.health), style=_HEALTH_STYLE.get(p.health, "")),
                    uptime,
                    str(p.restarts),
                    format_percent(p.cpu_percent) if running else "-",
                    format_bytes(p.rss_bytes) if running and p.rss_bytes else "-",
                    format_last_exit(p.last_exit if has_last_exit(p) else None),
                    process_note(p, watcher, now),
                ]
            )
    return rows


def status_table(watchers: Sequence[admin_pb2.WatcherStatus], now: float, host: str = "") -> Table:
    """One row per process: watcher, wid, host, pid, state, uptime, ... message."""
    rows = status_rows(watchers, now, host)
    keep = [
        index
        for index, column in enumerate(_STATUS_COLUMNS)
        if column not in _OPTIONAL_COLUMNS or any(str(row[index]) for row in rows)
    ]
    table = _table(
        *(_STATUS_COLUMNS[index] for index in keep),
        right=("WID", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"),
    )
    for row in rows:
        table.add_row(*(row[index] for index in keep))
    return table


def watcher_summary(watcher: admin_pb2.WatcherStatus, now: float) -> str:
    """`4/4 running`, then `stopped`, `2 pending: <reason>`, the watcher's note."""
    watcher = escaped(watcher)
    parts = [f"{watcher.running}/{watcher.numprocesses} running"]
    if not watcher.active:
        parts.append("stopped")
    if watcher.pending:
        reason = f": {watcher.pending_reason}" if watcher.pending_reason else ""
        parts.append(f"{watcher.pending} pending{reason}")
    note = watcher_note(watcher, now)
    if note:
        parts.append(note)
    if watcher.rollout:
        parts.append(watcher.rollout)
    return ", ".join(parts)


def summary_lines(watchers: Sequence[admin_pb2.WatcherStatus], now: float) -> list[str]:
    """`webapp  4/4 running` per watcher, names aligned."""
    watchers = [escaped(w) for w in watchers]
    width = max((len(w.name) for w in watchers), default=0)
    return [f"{w.name.ljust(width)}  {watcher_summary(w, now)}" for w in watchers]


def print_status(reply: admin_pb2.StatusReply, now: float, host: str = "") -> None:
    console = stdout_console()
    if not reply.watchers:
        console.print("no watchers", markup=False)
        return
    if any(not host or p.host_id == host for w in reply.watchers for p in w.processes):
        console.print(status_table(reply.watchers, now, host))
        console.print()
    for line in summary_lines(reply.watchers, now):
        console.print(line, markup=False, soft_wrap=True)


def stats_table(reply: admin_pb2.StatusReply, host: str = "") -> Table:
    """Per process cpu, memory, fds and children, and a total row per watcher."""
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
        state_style = "green" if agent.state == "ready" else "red"
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
    def update(self, done: int, total: int) -> None: ...


class _NoDisplay:
    def update(self, done: int, total: int) -> None:
        return None


class _BarDisplay:
    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    def update(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=max(total, 1))


@contextmanager
def wait_display(description: str) -> Iterator[WaitDisplay]:
    """A progress bar on stderr while waiting, only when stderr is a terminal."""
    console = stderr_console()
    if not console.is_terminal:
        yield _NoDisplay()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield _BarDisplay(progress, description)
