"""Status and agent listings: desired state + placement + what agents observe.

Part of the admin edge: builds the AdminService replies from domain values, so the
rules (worst phase wins, processes of a down agent are UNKNOWN) are easy to test.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import cast

from stack.controller.agents import AgentRecord
from stack.controller.desired import DesiredState
from stack.controller.placement import Placement
from stack.spec.observed import ProcessState, ProcessStatus, WatcherObserved, WatcherPhase
from stack.v1 import admin_pb2, types_pb2
from stack.wire.agent import process_to_proto

_PHASE_RANK = {
    WatcherPhase.UNSPECIFIED: 0,
    WatcherPhase.ACTIVE: 1,
    WatcherPhase.STOPPED: 2,
    WatcherPhase.FLAPPING: 3,
    WatcherPhase.FATAL: 4,
}


def watcher_status(
    name: str, desired: DesiredState, placement: Placement, agents: Iterable[AgentRecord]
) -> admin_pb2.WatcherStatus:
    """The status of one desired watcher."""
    watcher = desired.watchers[name]
    status = admin_pb2.WatcherStatus(
        name=name, numprocesses=watcher.spec.numprocesses, active=watcher.active
    )
    worst: WatcherObserved | None = None
    processes: list[ProcessStatus] = []
    for record in agents:
        for observed in record.observed.watchers:
            if observed.name == name and (
                worst is None or _PHASE_RANK[observed.phase] > _PHASE_RANK[worst.phase]
            ):
                worst = observed
        for proc in record.observed.processes:
            if proc.watcher != name:
                continue
            if not record.ready:
                proc = replace(
                    proc, state=ProcessState.UNKNOWN, message=f"agent {record.host_id} is down"
                )
            processes.append(proc)
    phase = WatcherPhase.ACTIVE if watcher.active else WatcherPhase.STOPPED
    if worst is not None and worst.phase != WatcherPhase.UNSPECIFIED:
        phase = worst.phase
        status.message = worst.message
        status.retry_at = worst.retry_at
    status.phase = cast(types_pb2.WatcherPhase, int(phase))
    processes.sort(key=lambda p: (p.wid, p.host_id))
    status.processes.extend(process_to_proto(proc) for proc in processes)
    status.running = sum(1 for p in processes if p.state == ProcessState.RUNNING)
    pending = placement.pending.get(name)
    if pending is not None:
        status.pending = pending.count
        status.pending_reason = pending.reason
    if watcher.rollout is not None:
        status.rollout = watcher.rollout.summary()
    return status


def status_reply(
    desired: DesiredState, placement: Placement, agents: list[AgentRecord], watcher: str = ""
) -> admin_pb2.StatusReply:
    """Status of one watcher or of all, by name."""
    names = [watcher] if watcher else sorted(desired.watchers)
    reply = admin_pb2.StatusReply(generation=desired.generation)
    for name in names:
        reply.watchers.append(watcher_status(name, desired, placement, agents))
    return reply


def agents_reply(
    agents: Iterable[AgentRecord], drained: AbstractSet[str] = frozenset()
) -> admin_pb2.AgentsReply:
    """Every known agent, by host id."""
    reply = admin_pb2.AgentsReply()
    for record in sorted(agents, key=lambda r: r.host_id):
        refusals = record.meter.refusals
        reply.agents.append(
            admin_pb2.AgentInfo(
                ignored_processes=refusals.ignored_processes,
                refused_reports=refusals.refused_reports,
                dropped_events=refusals.dropped_events,
                dropped_log_lines=refusals.dropped_log_lines,
                host_id=record.host_id,
                address=record.address,
                labels=dict(record.labels),
                state=record.shown_state(drained),
                processes=len(record.observed.processes),
                last_seen=record.last_seen,
                version=record.version,
                generation=record.observed.generation,
                started_at=record.started_at,
                reexecuted_at=record.reexecuted_at,
            )
        )
    return reply
