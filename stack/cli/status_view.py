"""`stackctl status` as text: a line per watcher, then its processes, within the width.

Plain string work (no rich, which costs more to import than the whole call): the
layout is computed here and coloured with a few ANSI codes when stdout is a terminal.

- Each watcher's summary line says how many of its processes run out of how many are
  wanted, its state (active, stopped, flapping, fatal), what is pending and a rollout
  in progress. `--summary` prints these lines alone.
- Its processes follow, indented, in columns aligned across watchers: WID, HOST (when
  the processes shown run on more than one host), PID, STATE, UPTIME, RESTARTS and
  MESSAGE, where MESSAGE says why a process is where it is (its own message, and its
  last exit when it failed), cut with an ellipsis to fit the width (the terminal's, 80
  columns when not a terminal).
- A watcher of more than GROUP_ABOVE processes lists only those that have something to
  say and counts the quietly running ones per host: 300 workers stay readable.
- `-o wide` shows every process and every column (HEALTH, CPU, MEM, REPLACED, VERSION,
  LAST EXIT) and whole messages; there MESSAGE leaves out what LAST EXIT says already.

`stackctl get WATCHER` shows the same MESSAGE whole, after the watcher's configuration
(process_messages, messages_comment).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stack.cli.formats import (
    ER,
    HL,
    PS,
    aligned,
    format_bytes,
    format_duration,
    format_last_exit,
    format_percent,
    has_last_exit,
    health_name,
    phase_name,
    process_note,
    state_name,
    watcher_note,
)
from stack.cli.terminal import escaped
from stack.v1 import admin_pb2, types_pb2

GROUP_ABOVE = 20
"""A watcher with more processes than this lists only the ones with something to say."""
ELLIPSIS = "…"
INDENT = "  "
GAP = "  "
MIN_MESSAGE = 16
"""Columns MESSAGE keeps however narrow the width (the line then runs over)."""

_HAS_UPTIME = (PS.PROCESS_STATE_RUNNING, PS.PROCESS_STATE_STARTING, PS.PROCESS_STATE_STOPPING)
_UNPLANNED = (
    ER.EXIT_REASON_CRASHED,
    ER.EXIT_REASON_SPAWN_ERROR,
    ER.EXIT_REASON_FLAPPING,
    ER.EXIT_REASON_UNHEALTHY,
)
"""Last exits worth telling beside a process that runs again: it failed."""

_STATE_COLOUR = {
    PS.PROCESS_STATE_RUNNING: "32",
    PS.PROCESS_STATE_STARTING: "33",
    PS.PROCESS_STATE_STOPPING: "33",
    PS.PROCESS_STATE_EXITED: "31",
    PS.PROCESS_STATE_BACKOFF: "31",
    PS.PROCESS_STATE_FATAL: "1;31",
    PS.PROCESS_STATE_STOPPED: "2",
    PS.PROCESS_STATE_UNKNOWN: "35",
}
_HEALTH_COLOUR = {HL.HEALTH_HEALTHY: "32", HL.HEALTH_STARTING: "33", HL.HEALTH_UNHEALTHY: "31"}
_WATCHER_COLOUR = {"active": "32", "stopped": "2", "flapping": "31", "fatal": "1;31"}

_RIGHT = frozenset(("WID", "PID", "UPTIME", "RESTARTS", "REPLACED", "CPU", "MEM"))
_DEFAULT_COLUMNS = ("WID", "HOST", "PID", "STATE", "UPTIME", "RESTARTS", "MESSAGE")
_WIDE_COLUMNS = (
    "WID",
    "HOST",
    "PID",
    "STATE",
    "HEALTH",
    "UPTIME",
    "RESTARTS",
    "REPLACED",
    "CPU",
    "MEM",
    "VERSION",
    "LAST EXIT",
    "MESSAGE",
)


@dataclass(frozen=True)
class Layout:
    """How much room there is and what to show in it."""

    width: int = 80
    """Columns of the output: a line longer than this is cut (not with `wide`)."""
    wide: bool = False
    """Every column, every process and whole messages; nothing is cut."""
    summary: bool = False
    """The watchers' lines alone."""
    colour: bool = False
    """Colour states with ANSI codes (a terminal that wants them)."""


def terminal_layout(wide: bool = False, summary: bool = False) -> Layout:
    """The layout for stdout: its width when it is a terminal (80 otherwise), and colour
    on a terminal unless NO_COLOR is set or TERM is dumb."""
    is_terminal = sys.stdout.isatty()
    width = 80
    if os.environ.get("COLUMNS", "").isdigit():
        width = int(os.environ["COLUMNS"])
    elif is_terminal:
        try:
            width = os.get_terminal_size(sys.stdout.fileno()).columns
        except OSError:
            pass
    colour = is_terminal and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    return Layout(width=max(width, 40), wide=wide, summary=summary, colour=colour)


@dataclass(frozen=True)
class Cell:
    text: str
    colour: str = ""


def cut(text: str, room: int) -> str:
    """`text`, or its start and an ellipsis when it is longer than `room`."""
    if len(text) <= room:
        return text
    return text[: max(room - 1, 0)] + ELLIPSIS


def _paint(text: str, colour: str, layout: Layout) -> str:
    return f"\x1b[{colour}m{text}\x1b[0m" if colour and layout.colour and text else text


# -- what is said about a watcher and a process -------------------------------------------


def watcher_state(watcher: admin_pb2.WatcherStatus) -> str:
    """`active`, `stopped`, `flapping` or `fatal`."""
    if not watcher.active:
        return "stopped"
    name = phase_name(watcher.phase)
    return name if name in ("flapping", "fatal", "stopped") else "active"


def summary_parts(watcher: admin_pb2.WatcherStatus, now: float) -> tuple[str, str, str]:
    """(`3/4 running`, state, the rest: pending, note, rollout) of an escaped watcher."""
    state = watcher_state(watcher)
    rest: list[str] = []
    if watcher.pending:
        reason = f": {watcher.pending_reason}" if watcher.pending_reason else ""
        rest.append(f"{watcher.pending} pending{reason}")
    note = watcher_note(watcher, now)
    if note and note != state:
        rest.append(note)
    if watcher.rollout:
        rest.append(watcher.rollout)
    return f"{watcher.running}/{watcher.numprocesses} running", state, ", ".join(rest)


def watcher_summary(watcher: admin_pb2.WatcherStatus, now: float) -> str:
    """`3/4 running, active, 1 pending: no eligible agent` (of an escaped watcher)."""
    return ", ".join(part for part in summary_parts(watcher, now) if part)


def without_last_exit(note: str, last: str, process: types_pb2.ProcessStatus) -> str:
    """The message with what the LAST EXIT column says already left out."""
    told = [text for text in (process.last_exit.message, last) if text]
    for text in told:
        if note == text or note == f"spawn error: {text}":
            return ""
        for suffix in (f": {text}", f" ({text})", f", {text}"):
            if note.endswith(suffix):
                return note[: -len(suffix)]
    return note


def _last_exit_text(process: types_pb2.ProcessStatus, now: float) -> str:
    if not has_last_exit(process):
        return ""
    text = format_last_exit(process.last_exit)
    at = process.last_exit.at
    return f"{text}, {format_duration(now - at)} ago" if at > 0 else text


def message(process: types_pb2.ProcessStatus, watcher: admin_pb2.WatcherStatus, now: float) -> str:
    """The one MESSAGE of the default view: why the process is where it is, then its last
    exit when it failed or is why the process does not run; never the same thing twice."""
    note = process_note(process, watcher, now)
    failed = has_last_exit(process) and process.last_exit.reason in _UNPLANNED
    if not (process.pid == 0 or failed) or not has_last_exit(process):
        return note
    last = _last_exit_text(process, now)
    if not note:
        return last
    if without_last_exit(note, format_last_exit(process.last_exit), process) != note:
        return note  # it tells the last exit already
    return f"{note}; {last}"


