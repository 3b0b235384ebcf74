"""The domain model as plain values (dicts, lists, strings, numbers) and back.

`to_plain` writes a frozen dataclass as JSON-ready values: what fingerprints hash and
what the controller's store keeps (stack.controller.store.schema). `from_plain` reads
them back into the dataclass, by its type hints, and refuses what does not fit with a
message that names the field: a store written by hand or by a broken program must not
become a half-valid spec. A field missing from the values takes its default, so a
field added later reads older values as they were meant. An enum (a Severity, an
ExitReason...) is kept as its value.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")


class PlainError(ValueError):
    """Values that do not make the dataclass they were read as."""


def to_plain(value: Any) -> Any:
    """Dataclasses, maps and tuples as dicts and lists (asdict cannot copy a mappingproxy)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: to_plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, MappingProxyType | dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_plain(kind: type[T], data: Any, where: str = "") -> T:
    """The `kind` dataclass `data` (from `to_plain`) describes; PlainError naming the
    field (under `where`) when it does not."""
    value: T = _read(kind, data, where or kind.__name__)
    return value


def _read(kind: Any, data: Any, where: str) -> Any:
    if is_dataclass(kind):
        return _read_dataclass(kind, data, where)
    origin = typing.get_origin(kind)
    if origin is MappingProxyType or origin is dict:
        key_kind, item_kind = typing.get_args(kind)
        if not isinstance(data, dict):
            raise PlainError(f"{where}: expected a table, got {_shown(data)}")
        return MappingProxyType(
            {
                _read(key_kind, key, f"{where}.{key}"): _read(item_kind, item, f"{where}.{key}")
                for key, item in data.items()
            }
        )
    if origin is tuple:
        item_kind = typing.get_args(kind)[0]
        if not isinstance(data, list):
            raise PlainError(f"{where}: expected a list, got {_shown(data)}")
        return tuple(_read(item_kind, item, f"{where}[{n}]") for n, item in enumerate(data))
    if origin is types.UnionType or origin is typing.Union:
        for option in typing.get_args(kind):
            try:
                return _read(option, data, where)
            except PlainError:
                continue
        raise PlainError(f"{where}: {_shown(data)} is none of {kind}")
    if kind is type(None):
        if data is not None:
            raise PlainError(f"{where}: expected nothing, got {_shown(data)}")
        return None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _read_enum(kind, data, where)
    return _read_scalar(kind, data, where)


def _read_enum(kind: type[enum.Enum], data: Any, where: str) -> Any:
    if not isinstance(data, bool):
        try:
            return kind(data)
        except ValueError:
            pass
    raise PlainError(f"{where}: expected a {kind.__name__}, got {_shown(data)}")


def _read_dataclass(kind: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise PlainError(f"{where}: expected a table, got {_shown(data)}")
    hints = typing.get_type_hints(kind)
    known = {item.name: item for item in fields(kind) if item.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PlainError(f"{where}: unknown field {unknown[0]!r}")
    values = {}
    for name, item in known.items():
        if name in data:
            values[name] = _read(hints[name], data[name], f"{where}.{name}")
        elif item.default is MISSING and item.default_factory is MISSING:
            raise PlainError(f"{where}: missing field {name!r}")
    return kind(**values)


def _read_scalar(kind: Any, data: Any, where: str) -> Any:
    if kind is bool:
        if isinstance(data, bool):
            return data
    elif kind is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif kind is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif kind is str:
        if isinstance(data, str):
            return data
    else:
        raise PlainError(f"{where}: cannot read a {kind}")
    return _mismatch(kind, data, where)


def _mismatch(kind: Any, data: Any, where: str) -> Any:
    raise PlainError(f"{where}: expected {kind.__name__}, got {_shown(data)}")


def _shown(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 40 else text[:37] + "..."
