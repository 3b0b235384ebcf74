"""`stackctl top`'s screen and keys, pure: frames of a given size from given answers."""

from __future__ import annotations

from stack.cli.top import parse_keys
from stack.cli.top_view import Choices, Snapshot, frame, key, plain
from stack.v1 import admin_pb2, types_pb2
from tests.unit.test_cli_terminal import HOSTILE, UNSAFE, hostile

RUNNING = types_pb2.PROCESS_STATE_RUNNING


def snapshot(*counts: int, events: int = 0) -> Snapshot:
    """Watchers w0, w1... with `counts` running processes each, on hosts h1 and h2."""
    reply = admin_pb2.StatusReply()
    for i, count in enumerate(counts):
        watcher = reply.watchers.add(name=f"w{i}", numprocesses=count, active=True, running=count)
        for wid in range(1, count + 1):
            watcher.processes.add(
                watcher=watcher.name, wid=wid, pid=100 * i + wid, state=RUNNING,
                host_id=f"h{1 + wid % 2}", started_at=1.0, rss_bytes=2**20,
            )  # fmt: skip
    shown = [
        types_pb2.Event(at=1.0, kind="spawn", watcher="w0", message=f"e{n}") for n in range(events)
    ]
    return Snapshot(reply, shown, "unix:/run/c.sock", at=1.0)


def texts(lines: list) -> list[str]:  # type: ignore[type-arg]
    return [line.text for line in lines]


def test_a_frame_fills_the_screen_exactly_and_no_line_is_wider() -> None:
    for width, height in ((80, 24), (40, 10), (200, 60), (1, 1)):
        lines = frame(snapshot(3, 2, events=30), Choices(), width, height, now=10.0)
        assert len(lines) == height
        assert all(len(line.text) <= width for line in lines)


def test_at_80_columns_it_shows_watchers_processes_events_and_keys() -> None:
    shown = texts(frame(snapshot(3, 2, events=3), Choices(), 80, 24, now=10.0))
    text = "\n".join(shown)
    assert "processes of w0" in text and "events" in text and "e2" in text
    assert shown[-1].startswith("q quit")
    assert next(t for t in shown if " w0 " in t).startswith(">")


def test_too_many_processes_are_cut_and_counted() -> None:
    shown = texts(frame(snapshot(60), Choices(), 80, 24, now=10.0))
    assert any("more" in line for line in shown)
    assert len(shown) == 24


def test_keys_move_filter_and_quit() -> None:
    snap = snapshot(1, 1, 1)
    choices = key(snap, Choices(), "down")
    assert choices is not None and choices.selected == "w1"
    choices = key(snap, choices, "down")
    choices = key(snap, choices, "down")  # stays on the last
    assert choices is not None and choices.selected == "w2"
    for pressed in ("/", "w", "0", "enter"):
        choices = key(snap, choices, pressed)
        assert choices is not None
    assert choices.filter == "w0" and choices.selected == "w0"
    assert texts(frame(snap, choices, 80, 24, now=10.0)).count("> w0") <= 1
    assert key(snap, choices, "esc") == Choices(selected="w0")
    assert key(snap, Choices(), "q") is None
    assert key(snap, Choices(typing=""), "q") == Choices(typing="q"), "q is typed in a filter"


def test_terminal_input_becomes_keys() -> None:
    assert parse_keys("j\x1b[A\x1bOB\x1b[C/x\r\x7f\x1b") == [
        "j", "up", "down", "/", "x", "enter", "backspace", "esc",
    ]  # fmt: skip


def test_text_from_agents_is_shown_escaped() -> None:
    snap = snapshot(1)
    snap.status.watchers[0].processes[0].message = "\x1b]52;c;AAAA\x07"
    snap = Snapshot(snap.status, [types_pb2.Event(at=1.0, kind="x", message="\x1b[2J")], "c")
    text = plain(frame(snap, Choices(), 200, 40, now=10.0, screen=False))
    assert "\x1b" not in text and "\\x1b[2J" in text


def test_every_line_of_a_hostile_stack_is_escaped_and_the_selection_still_marked() -> None:
    status = hostile(admin_pb2.StatusReply())
    status.watchers.add().CopyFrom(status.watchers[0])
    status.watchers[1].name = "plain"
    events = [hostile(types_pb2.Event())]
    snap = Snapshot(status, events, HOSTILE, error=HOSTILE)
    for choices in (Choices(), Choices(filter="a", typing=HOSTILE)):
        lines = frame(snap, choices, 80, 24, now=10.0)
        found = sorted({repr(c) for line in lines for c in UNSAFE.findall(line.text)})
        assert not found, found
        marked = [line.text for line in lines if line.text.startswith(">")]
        assert len(marked) == 1 and marked[0].startswith(">  a\\x1b]52"), marked
    shown = plain(frame(snap, Choices(), 2000, 200, now=10.0, screen=False))
    assert "\\x1b]52;c;aGVsbG8=" in shown and "plain" in shown
