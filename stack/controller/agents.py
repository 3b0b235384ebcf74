"""Agents as the controller sees them: each host's record and its live session.

An agent dials in and keeps one stream (see agent_service.py, the gRPC edge). Its
record keeps what it said of itself in its Hello and its last Observed (decoded into
domain types at the edge), and its session queues what the controller sends it, so
that a slow agent never blocks the controller or other agents. A second stream with
the same host id replaces the first. An agent silent for its timeout (`agent_timeout`,
longer in a large fleet: see liveness.py) is down; so is one whose stream ended. Down
agents keep their last Observed (shown as UNKNOWN).

The registry takes its clocks as arguments: when an agent was last heard from and
since when it is down are read from them, never from the system's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType

from stack.controller.containment import AgentLimits, Meter
from stack.spec.assignment import Assignment
from stack.spec.observed import Observed, ProcessState
from stack.spec.session import ControllerBody, Hello

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class AgentSession:
    """One live stream to an agent, with its outbound queue."""

    def __init__(self, host_id: str, queue_size: int) -> None:
        self.host_id = host_id
        self._queue: asyncio.Queue[tuple[int, ControllerBody] | None] = asyncio.Queue(
            maxsize=queue_size
        )
        self.closed = False
        """True once the session was replaced, dropped or ended."""
        self.last_assignment: Assignment | None = None
        """The last Assignment queued for this session (to skip repeats)."""

    def send(self, body: ControllerBody, fencing_token: int) -> None:
        """Queue a message; a session too far behind is closed (the agent reconnects)."""
        if self.closed:
            return
        try:
            self._queue.put_nowait((fencing_token, body))
        except asyncio.QueueFull:
            log.warning("agent %s is not reading its stream: dropping the session", self.host_id)
            self.close()

    def close(self) -> None:
        """End the session: its writer stops and the stream ends."""
        if self.closed:
            return
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> tuple[int, ControllerBody] | None:
        """The next message to write with its fencing token, or None once closed."""
        return await self._queue.get()


def _no_labels() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass
class AgentRecord:
    """What the controller knows of one host, kept after it goes down."""

    host_id: str
    address: str = ""
    labels: Mapping[str, str] = field(default_factory=_no_labels)
    version: str = ""
    started_at: float = 0.0
    """Unix time its agent process started (a crash restart changes it, a reload does not)."""
    reexecuted_at: float = 0.0
    """Unix time its agent last re-executed in place (reload, upgrade); 0: never."""
    capacity: int = 0
    observed: Observed = field(default_factory=Observed)
    """The last Observed it sent (the Hello's at first), as the controller kept it."""
    last_seen: float = 0.0
    """Unix time of its last message."""
    last_seen_mono: float = 0.0
    """Monotonic time of its last message (for the timeout)."""
    ready: bool = False
    """Connected and heard from within the timeout."""
    down_since: float = 0.0
    """Monotonic time it was last marked down (its share moves after reschedule_after)."""
    session: AgentSession | None = None
    """The current stream, if any."""
    reloading: bool = False
    """Its agent said it re-executes itself in place: until it dials again it is not
    down (it stays ready, its processes keep their states), unless it stays silent past
    the agent timeout."""
    meter: Meter = field(default_factory=lambda: Meter(AgentLimits()))
    """Its rate caps, and what the controller refused from it (see containment.py)."""
    assigned: dict[str, set[int]] = field(default_factory=dict)
    """watcher -> every worker id an Assignment sent it named (what it may report)."""
    reported: set[tuple[str, int]] = field(default_factory=set)
    """(watcher, wid) of every process its last kept report names."""
    announced_refusals: tuple[int, ...] = ()
    """The refusal counts the last `agent_refused` event told of."""
    refusals_announced_at: float = 0.0
    """Monotonic time before which no other `agent_refused` event is recorded."""
    stats_wanted_until: float = 0.0
    """Monotonic time until which its agent was asked to sample figures fast."""
    heartbeat: float = 0.0
    """The heartbeat interval its agent was last told (0: none yet; see heartbeats.py)."""
    longer_heartbeat: float = 0.0
    """A longer interval it was told before `heartbeat`, which it may still be sleeping
    out: its liveness allows that one's timeout until `longer_heartbeat_until`."""
    longer_heartbeat_until: float = 0.0
    """Monotonic time until which `longer_heartbeat` counts."""
    _wids: tuple[Observed, Mapping[str, frozenset[int]]] | None = field(
        default=None, repr=False, compare=False
    )
    """The report `wids` read last, and what it read (every reschedule reads each host's)."""

    def shown_state(self, drained: AbstractSet[str]) -> str:
        """What `agents` shows: "ready", "draining", "reloading" (re-executing itself in
        place, between its two streams) or "down"."""
        if not self.ready:
            return "down"
        if self.reloading and self.session is None:
            return "reloading"
        return "draining" if self.host_id in drained else "ready"

    def placement_key(self) -> frozenset[tuple[str, int, bool]]:
        """What placement reads of this host's report: each (watcher, wid, running)."""
        running = ProcessState.RUNNING
        return frozenset((p.watcher, p.wid, p.state == running) for p in self.observed.processes)

    def wids(self) -> Mapping[str, frozenset[int]]:
        """watcher -> worker ids this host reports."""
        observed = self.observed
        if self._wids is not None and self._wids[0] is observed:
            return self._wids[1]
        found: dict[str, set[int]] = {}
        for proc in observed.processes:
            found.setdefault(proc.watcher, set()).add(proc.wid)
        wids = MappingProxyType({name: frozenset(wids) for name, wids in found.items()})
        self._wids = (observed, wids)
        return wids

    def running(self) -> int:
        """How many of its reported processes have a pid."""
        return sum(1 for proc in self.observed.processes if proc.pid)


class AgentRegistry:
    """Every agent ever seen by this controller, by host id."""

    def __init__(
        self,
        queue_size: int,
        limits: AgentLimits | None = None,
        wall: Clock = time.time,
        mono: Clock = time.monotonic,
    ) -> None:
        self.records: dict[str, AgentRecord] = {}
        self._queue_size = queue_size
        self._limits = limits or AgentLimits()
        self._wall = wall
        self._mono = mono

    def connect(self, hello: Hello, peer: str) -> AgentSession:
        """Register a new stream for `hello.host_id`, replacing any previous one."""
        record = self.records.get(hello.host_id)
        if record is None:
            record = AgentRecord(host_id=hello.host_id, meter=Meter(self._limits))
            self.records[hello.host_id] = record
        elif record.session is not None:
            log.info("agent %s reconnected: replacing its previous stream", hello.host_id)
            record.session.close()
        record.address = hello.address or peer
        record.labels = hello.labels
        record.version = hello.version
        record.started_at = hello.started_at
        record.reexecuted_at = hello.reexecuted_at
        record.capacity = hello.capacity
        record.observed = hello.observed
        record.session = AgentSession(hello.host_id, self._queue_size)
        record.reloading = False
        record.stats_wanted_until = 0.0  # a new stream: the agent knows of no ask yet
        record.ready = True
        self._touch(record)
        return record.session

    def current(self, session: AgentSession) -> AgentRecord | None:
        """The record of `session` if it is still that host's current stream."""
        record = self.records.get(session.host_id)
        if record is None or record.session is not session:
            return None
        return record

    def heard(self, session: AgentSession) -> tuple[AgentRecord | None, bool]:
        """Note a message on `session`: (its record or None if replaced, came back up?)."""
        record = self.current(session)
        if record is None:
            return None, False
        self._touch(record)
        came_back = not record.ready
        record.ready = True
        return record, came_back

    def disconnect(self, session: AgentSession) -> bool:
        """The stream ended: mark the host down. False when it was already replaced, or
        when its agent said it is reloading (it stays ready: see AgentRecord.reloading)."""
        session.close()
        record = self.current(session)
        if record is None:
            return False
        record.session = None
        if record.reloading:
            return False
        was_ready = record.ready
        if was_ready:
            record.ready = False
            record.down_since = self._mono()
        return was_ready

    def mark_down(self, host_id: str, now: float) -> None:
        """Mark a ready agent down from monotonic `now` on (liveness.check found it silent)."""
        record = self.records[host_id]
        if record.ready:
            record.ready = False
            record.down_since = now

    def ready(self) -> list[AgentRecord]:
        """The ready agents with a live session, in host id order."""
        return [r for _, r in sorted(self.records.items()) if r.ready and r.session is not None]

    def reporting(self) -> list[AgentRecord]:
        """The ready agents, a reloading one included (its last report stands), in host
        id order."""
        return [r for _, r in sorted(self.records.items()) if r.ready]

    def _touch(self, record: AgentRecord) -> None:
        record.last_seen = self._wall()
        record.last_seen_mono = self._mono()