def process_cells(
    process: types_pb2.ProcessStatus, watcher: admin_pb2.WatcherStatus, now: float, wide: bool
) -> dict[str, Cell]:
    """Every column of one (escaped) process."""
    live = process.pid != 0
    uptime = "-"
    if process.started_at > 0 and process.state in _HAS_UPTIME:
        uptime = format_duration(now - process.started_at)
    last = _last_exit_text(process, now)
    note = process_note(process, watcher, now)
    return {
        "WID": Cell(str(process.wid)),
        "HOST": Cell(process.host_id or "-"),
        "PID": Cell(str(process.pid) if live else "-"),
        "STATE": Cell(state_name(process.state), _STATE_COLOUR.get(process.state, "")),
        "HEALTH": Cell(health_name(process.health), _HEALTH_COLOUR.get(process.health, "")),
        "UPTIME": Cell(uptime),
        "RESTARTS": Cell(str(process.restarts)),
        "REPLACED": Cell(str(process.replacements)),
        "CPU": Cell(format_percent(process.cpu_percent) if live else "-"),
        "MEM": Cell(format_bytes(process.rss_bytes) if live and process.rss_bytes else "-"),
        "VERSION": Cell(process.version or "-"),
        "LAST EXIT": Cell(last),
        "MESSAGE": Cell(
            without_last_exit(note, last, process) if wide else message(process, watcher, now)
        ),
    }


def process_messages(watcher: admin_pb2.WatcherStatus, now: float) -> list[dict[str, Any]]:
    """Each process of `watcher`, by host then worker id, as `get` shows it:
    {host_id, wid, state, message}, the message whole as status's MESSAGE (which cuts it)."""
    return [
        {
            "host_id": process.host_id,
            "wid": process.wid,
            "state": state_name(process.state),
            "message": message(process, watcher, now),
        }
        for process in sorted(watcher.processes, key=lambda p: (p.host_id, p.wid))
    ]


def messages_comment(watcher: admin_pb2.WatcherStatus | None, now: float) -> list[str]:
    """`get`'s lines after the configuration: each process's host, worker id, state and
    whole message, escaped, as TOML comments (the output stays a stack file fragment)."""
    rows = process_messages(escaped(watcher), now) if watcher is not None else []
    if not rows:
        return ["# processes: none"]
    table = [("HOST", "WID", "STATE", "MESSAGE")]
    table += [(r["host_id"] or "-", str(r["wid"]), r["state"], r["message"]) for r in rows]
    lines = aligned(table, (False, True, False, False))
    return ["# processes:", *(f"#   {line}" for line in lines)]


def _quiet(process: types_pb2.ProcessStatus, cells: dict[str, Cell]) -> bool:
    """Running with nothing to say: counted, not listed, in a large watcher."""
    return (
        process.state == PS.PROCESS_STATE_RUNNING
        and not cells["MESSAGE"].text
        and (process.health != HL.HEALTH_UNHEALTHY)
    )


def _quiet_line(quiet: Sequence[types_pb2.ProcessStatus], watcher: str, listed: int) -> str:
    hosts: dict[str, int] = {}
    for process in quiet:
        hosts[process.host_id or "-"] = hosts.get(process.host_id or "-", 0) + 1
    where = ", ".join(f"{count} on {host}" for host, count in sorted(hosts.items()))
    restarts = sum(p.restarts for p in quiet)
    more = f" ({restarts} restarts in all)" if restarts else ""
    head = f"{len(quiet)} more running" if listed else f"{len(quiet)} running"
    return f"{head}: {where}{more}; `stackctl status {watcher} -o wide` lists each"


# -- the page ---------------------------------------------------------------------


