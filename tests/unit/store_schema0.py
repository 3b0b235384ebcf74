"""Schema 0 of the controller's store, as the controllers before it had their own wrote it.

Kept as it was (only its names imported from where they live now) so that the tests
can write a store the way those controllers did and open it with today's: the specs
as the protobuf JSON of their wire messages, and optionally a rollout's versions
without their sockets, as a still older controller left them.
"""

from __future__ import annotations

import json
from typing import cast

from google.protobuf import json_format

from stack.controller.desired import DesiredState
from stack.controller.rollout import Rollout
from stack.controller.store.schema import (
    DRAINED_PREFIX,
    GENERATION_KEY,
    SOCKET_PREFIX,
    WATCHER_PREFIX,
)
from stack.wire.spec import socket_to_proto, watcher_to_proto


def encode(state: DesiredState) -> dict[str, bytes]:
    """The state as store records (key -> JSON bytes)."""
    records = {GENERATION_KEY: str(state.generation).encode()}
    for name, watcher in state.watchers.items():
        record = {
            "spec": json_format.MessageToDict(watcher_to_proto(watcher.spec)),
            "active": watcher.active,
            "restart_token": watcher.restart_token,
            "graceful": watcher.graceful,
            "reset_token": watcher.reset_token,
        }
        if watcher.rollout is not None:
            record["rollout"] = _encode_rollout(watcher.rollout)
        records[WATCHER_PREFIX + name] = json.dumps(record, sort_keys=True).encode()
    for name, sock in state.sockets.items():
        data = json_format.MessageToDict(socket_to_proto(sock))
        records[SOCKET_PREFIX + name] = json.dumps(data, sort_keys=True).encode()
    for host_id in state.drained:
        records[DRAINED_PREFIX + host_id] = b"drained"
    return records


def _encode_rollout(rollout: Rollout) -> dict[str, object]:
    """A rollout as JSON: each earlier version once, with its pinned and batch ids."""
    versions: dict[str, dict[str, object]] = {}
    for key, wids in (("pinned", rollout.pinned), ("batch", rollout.batch)):
        for wid, version in sorted(wids.items()):
            entry = versions.setdefault(
                version.label,
                {
                    "spec": json_format.MessageToDict(watcher_to_proto(version.spec)),
                    "restart_token": version.restart_token,
                    "sockets": [
                        json_format.MessageToDict(socket_to_proto(sock)) for sock in version.sockets
                    ],
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


def without_version_sockets(records: dict[str, bytes]) -> dict[str, bytes]:
    """`records` as a controller older still wrote them: rollouts' versions without
    their sockets (they inherited the stack's of the same names)."""
    older = dict(records)
    for key, value in records.items():
        doc = json.loads(value) if key.startswith(WATCHER_PREFIX) else None
        if doc is not None and "rollout" in doc:
            for entry in doc["rollout"]["versions"]:
                del entry["sockets"]
            older[key] = json.dumps(doc, sort_keys=True).encode()
    return older
