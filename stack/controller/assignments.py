"""What each host should run: desired state + placement -> one Assignment per host.

Pure. An Assignment is level-triggered: the host's whole share. It names only the
watchers that have worker ids on that host (placed there, kept for a drain's
handoff, or pinned to an earlier version by a rolling change, which are among
those) and only the sockets their versions inherit (an earlier version's as they
were, beside its spec). A host learns nothing of the rest of the stack, least of
all other watchers' env: an agent keeps on disk what it receives, and a host its
labels exclude must not hold another service's secrets. A watcher missing from a
host's Assignment is one the agent stops and forgets, which is what losing its
last worker id there means.

One exception: an `on_demand` watcher scaled to no worker at all (numprocesses = 0)
is kept, with no worker id, on every host its labels allow, so that its sockets stay
bound there and clients queue until it is scaled up (`resting_here`).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from stack.controller.desired import DesiredState
from stack.controller.placement import Placement
from stack.controller.rollout import host_share
from stack.spec.assignment import Assignment, PinnedVersion, WatcherAssignment
from stack.spec.model import version_sockets


def build_assignment(
    desired: DesiredState,
    placement: Placement,
    host_id: str,
    fencing_token: int,
    handoff: Mapping[str, frozenset[int]] | None = None,
    resting: AbstractSet[str] = frozenset(),
) -> Assignment:
    """The Assignment for `host_id`.

    `handoff` (watcher -> wids) are processes a draining host keeps running
    until their replacements run elsewhere. During a rolling change, the ids
    still on an earlier version are pinned to it, with the sockets that version
    inherits as they were, and the batch is on probation. The Assignment's own
    sockets are those the current versions inherit. `resting` watchers are sent even
    with no worker id here (see resting_here).
    """
    handoff = handoff or {}
    shares: list[WatcherAssignment] = []
    used: set[str] = set()
    for name, watcher in sorted(desired.watchers.items()):
        wids = sorted({*placement.wids(host_id, name), *handoff.get(name, ())})
        if not wids and name not in resting:
            continue
        pinned, probation = host_share(watcher.rollout, wids)
        used.update(sock.name for sock in version_sockets(watcher.spec, desired.sockets))
        shares.append(
            WatcherAssignment(
                spec=watcher.spec,
                wids=tuple(wids),
                active=watcher.active,
                restart_token=watcher.restart_token,
                graceful=watcher.graceful,
                reset_token=watcher.reset_token,
                pinned=tuple(
                    PinnedVersion(
                        spec=version.spec,
                        restart_token=version.restart_token,
                        wids=tuple(version_wids),
                        sockets=version.sockets,
                    )
                    for version, version_wids in pinned
                ),
                probation=tuple(probation),
            )
        )
    sockets = tuple(sock for name, sock in sorted(desired.sockets.items()) if name in used)
    return Assignment(desired.generation, fencing_token, tuple(shares), sockets)


def resting_watchers(desired: DesiredState, placement: Placement) -> frozenset[str]:
    """The on_demand watchers of numprocesses 0, placed nowhere: every host their labels
    allow keeps them with no worker, so that their sockets stay bound there for them."""
    return frozenset(
        name
        for name, watcher in desired.watchers.items()
        if watcher.spec.on_demand and watcher.spec.numprocesses == 0 and not placement.placed(name)
    )


def resting_here(
    desired: DesiredState, placement: Placement, labels: Mapping[str, str]
) -> frozenset[str]:
    """The resting watchers (see resting_watchers) a host with `labels` keeps."""
    return resting_of(resting_watchers(desired, placement), desired, labels)


def resting_of(
    resting: AbstractSet[str], desired: DesiredState, labels: Mapping[str, str]
) -> frozenset[str]:
    """Of the `resting` watchers, those a host with `labels` keeps."""
    return frozenset(
        name
        for name in resting
        if all(
            labels.get(key) == value
            for key, value in desired.watchers[name].spec.placement.labels.items()
        )
    )
