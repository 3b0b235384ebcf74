"""Writing a StackSpec (or one watcher) back as stack-file TOML.

`stackctl export` and `stackctl get` show the desired state in the same format
the user wrote, so the output can be edited and applied again: `load_stack`
reads it back to an equal StackSpec. Only values that differ from the defaults
are written (plus `cmd` and `numprocesses`, which every reader wants to see).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from stack.spec.load import tcp_port
from stack.spec.model import (
    HOOKS,
    FlappingSpec,
    HealthSpec,
    HookSpec,
    PlacementSpec,
    SocketSpec,
    StackSpec,
    StreamSpec,
    UpdateSpec,
    WatcherSpec,
)
from stack.spec.secrets import masked, masked_stack

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ALWAYS = ("cmd", "numprocesses")
_TABLES = (
    "env", "rlimits", "flapping", "stdout_stream", "stderr_stream", "placement", "update",
    "health", "hooks",
)  # fmt: skip
_DEFAULT_WATCHER = WatcherSpec(name="", cmd="")
_DEFAULT_SOCKET = SocketSpec(name="")
_DEFAULT_HOOK = HookSpec(cmd="")

Anchor = tuple[str, ...]
"""Where a comment goes: () the top of the file, ("watchers", "web") above a watcher's
header, ("watchers", "web", "priority") above one option, ("watchers", "web", "env")
above a table and ("watchers", "web", "env", "PATH") above one of its keys."""
Comments = Mapping[Anchor, Sequence[str]]
"""Comment lines (without the `# `) by the anchor they are written above."""
_Entry = tuple[Anchor | None, str]
"""One line of output and the anchor it stands for (None: a blank line)."""


def dump_stack(
    stack: StackSpec, *, mask_secrets: bool = False, comments: Comments | None = None
) -> str:
    """The whole stack as TOML: sockets first, then watchers, each sorted by name;
    with `mask_secrets`, secrets masked (see stack.spec.secrets). `comments` are
    written above what they are anchored to, or above the nearest enclosing thing
    that is written (an option left at its default is not)."""
    if mask_secrets:
        stack = masked_stack(stack)
    blocks = [_socket_entries(stack.sockets[name]) for name in sorted(stack.sockets)]
    blocks += [_watcher_entries(stack.watchers[name]) for name in sorted(stack.watchers)]
    entries: list[_Entry] = []
    for index, block in enumerate(blocks):
        if index:
            entries.append((None, ""))
        entries += block
    return _render(entries, comments or {})


def dump_watcher(spec: WatcherSpec, *, mask_secrets: bool = False) -> str:
    """One watcher as `[watchers.NAME]` and its sub-tables; with `mask_secrets`,
    secrets masked (see stack.spec.secrets)."""
    if mask_secrets:
        spec = masked(spec)
    return _render(_watcher_entries(spec), {})


def _render(entries: list[_Entry], comments: Comments) -> str:
    written = {anchor for anchor, _ in entries if anchor is not None}
    above: dict[Anchor, list[str]] = {}
    for anchor, lines in comments.items():
        while anchor and anchor not in written:
            anchor = anchor[:-1]
        above.setdefault(anchor, []).extend(lines)
    out = [_comment(line) for line in above.pop((), [])]
    if out and entries:
        out.append("")
    for at, text in entries:
        if at is not None:
            out += [_comment(line) for line in above.pop(at, [])]
        out.append(text)
    return "".join(line + "\n" for line in out)


def _comment(text: str) -> str:
    """`# text`, its control characters escaped: TOML allows none in a comment (and a
    newline would end it)."""
    return "# " + _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _watcher_entries(spec: WatcherSpec) -> list[_Entry]:
    header = f"watchers.{_key(spec.name)}"
    at: Anchor = ("watchers", spec.name)
    entries: list[_Entry] = [(at, f"[{header}]")]
    for item in fields(WatcherSpec):
        name = item.name
        if name == "name" or name in _TABLES:
            continue
        value = getattr(spec, name)
        if name in _ALWAYS or value != getattr(_DEFAULT_WATCHER, name):
            entries.append(((*at, name), f"{name} = {_value(value, octal=name == 'umask')}"))
    for limit, amount in sorted(spec.rlimits.items()):
        entries.append(((*at, f"rlimit_{limit}"), f"rlimit_{limit} = {_value(amount)}"))
    tables: list[tuple[str, Iterable[tuple[str, Any]]]] = []
    if spec.env:
        tables.append(("env", sorted(spec.env.items())))
    if spec.flapping != FlappingSpec():
        tables.append(("flapping", _changed(spec.flapping, FlappingSpec())))
    for stream in ("stdout_stream", "stderr_stream"):
        value = getattr(spec, stream)
        if value != StreamSpec():
            tables.append((stream, _changed(value, StreamSpec())))
    if spec.placement != PlacementSpec():
        tables.append(("placement", _changed(spec.placement, PlacementSpec())))
    if spec.update != UpdateSpec():
        tables.append(("update", _changed(spec.update, UpdateSpec())))
    if spec.health.type:
        tables.append(("health", _health_items(spec.health)))
    if spec.hooks:
        ordered = sorted(spec.hooks.items(), key=lambda item: HOOKS.index(item[0]))
        tables.append(("hooks", [(name, _hook_value(hook)) for name, hook in ordered]))
    for table, items in tables:
        entries.append((None, ""))
        entries += _table_entries(header, (*at, table), items)
    return entries


def _hook_value(hook: HookSpec) -> str | dict[str, Any]:
    """A hook as its command line alone when the rest is the default, else a table."""
    changed = dict(_changed(hook, _DEFAULT_HOOK))
    return hook.cmd if list(changed) == ["cmd"] else {"cmd": hook.cmd, **changed}


def _health_items(spec: HealthSpec) -> list[tuple[str, Any]]:
    """type and target always (the loader requires them), then what differs."""
    target: str | int = spec.target
    port = tcp_port(spec.target) if spec.type == "tcp" else None
    if port is not None:
        target = port  # written as a number: a string names a socket
    rest = [
        (key, value) for key, value in _changed(spec, HealthSpec()) if key not in ("type", "target")
    ]
    return [("type", spec.type), ("target", target), *rest]


def _socket_entries(spec: SocketSpec) -> list[_Entry]:
    at: Anchor = ("sockets", spec.name)
    entries: list[_Entry] = [(at, f"[sockets.{_key(spec.name)}]")]
    for item in fields(SocketSpec):
        value = getattr(spec, item.name)
        if item.name != "name" and value != getattr(_DEFAULT_SOCKET, item.name):
            line = f"{item.name} = {_value(value, octal=item.name == 'umask')}"
            entries.append(((*at, item.name), line))
    return entries


def _changed(value: Any, default: Any) -> list[tuple[str, Any]]:
    """(option, value) of every field that differs; `class_` is written `class`."""
    return [
        (item.name.removesuffix("_"), getattr(value, item.name))
        for item in fields(value)
        if getattr(value, item.name) != getattr(default, item.name)
    ]


def _table_entries(header: str, at: Anchor, items: Iterable[tuple[str, Any]]) -> list[_Entry]:
    entries: list[_Entry] = [(at, f"[{header}.{at[-1]}]")]
    entries += [((*at, key), f"{_key(key)} = {_value(value)}") for key, value in items]
    return entries


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any, *, octal: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"0o{value:03o}" if octal and value >= 0 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write a non-finite number: {value}")
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))  # `graceful_timeout = 10`; read back as 10.0
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{" + inner + "}" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}  # fmt: skip


def _string(text: str) -> str:
    """A TOML basic string; control characters escaped so the output stays one line."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
