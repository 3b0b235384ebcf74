"""The desired state as store records: the store's own schema, versioned.

One record per key under `stack/`, the same for SQLite and etcd:

    stack/generation         the state's generation, a decimal number
    stack/watchers/NAME      JSON: {"schema": 1, "spec": {...}, "active": ..., "rollout": ...}
    stack/sockets/NAME       JSON: {"schema": 1, "spec": {...}}
    stack/drained/HOST       b"drained"

Specs are written as stack.spec.plain writes the domain model (its field names, its
values), not as wire messages: renaming a proto field changes nothing here, and a
change of the model's fields that would change this format bumps SCHEMA and teaches
`decode` the older one. Each JSON record says which schema wrote it; records without
one are schema 0 (protobuf JSON, read by legacy.py). A record of a newer schema than
this code knows is refused, by name. `outdated` tells which records a leader should
rewrite (Controller.load does, once, after taking over).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from stack.controller.desired import DesiredState, DesiredWatcher
from stack.controller.rollout import Rollout
from stack.controller.store import legacy
from stack.spec.model import SocketSpec, WatcherSpec
from stack.spec.plain import PlainError, from_plain, to_plain
from stack.spec.version import WatcherVersion

SCHEMA = 1
"""The schema this code writes, and the newest it reads."""
PREFIX = "stack/"
GENERATION_KEY = "stack/generation"
WATCHER_PREFIX = "stack/watchers/"
SOCKET_PREFIX = "stack/sockets/"
DRAINED_PREFIX = "stack/drained/"


class SchemaError(ValueError):
    """A record that no schema this code knows describes: one line naming its key."""


# ---- writing ----


def encode(state: DesiredState) -> dict[str, bytes]:
    """The state as store records (key -> bytes), in the current schema."""
    records = {GENERATION_KEY: str(state.generation).encode()}
    for name, watcher in state.watchers.items():
        record: dict[str, Any] = {
            "schema": SCHEMA,
            "spec": to_plain(watcher.spec),
            "active": watcher.active,
            "restart_token": watcher.restart_token,
            "graceful": watcher.graceful,
            "reset_token": watcher.reset_token,
        }
        if watcher.rollout is not None:
            record["rollout"] = _encode_rollout(watcher.rollout)
        records[WATCHER_PREFIX + name] = _dumps(record)
    for name, sock in state.sockets.items():
        records[SOCKET_PREFIX + name] = _dumps({"schema": SCHEMA, "spec": to_plain(sock)})
    for host_id in state.drained:
        records[DRAINED_PREFIX + host_id] = b"drained"
    return records


def record_changes(old: DesiredState, new: DesiredState) -> tuple[dict[str, bytes], list[str]]:
    """The puts and deletes that turn the stored `old` into `new`."""
    before, after = encode(old), encode(new)
    puts = {key: value for key, value in after.items() if before.get(key) != value}
    deletes = sorted(key for key in before if key not in after)
    return puts, deletes


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


def _encode_rollout(rollout: Rollout) -> dict[str, Any]:
    """A rollout: each earlier version once, with its pinned and batch ids."""
    versions: dict[str, dict[str, Any]] = {}
    for key, wids in (("pinned", rollout.pinned), ("batch", rollout.batch)):
        for wid, version in sorted(wids.items()):
            entry = versions.setdefault(
                version.label,
                {
                    "spec": to_plain(version.spec),
                    "restart_token": version.restart_token,
                    "sockets": [to_plain(sock) for sock in version.sockets],
                    "pinned": [],
                    "batch": [],
                },
            )
            cast(list[int], entry[key]).append(wid)
    return {
        "total": rollout.total,
        "halted": rollout.halted,
        "versions": [versions[label] for label in sorted(versions)],
    }


# ---- reading ----


def schema_of(key: str, value: bytes) -> int:
    """Which schema wrote the record (0: before the store had its own)."""
    if not key.startswith((WATCHER_PREFIX, SOCKET_PREFIX)):
        return SCHEMA  # the generation and drained hosts: the same in every schema
    record = _loads(key, value)
    schema = record.get("schema", 0)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 0:
        raise SchemaError(f"store record {key}: bad schema {schema!r}")
    return schema


def outdated(records: Mapping[str, bytes]) -> list[str]:
    """The keys of records an older schema wrote (to rewrite in the current one)."""
    return sorted(key for key, value in records.items() if schema_of(key, value) < SCHEMA)


def decode(records: Mapping[str, bytes]) -> DesiredState:
    """The state stored as `records`, whichever schemas wrote them (an empty store is
    the empty state); SchemaError naming the first record that cannot be read."""
    sockets: dict[str, SocketSpec] = {}
    for key, value in records.items():
        if key.startswith(SOCKET_PREFIX):
            sock = _read(key, value, _socket)
            sockets[sock.name] = sock
    watchers: dict[str, DesiredWatcher] = {}
    for key, value in records.items():
        if key.startswith(WATCHER_PREFIX):
            watcher = _read(key, value, lambda record, schema: _watcher(record, schema, sockets))
            watchers[watcher.spec.name] = watcher
    drained = frozenset(
        key.removeprefix(DRAINED_PREFIX) for key in records if key.startswith(DRAINED_PREFIX)
    )
    try:
        generation = int(records.get(GENERATION_KEY, b"0"))
    except ValueError:
        raise SchemaError(f"store record {GENERATION_KEY}: not a number") from None
    return DesiredState(
        watchers=MappingProxyType(dict(sorted(watchers.items()))),
        sockets=MappingProxyType(dict(sorted(sockets.items()))),
        generation=generation,
        drained=drained,
    )


def _loads(key: str, value: bytes) -> dict[str, Any]:
    try:
        record = json.loads(value)
    except ValueError:
        raise SchemaError(f"store record {key}: not JSON") from None
    if not isinstance(record, dict):
        raise SchemaError(f"store record {key}: not a JSON object")
    return record


def _read(key: str, value: bytes, reader: Any) -> Any:
    """`reader(record, schema)` for the record at `key`; SchemaError naming it."""
    schema = schema_of(key, value)
    if schema > SCHEMA:
        raise SchemaError(
            f"store record {key} was written by a newer controller (schema {schema}); "
            f"this one reads schema {SCHEMA} at most"
        )
    try:
        return reader(_loads(key, value), schema)
    except (PlainError, SchemaError) as exc:
        raise SchemaError(f"store record {key}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"store record {key} (schema {schema}): {exc!r}") from None


def _socket(record: dict[str, Any], schema: int) -> SocketSpec:
    if schema == 0:
        return legacy.socket(record)
    return from_plain(SocketSpec, record["spec"], "spec")


def _watcher(
    record: dict[str, Any], schema: int, stack_sockets: Mapping[str, SocketSpec]
) -> DesiredWatcher:
    rollout = record.get("rollout")
    if schema == 0:
        spec = legacy.watcher_spec(record["spec"])
        decoded = None if rollout is None else legacy.rollout(rollout, stack_sockets)
    else:
        spec = from_plain(WatcherSpec, record["spec"], "spec")
        decoded = None if rollout is None else _decode_rollout(rollout)
    return DesiredWatcher(
        spec=spec,
        active=_typed(record, "active", bool),
        restart_token=_typed(record, "restart_token", int),
        graceful=_typed(record, "graceful", bool),
        reset_token=_typed(record, "reset_token", int),
        rollout=decoded,
    )


def _decode_rollout(data: Mapping[str, Any]) -> Rollout:
    pinned: dict[int, WatcherVersion] = {}
    batch: dict[int, WatcherVersion] = {}
    for n, entry in enumerate(data["versions"]):
        where = f"rollout.versions[{n}]"
        spec = from_plain(WatcherSpec, entry["spec"], f"{where}.spec")
        sockets = tuple(
            from_plain(SocketSpec, sock, f"{where}.sockets[{i}]")
            for i, sock in enumerate(entry["sockets"])
        )
        version = WatcherVersion(spec, _typed(entry, "restart_token", int), sockets)
        pinned.update(dict.fromkeys((int(wid) for wid in entry["pinned"]), version))
        batch.update(dict.fromkeys((int(wid) for wid in entry["batch"]), version))
    return Rollout(
        pinned=MappingProxyType(dict(sorted(pinned.items()))),
        batch=MappingProxyType(dict(sorted(batch.items()))),
        total=_typed(data, "total", int),
        halted=_typed(data, "halted", str),
    )


def _typed(record: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    """record[name], which must be a `kind` (a bool is no int here)."""
    value = record[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SchemaError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value
