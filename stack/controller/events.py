"""Recent events: a bounded ring plus live fan-out to followers.

Agents ship their events (spawn, exit, flapping...) and the controller records
its own (apply, scale, agent_up...). `stackctl events` reads the ring, then
follows live.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from stack.controller.fanout import Fanout
from stack.v1 import types_pb2

CONTROLLER_HOST = ""
"""host_id of events the controller records itself."""


class EventLog:
    """The last `capacity` events and their followers."""

    def __init__(self, capacity: int, follower_queue: int, wall: Callable[[], float] = time.time):
        self._ring: deque[types_pb2.Event] = deque(maxlen=capacity)
        self.fanout: Fanout[types_pb2.Event] = Fanout(follower_queue)
        self._wall = wall

    def add(self, event: types_pb2.Event) -> None:
        """Keep `event` and send it to the followers."""
        self._ring.append(event)
        self.fanout.publish(event)

    def record(
        self,
        kind: str,
        message: str,
        watcher: str = "",
        severity: types_pb2.Severity = types_pb2.SEVERITY_INFO,
    ) -> None:
        """Record one of the controller's own events."""
        self.add(
            types_pb2.Event(
                at=self._wall(),
                host_id=CONTROLLER_HOST,
                watcher=watcher,
                kind=kind,
                message=message,
                severity=severity,
            )
        )

    def recent(self, watcher: str = "", lines: int = 0) -> list[types_pb2.Event]:
        """The kept events, oldest first, of one watcher (or all); the last `lines` (0: all)."""
        found = [e for e in self._ring if not watcher or e.watcher == watcher]
        return found[-lines:] if lines > 0 else found
