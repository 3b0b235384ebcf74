"""`stackctl top`'s screen: what one frame shows, from the controller's answers and the
viewer's choices, as lines of at most the terminal's width.

Pure: the loop (stack.cli.top) reads the controller, the keys and the clock, and hands
them here. A frame has four parts, top to bottom: a title line (the controller, the
time, the totals), the watchers (running/desired, state, CPU, memory; the selected one
marked `>`), the processes of the selected watcher on each host, and the latest events,
then one line of keys. Only ASCII and a few SGR codes (bold, reverse, colours) are used,
which every terminal of a plain SSH session shows; every line is cut to the width, so
80 columns stay readable; text from agents and workers is shown escaped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from stack.cli.formats import aligned, format_bytes
from stack.cli.status_view import process_cells, summary_parts
from stack.cli.terminal import escaped, safe
from stack.v1 import admin_pb2, types_pb2

KEYS_HELP = "q quit  up/down or j/k select  / filter  esc clear filter"
PROCESS_COLUMNS = ("HOST", "WID", "PID", "STATE", "UPTIME", "RESTARTS", "CPU", "MEM")
EVENT_LINES = 20
"""The latest events read; as many are shown as the screen has room for."""


@dataclass(frozen=True)
class Choices:
    """What the viewer chose: the selected watcher, the filter, a filter being typed."""

    selected: str = ""
    """The selected watcher's name ("" : the first one shown)."""
    filter: str = ""
    """Only watchers whose name contains it are shown."""
    typing: str | None = None
    """The filter being typed after `/` (None: not typing)."""


@dataclass(frozen=True)
class Snapshot:
    """The controller's answers of one refresh."""

    status: admin_pb2.StatusReply
    events: Sequence[types_pb2.Event] = ()
    controller: str = ""
    error: str = ""
    """Why the last refresh failed (the screen keeps the previous answers)."""
    at: float = field(default_factory=time.time)


def shown_watchers(snapshot: Snapshot, choices: Choices) -> list[admin_pb2.WatcherStatus]:
    """The watchers the filter lets through, by name."""
    wanted = choices.filter
    return [w for w in snapshot.status.watchers if wanted in w.name]


def selected(snapshot: Snapshot, choices: Choices) -> admin_pb2.WatcherStatus | None:
    watchers = shown_watchers(snapshot, choices)
    for watcher in watchers:
        if watcher.name == choices.selected:
            return watcher
    return watchers[0] if watchers else None


def move(snapshot: Snapshot, choices: Choices, step: int) -> Choices:
    """The selection moved `step` watchers down (up when negative), within the list."""
    names = [w.name for w in shown_watchers(snapshot, choices)]
    if not names:
        return choices
    current = selected(snapshot, choices)
    index = names.index(current.name) if current is not None else 0
    index = max(0, min(len(names) - 1, index + step))
    return replace(choices, selected=names[index])


def key(snapshot: Snapshot, choices: Choices, pressed: str) -> Choices | None:
    """The choices after a key (`up`, `down`, `enter`, `esc`, `backspace`, or a
    character); None to quit."""
    if choices.typing is not None:
        if pressed == "enter":
            applied = replace(choices, filter=choices.typing, typing=None)
            shown = selected(snapshot, applied)
            return replace(applied, selected=shown.name if shown is not None else "")
        if pressed == "esc":
            return replace(choices, typing=None)
        if pressed == "backspace":
            return replace(choices, typing=choices.typing[:-1])
        if len(pressed) == 1 and pressed.isprintable():
            return replace(choices, typing=choices.typing + pressed)
        return choices
    if pressed in ("q", "Q"):
        return None
    if pressed in ("down", "j"):
        return move(snapshot, choices, 1)
    if pressed in ("up", "k"):
        return move(snapshot, choices, -1)
    if pressed == "/":
        return replace(choices, typing="")
    if pressed == "esc":
        return replace(choices, filter="")
    return choices


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "~"


def watcher_rows(
    watchers: Sequence[admin_pb2.WatcherStatus], chosen: str, now: float
) -> list[tuple[str, bool]]:
    """(line, is the selected one) for the header and each watcher."""
    rows: list[Sequence[str]] = [("", "WATCHER", "RUNNING", "STATE", "CPU", "MEM", "")]
    for watcher in watchers:
        marked = watcher.name == chosen  # (the name as the controller sent it)
        watcher = escaped(watcher)
        running, state, rest = summary_parts(watcher, now)
        live = [p for p in watcher.processes if p.pid]
        cpu = sum(p.cpu_percent for p in live)
        memory = sum(p.rss_bytes for p in live)
        rows.append(
            (
                ">" if marked else " ",
                watcher.name,
                running.removesuffix(" running"),
                state,
                f"{cpu:.1f}%",
                format_bytes(memory) if memory else "-",
                rest,
            )
        )
    right = (False, False, True, False, True, True, False)
    lines = aligned(rows, right)
    return [(line, i > 0 and rows[i][0] == ">") for i, line in enumerate(lines)]


