"""Writing a StackSpec (or one watcher) back as stack-file TOML.

`stackctl export` and `stackctl get` show the desired state in the same format
the user wrote, so the output can be edited and applied again: `load_stack`
reads it back to an equal StackSpec. Only values that differ from the defaults
are written (plus `cmd` and `numprocesses`, which every reader wants to see).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from stack.spec.load import tcp_port
from stack.spec.model import (
    FlappingSpec,
    HealthSpec,
    PlacementSpec,
    SocketSpec,
    StackSpec,
    StreamSpec,
    UpdateSpec,
    WatcherSpec,
)
from stack.spec.secrets import masked, masked_stack

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ALWAYS = ("cmd", "numprocesses")
_TABLES = (
    "env", "rlimits", "flapping", "stdout_stream", "stderr_stream", "placement", "update",
    "health",
)  # fmt: skip
_DEFAULT_WATCHER = WatcherSpec(name="", cmd="")
_DEFAULT_SOCKET = SocketSpec(name="")


def dump_stack(stack: StackSpec, *, mask_secrets: bool = False) -> str:
    """The whole stack as TOML: sockets first, then watchers, each sorted by name;
    with `mask_secrets`, secrets masked (see stack.spec.secrets)."""
    if mask_secrets:
        stack = masked_stack(stack)
    blocks = [_socket_block(stack.sockets[name]) for name in sorted(stack.sockets)]
    blocks += [dump_watcher(stack.watchers[name]) for name in sorted(stack.watchers)]
    return "\n".join(blocks)


def dump_watcher(spec: WatcherSpec, *, mask_secrets: bool = False) -> str:
    """One watcher as `[watchers.NAME]` and its sub-tables; with `mask_secrets`,
    secrets masked (see stack.spec.secrets)."""
    if mask_secrets:
        spec = masked(spec)
    header = f"watchers.{_key(spec.name)}"
    lines = [f"[{header}]"]
    for item in fields(WatcherSpec):
        name = item.name
        if name == "name" or name in _TABLES:
            continue
        value = getattr(spec, name)
        if name in _ALWAYS or value != getattr(_DEFAULT_WATCHER, name):
            lines.append(f"{name} = {_value(value, octal=name == 'umask')}")
    for limit, amount in sorted(spec.rlimits.items()):
        lines.append(f"rlimit_{limit} = {_value(amount)}")
    blocks = ["\n".join(lines) + "\n"]
    if spec.env:
        blocks.append(_table(f"{header}.env", sorted(spec.env.items())))
    if spec.flapping != FlappingSpec():
        blocks.append(_table(f"{header}.flapping", _changed(spec.flapping, FlappingSpec())))
    for stream in ("stdout_stream", "stderr_stream"):
        value = getattr(spec, stream)
        if value != StreamSpec():
            blocks.append(_table(f"{header}.{stream}", _changed(value, StreamSpec())))
    if spec.placement != PlacementSpec():
        blocks.append(_table(f"{header}.placement", _changed(spec.placement, PlacementSpec())))
    if spec.update != UpdateSpec():
        blocks.append(_table(f"{header}.update", _changed(spec.update, UpdateSpec())))
    if spec.health.type:
        blocks.append(_table(f"{header}.health", _health_items(spec.health)))
    return "\n".join(blocks)


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


def _socket_block(spec: SocketSpec) -> str:
    items = [
        (item.name, getattr(spec, item.name))
        for item in fields(SocketSpec)
        if item.name != "name" and getattr(spec, item.name) != getattr(_DEFAULT_SOCKET, item.name)
    ]
    lines = [f"[sockets.{_key(spec.name)}]"]
    lines += [f"{key} = {_value(value, octal=key == 'umask')}" for key, value in items]
    return "\n".join(lines) + "\n"


def _changed(value: Any, default: Any) -> list[tuple[str, Any]]:
    return [
        (item.name, getattr(value, item.name))
        for item in fields(value)
        if getattr(value, item.name) != getattr(default, item.name)
    ]


def _table(header: str, items: Iterable[tuple[str, Any]]) -> str:
    lines = [f"[{header}]"] + [f"{_key(key)} = {_value(value)}" for key, value in items]
    return "\n".join(lines) + "\n"


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
