"""What each host should run: desired state + placement -> one Assignment per host.

Pure. An Assignment is level-triggered: the host's whole share, every watcher
of the stack (with the worker ids placed there, possibly none) and every socket.
"""

from __future__ import annotations

from collections.abc import Mapping

from stack.controller.desired import DesiredState
from stack.controller.placement import Placement
from stack.controller.rollout import host_share
from stack.spec.convert import socket_to_proto, watcher_to_proto
from stack.v1 import agent_pb2


def build_assignment(
    desired: DesiredState,
    placement: Placement,
    host_id: str,
    fencing_token: int,
    handoff: Mapping[str, frozenset[int]] | None = None,
) -> agent_pb2.Assignment:
    """The Assignment for `host_id`.

    `handoff` (watcher -> wids) are processes a draining host keeps running
    until their replacements run elsewhere. During a rolling change, the ids
    still on an earlier version are pinned to it and the batch is on probation.
    """
    handoff = handoff or {}
    assignment = agent_pb2.Assignment(generation=desired.generation, fencing_token=fencing_token)
    for name, watcher in sorted(desired.watchers.items()):
        wids = sorted({*placement.wids(host_id, name), *handoff.get(name, ())})
        pinned, probation = host_share(watcher.rollout, wids)
        assignment.watchers.append(
            agent_pb2.WatcherAssignment(
                spec=watcher_to_proto(watcher.spec),
                wids=wids,
                active=watcher.active,
                restart_token=watcher.restart_token,
                graceful=watcher.graceful,
                reset_token=watcher.reset_token,
                pinned=[
                    agent_pb2.PinnedVersion(
                        spec=watcher_to_proto(version.spec),
                        restart_token=version.restart_token,
                        wids=version_wids,
                    )
                    for version, version_wids in pinned
                ],
                probation=probation,
            )
        )
    for _, sock in sorted(desired.sockets.items()):
        assignment.sockets.append(socket_to_proto(sock))
    return assignment