def status_lines(
    reply: admin_pb2.StatusReply, now: float, layout: Layout, host: str = ""
) -> list[str]:
    """The whole of `status` as lines (without their newlines)."""
    watchers = [escaped(w) for w in reply.watchers]
    if not watchers:
        return ["no watchers"]
    name_width = max(len(w.name) for w in watchers)
    columns = list(_WIDE_COLUMNS if layout.wide else _DEFAULT_COLUMNS)
    blocks: list[tuple[admin_pb2.WatcherStatus, list[dict[str, Cell]], str]] = []
    for watcher in watchers:
        processes = [p for p in watcher.processes if not host or p.host_id == host]
        rows = [process_cells(p, watcher, now, layout.wide) for p in processes]
        tail = ""
        if not layout.wide and len(rows) > GROUP_ABOVE:
            quiet = [p for p, row in zip(processes, rows, strict=True) if _quiet(p, row)]
            rows = [row for p, row in zip(processes, rows, strict=True) if not _quiet(p, row)]
            tail = _quiet_line(quiet, watcher.name, len(rows)) if quiet else ""
        blocks.append((watcher, rows, tail))
    every_row = [row for _, rows, _ in blocks for row in rows]
    if layout.wide:
        optional = ("HEALTH", "LAST EXIT", "MESSAGE")
        columns = [c for c in columns if c not in optional or any(r[c].text for r in every_row)]
    elif len({row["HOST"].text for row in every_row}) < 2:
        columns.remove("HOST")  # one host: its name is in `stackctl agents`
    widths = {c: max([len(c), *(len(r[c].text) for r in every_row)]) for c in columns}
    if not layout.wide:
        used = len(INDENT) + sum(widths[c] + len(GAP) for c in columns[:-1])
        widths["MESSAGE"] = max(MIN_MESSAGE, min(widths["MESSAGE"], layout.width - used))

    lines: list[str] = []
    for watcher, rows, tail in blocks:
        if lines and not layout.summary:
            lines.append("")
        lines.append(_summary_line(watcher, name_width, now, layout))
        if layout.summary:
            continue
        if rows:
            lines.append(_row({c: Cell(c) for c in columns}, columns, widths, layout, header=True))
            lines.extend(_row(row, columns, widths, layout) for row in rows)
        if tail:
            lines.append(INDENT + (tail if layout.wide else cut(tail, layout.width - 2)))
    return lines


def _summary_line(
    watcher: admin_pb2.WatcherStatus, name_width: int, now: float, layout: Layout
) -> str:
    running, state, rest = summary_parts(watcher, now)
    text = f"{watcher.name.ljust(name_width)}  {running}, {state}" + (f", {rest}" if rest else "")
    if not layout.wide:
        text = cut(text, layout.width)
    head = len(watcher.name.ljust(name_width)) + 2 + len(running) + 2
    shown_state = text[head : head + len(state)]
    return (
        _paint(text[: len(watcher.name)], "1", layout)
        + text[len(watcher.name) : head]
        + _paint(shown_state, _WATCHER_COLOUR.get(state, ""), layout)
        + text[head + len(shown_state) :]
    )


def _row(
    cells: dict[str, Cell],
    columns: Sequence[str],
    widths: dict[str, int],
    layout: Layout,
    header: bool = False,
) -> str:
    parts: list[str] = []
    for column in columns:
        text = cells[column].text
        if column == "MESSAGE" and not layout.wide:
            text = cut(text, widths[column])
        if column == columns[-1] and column not in _RIGHT:
            padded = text
        elif column in _RIGHT:
            padded = text.rjust(widths[column])
        else:
            padded = text.ljust(widths[column])
        colour = "1" if header else cells[column].colour
        parts.append(_paint(padded, colour, layout) if colour else padded)
    return (INDENT + GAP.join(parts)).rstrip()


def print_status(
    reply: admin_pb2.StatusReply, now: float, layout: Layout | None = None, host: str = ""
) -> None:
    """Write `status` to stdout."""
    lines = status_lines(reply, now, layout or terminal_layout(), host)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
