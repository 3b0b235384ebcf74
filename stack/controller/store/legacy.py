"""Store records of schema 0: what controllers wrote before the store had its own schema.

Those controllers stored each watcher's and socket's spec as the protobuf JSON of its
wire message, so that a renamed proto field changed the store's format. Reading them is
kept here, apart, so that a store written then opens now: the controller decodes them,
then rewrites them in the current schema (see schema.py and Controller.load). Nothing
writes schema 0 any more.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from google.protobuf import json_format

from stack.controller.rollout import Rollout
from stack.spec.model import SocketSpec, WatcherSpec, version_sockets
from stack.spec.version import WatcherVersion
from stack.v1 import types_pb2
from stack.wire.spec import socket_from_proto, watcher_from_proto


def socket(record: dict[str, Any]) -> SocketSpec:
    """A socket record of schema 0 (its SocketSpec message as JSON)."""
    return socket_from_proto(json_format.ParseDict(record, types_pb2.SocketSpec()))


def watcher_spec(data: dict[str, Any]) -> WatcherSpec:
    """A watcher's spec in a record of schema 0 (its WatcherSpec message as JSON)."""
    return watcher_from_proto(json_format.ParseDict(data, types_pb2.WatcherSpec()))


def rollout(data: Mapping[str, Any], stack_sockets: Mapping[str, SocketSpec]) -> Rollout:
    """A rollout in a watcher record of schema 0; a version stored without its sockets
    (by a still older controller) inherits the stack's of the same names, as it did then."""
    pinned: dict[int, WatcherVersion] = {}
    batch: dict[int, WatcherVersion] = {}
    for entry in data["versions"]:
        spec = watcher_spec(entry["spec"])
        if "sockets" in entry:
            sockets = tuple(socket(sock) for sock in entry["sockets"])
        else:
            sockets = version_sockets(spec, stack_sockets)
        version = WatcherVersion(spec, int(entry["restart_token"]), sockets)
        pinned.update(dict.fromkeys((int(wid) for wid in entry["pinned"]), version))
        batch.update(dict.fromkeys((int(wid) for wid in entry["batch"]), version))
    return Rollout(
        pinned=MappingProxyType(dict(sorted(pinned.items()))),
        batch=MappingProxyType(dict(sorted(batch.items()))),
        total=int(data["total"]),
        halted=str(data["halted"]),
    )
