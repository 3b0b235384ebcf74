"""Status and agent listings: desired state + placement + what agents observe.

Pure: builds the AdminService replies from values, so the rules (worst phase
wins, processes of a down agent are UNKNOWN) are easy to test.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from stack.controller.agents import AgentRecord
from stack.controller.desired import DesiredState
from stack.controller.placement import Placement
from stack.v1 import admin_pb2, types_pb2

_PHASE_RANK = {
    types_pb2.WATCHER_PHASE_UNSPECIFIED: 0,
    types_pb2.WATCHER_PHASE_ACTIVE: 1,
    types_pb2.WATCHER_PHASE_STOPPED: 2,
    types_pb2.WATCHER_PHASE_FLAPPING: 3,
    types_pb2.WATCHER_PHASE_FATAL: 4,
}


def watcher_status(
    name: str, desired: DesiredState, placement: Placement, agents: Iterable[AgentRecord]
) -> admin_pb2.WatcherStatus:
    """The status of one desired watcher."""
    watcher = desired.watchers[name]
    status = admin_pb2.WatcherStatus(
        name=name, numprocesses=watcher.spec.numprocesses, active=watcher.active
    )
    worst: types_pb2.WatcherObserved | None = None
    processes: list[types_pb2.ProcessStatus] = []
    for record in agents:
        for observed in record.observed.watchers:
            if observed.name == name and (
                worst is None or _PHASE_RANK[observed.phase] > _PHASE_RANK[worst.phase]
            ):
                worst = observed
        for proc in record.observed.processes:
            if proc.watcher != name:
                continue
            copy = types_pb2.ProcessStatus()
            copy.CopyFrom(proc)
            copy.host_id = record.host_id
            if not record.ready:
                copy.state = types_pb2.PROCESS_STATE_UNKNOWN
                copy.message = f"agent {record.host_id} is down"
            processes.append(copy)
    if worst is not None and worst.phase != types_pb2.WATCHER_PHASE_UNSPECIFIED:
        status.phase = worst.phase
        status.message = worst.message
        status.retry_at = worst.retry_at
    else:
        status.phase = (
            types_pb2.WATCHER_PHASE_ACTIVE if watcher.active else types_pb2.WATCHER_PHASE_STOPPED
        )
    processes.sort(key=lambda p: (p.wid, p.host_id))
    status.processes.extend(processes)
    status.running = sum(1 for p in processes if p.state == types_pb2.PROCESS_STATE_RUNNING)
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


def agent_state(record: AgentRecord, drained: AbstractSet[str]) -> str:
    """ "ready", "draining" or "down"."""
    if not record.ready:
        return "down"
    return "draining" if record.host_id in drained else "ready"


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
                labels=record.labels,
                state=agent_state(record, drained),
                processes=len(record.observed.processes),
                last_seen=record.last_seen,
                version=record.version,
                generation=record.observed.generation,
                started_at=record.started_at,
                reexecuted_at=record.reexecuted_at,
            )
        )
    return reply