def process_lines(watcher: admin_pb2.WatcherStatus, now: float) -> list[str]:
    """The header and a line per process of `watcher`, by host then worker id."""
    watcher = escaped(watcher)
    processes = sorted(watcher.processes, key=lambda p: (p.host_id, p.wid))
    rows: list[Sequence[str]] = [PROCESS_COLUMNS]
    for process in processes:
        cells = process_cells(process, watcher, now, wide=True)
        rows.append([cells[column].text for column in PROCESS_COLUMNS])
    right = tuple(c in ("WID", "PID", "UPTIME", "RESTARTS", "CPU", "MEM") for c in PROCESS_COLUMNS)
    return aligned(rows, right)


def event_line(event: types_pb2.Event) -> str:
    event = escaped(event)
    about = event.watcher or "-"
    if event.watcher and event.wid:
        about = f"{event.watcher}[{event.wid}]"
    clock = time.strftime("%H:%M:%S", time.localtime(event.at))
    return f"{clock}  {event.host_id or '-'}  {about}  {event.kind}  {event.message}"


@dataclass(frozen=True)
class Line:
    """One line of a frame and how it is shown."""

    text: str
    style: str = ""
    """SGR parameters (`1` bold, `7` reverse, `31` red...), "" for plain."""


def frame(
    snapshot: Snapshot,
    choices: Choices,
    width: int,
    height: int,
    now: float,
    screen: bool = True,
) -> list[Line]:
    """The lines of one screen of `width` x `height` (at least 1 x 1). Not on a `screen`
    (printed once), it has every line, without the keys' line or blank padding."""
    width = max(1, width)
    height = max(1, height) if screen else 1_000_000
    watchers = shown_watchers(snapshot, choices)
    chosen = selected(snapshot, choices)
    running = sum(w.running for w in snapshot.status.watchers)
    desired = sum(w.numprocesses for w in snapshot.status.watchers if w.active)
    clock = time.strftime("%H:%M:%S", time.localtime(snapshot.at))
    title = (
        f"stack top - {safe(snapshot.controller)} - {clock} - "
        f"{len(snapshot.status.watchers)} watchers, {running}/{desired} running"
    )
    lines = [Line(title, "1")]
    if snapshot.error:
        lines.append(Line(f"refresh failed: {safe(snapshot.error)}", "31"))
    if choices.filter:
        lines.append(Line(f"filter: {safe(choices.filter)} ({len(watchers)} shown)"))
    footer = (
        Line(f"filter: {safe(choices.typing)}_  (enter apply, esc cancel)", "7")
        if choices.typing is not None
        else Line(KEYS_HELP, "7")
    )
    events = [event_line(e) for e in snapshot.events]
    procs = process_lines(chosen, now) if chosen is not None else []
    rows = watcher_rows(watchers, chosen.name if chosen else "", now)
    # Each part gets what it needs when the screen has room. When it has not, the
    # watchers come first, then the processes, then the events; each part keeps a few
    # lines, and a part that is cut says how many lines it left out.
    room = height - len(lines) - 1
    event_block = len(events) + 2 if events else 0
    process_block = len(procs) + 2 if chosen is not None else 0
    keep_events, keep_processes = min(event_block, 4), min(process_block, 5)
    for_watchers = min(len(rows), max(2, room - keep_events - keep_processes))
    for_processes = min(process_block, max(0, room - for_watchers - keep_events))
    for_events = max(0, room - for_watchers - for_processes)
    lines += _part([Line(text, "7" if marked else "") for text, marked in rows], for_watchers)
    if chosen is not None and for_processes > 2:
        heading = Line(f"processes of {safe(chosen.name)}", "1")
        lines += [Line(""), heading, *_part([Line(t) for t in procs], for_processes - 2)]
    if for_events > 2:
        lines += [Line(""), Line("events", "1"), *[Line(t) for t in events[-(for_events - 2) :]]]
    if screen:
        lines = lines[: height - 1]
        lines += [Line("")] * (height - 1 - len(lines))
        lines.append(footer)
    return [replace(line, text=_cut(line.text, width)) for line in lines]


def _part(lines: list[Line], budget: int) -> list[Line]:
    """`lines` within `budget`, the last one saying how many were left out."""
    if len(lines) <= budget:
        return lines
    if budget <= 1:
        return lines[:budget]
    return [*lines[: budget - 1], Line(f"  ... {len(lines) - budget + 1} more")]


def plain(lines: Sequence[Line]) -> str:
    """A frame as plain text (for output that is not a terminal)."""
    return "\n".join(line.text.rstrip() for line in lines).rstrip("\n") + "\n"
