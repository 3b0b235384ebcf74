"""Terminal safety: text from workers and agents is shown, never obeyed, by the terminal.

A worker's output line, an agent's event message, label or version reach the operator's
terminal through stackctl. Written raw, an escape sequence in them is a command to the
terminal: OSC 52 writes the clipboard, OSC 8 disguises a link, `ESC [2J` clears the
screen, and a bare carriage return or backspace overwrites what was printed before it.
Every text renderer therefore passes what it shows through `safe` (or a whole message
through `escaped`): control characters, and the invisible characters that reorder or hide
text (bidirectional overrides, zero-width spaces), become visible escapes such as `\\x1b`,
in the spelling of Python's `repr`. Tabs are kept. `stackctl logs --raw` is the one way
to get a worker's bytes unchanged; `-o json` needs none of this (JSON escapes them itself).
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from stack.safe_text import code_escape, safe

M = TypeVar("M", bound=Message)

__all__ = ["code_escape", "escaped", "safe"]


def escaped(message: M) -> M:
    """A copy of `message` with every string in it (nested, repeated, map keys and
    values) passed through `safe`: what a renderer of that message may show as is."""
    copy = _copy(message)
    _escape_message(copy)
    return copy


def _escape_message(message: Message) -> None:
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _escape_map(field, value)
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [safe(item) for item in value]
            else:
                setattr(message, field.name, safe(value))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else (value,):
                _escape_message(item)


def _escape_map(field: FieldDescriptor, value: Any) -> None:
    entry = field.message_type
    assert entry is not None  # a map field's entry type
    if entry.fields_by_name["key"].type != FieldDescriptor.TYPE_STRING:
        return  # no map of ours has other keys
    kind = entry.fields_by_name["value"].type
    items = [(key, value[key]) for key in list(value)]
    if kind == FieldDescriptor.TYPE_MESSAGE:
        kept = [(key, _copy(item)) for key, item in items]
        value.clear()
        for key, item in kept:
            value[safe(key)].CopyFrom(escaped(item))
        return
    value.clear()
    for key, item in items:
        value[safe(key)] = safe(item) if kind == FieldDescriptor.TYPE_STRING else item


def _copy(message: M) -> M:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy
