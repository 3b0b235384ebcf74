"""Terminal safety: what workers and agents send is shown escaped by every text renderer."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from stack.cli import render
from stack.cli.status_view import Layout, messages_comment, status_lines
from stack.cli.terminal import escaped, safe
from stack.cli.top_view import Choices, Snapshot, frame, plain
from stack.v1 import admin_pb2, types_pb2

OSC52 = "\x1b]52;c;aGVsbG8=\x07"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
CLEAR = "\x1b[2J\x1b[H"
HOSTILE = f"a{OSC52}b{OSC8}c{CLEAR}d\rover\bwrite\x9b31m\u202eright-to-left\n2nd line"
# Anything a terminal would act on, or that hides or reorders text.
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text", "plain text"),
        ("tab\tkept", "tab\tkept"),
        ("\x1b[31mred", "\\x1b[31mred"),
        (OSC52, "\\x1b]52;c;aGVsbG8=\\x07"),
        ("done\rfake", "done\\rfake"),
        ("one\ntwo", "one\\ntwo"),
        ("rm -rf\b\b\b\b\b\bls", "rm -rf\\x08\\x08\\x08\\x08\\x08\\x08ls"),
        ("\x7f\x9b\x00", "\\x7f\\x9b\\x00"),
        ("user\u202egnp.exe", "user\\u202egnp.exe"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),
        ("family \U0001f468\u200d\U0001f469", "family \U0001f468\u200d\U0001f469"),
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_control_and_hiding_characters_become_visible_escapes(text: str, shown: str) -> None:
    assert safe(text) == shown


@given(st.text())
def test_safe_text_has_nothing_a_terminal_obeys_and_escaping_twice_changes_nothing(
    text: str,
) -> None:
    once = safe(text)
    assert not UNSAFE.search(once)
    assert safe(once) == once


def test_escaped_copies_a_message_with_nested_repeated_and_map_strings_escaped() -> None:
    agent = admin_pb2.AgentInfo(host_id="h\x1b1", labels={"k\x1b": "v\x07"}, version="1\r")
    original = admin_pb2.AgentsReply(agents=[agent])
    shown = escaped(original)
    assert shown.agents[0].host_id == "h\\x1b1"
    assert dict(shown.agents[0].labels) == {"k\\x1b": "v\\x07"}
    assert shown.agents[0].version == "1\\r"
    assert original.agents[0].host_id == "h\x1b1", "the original is left as it was"


def hostile(message: Message) -> Message:
    """`message` with every string field, at any depth, set to HOSTILE (one element
    in repeated fields and maps)."""
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            kind = field.message_type.fields_by_name["value"].type
            value[HOSTILE] = HOSTILE if kind == FieldDescriptor.TYPE_STRING else 1
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value.append(HOSTILE)
            else:
                setattr(message, field.name, HOSTILE)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            hostile(value.add() if field.is_repeated else value)
    return message


def _printed(renderable: Any) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=render.PIPE_WIDTH, color_system=None).print(renderable)
    return buffer.getvalue()


def _top(status: admin_pb2.StatusReply, *events: types_pb2.Event) -> str:
    """A frame of `stackctl top` as printed without a terminal, wide enough to cut nothing."""
    snapshot = Snapshot(status, events, "unix:/c.sock")
    return plain(frame(snapshot, Choices(), 2000, 200, 0.0, screen=False))


def _status(layout: Layout) -> Callable[[Any], str]:
    def show(reply: Message) -> str:
        assert isinstance(reply, admin_pb2.StatusReply)
        return "\n".join(status_lines(reply, 0.0, layout))

    return show


RENDERERS: dict[str, tuple[type[Message], Callable[[Any], str]]] = {
    "status": (admin_pb2.StatusReply, _status(Layout())),
    "status -o wide": (admin_pb2.StatusReply, _status(Layout(wide=True))),
    "status --summary": (admin_pb2.StatusReply, _status(Layout(summary=True))),
    "get (its processes)": (
        admin_pb2.WatcherStatus,
        lambda w: "\n".join(messages_comment(w, 0.0)),
    ),
    "stats": (admin_pb2.StatusReply, lambda r: _printed(render.stats_table(r))),
    "agents": (admin_pb2.AgentsReply, lambda r: _printed(render.agents_table(r.agents, 0))),
    "controllers": (admin_pb2.ControllersReply, lambda r: _printed(render.controllers_table(r))),
    "store members": (admin_pb2.ControllersReply, lambda r: _printed(render.members_table(r))),
    "events": (types_pb2.Event, lambda e: _printed(render.event_text(e))),
    "logs": (types_pb2.LogLine, lambda line: _printed(render.log_line_text(line, True))),
    "logs --raw prefix": (
        types_pb2.LogLine,
        lambda line: render.raw_log_line(line, True).removesuffix(line.text),
    ),
    "top": (admin_pb2.StatusReply, _top),
    "top (its events)": (types_pb2.Event, lambda e: _top(admin_pb2.StatusReply(), e)),
    "apply": (
        admin_pb2.ApplyReply,
        lambda r: "".join(_printed(line) for line in render.change_lines(r.changes)),
    ),
}


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_no_renderer_lets_a_control_character_through_from_any_field(name: str) -> None:
    kind, show = RENDERERS[name]
    message = hostile(kind())
    out = show(message)
    assert "\\x1b]52;c;aGVsbG8=" in out, out  # shown, not swallowed
    found = sorted({repr(c) for c in UNSAFE.findall(out.replace("\n", ""))})
    assert not found, f"{name} printed {found}"


def test_a_text_line_is_escaped_and_a_raw_log_line_is_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render.print_text(f"leader: {CLEAR}")
    line = types_pb2.LogLine(at=0, watcher="w", wid=1, text=OSC52)
    render.print_raw(render.raw_log_line(line, False))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "leader: \\x1b[2J\\x1b[H"
    assert out[1].endswith(" w[1] " + OSC52)
