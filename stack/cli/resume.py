"""Where a follow (`events -f`, `logs -f`) stopped, and how it picks up from there.

When a follow loses its controller (a failover, a restart), the client opens the stream
again on the leader it finds. A cursor remembers what was printed and says what to ask
for then, and which of the items that come back were printed already:

- events carry the controller's sequence number, kept across failovers: the client asks
  for every event after the last one it printed (`after_seq`);
- log lines carry only the time the agent read them (to the millisecond in the agents'
  files): the client asks for a tail of the lines since the last one it printed, and
  drops those it printed already (see stack.loglines).

Both are pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from stack.loglines import Replay, SeenLines
from stack.v1 import admin_pb2, types_pb2

LAST_SEQ_KEY = "stack-last-seq"
"""Initial metadata of an Events stream: the last event's seq when it opened."""
RESUME_TAIL = 1_000
"""Log lines asked for again after a reconnection, to fill the gap (newest first)."""


class EventCursor:
    """The position of an events follow."""

    def __init__(self, watcher: str, lines: int) -> None:
        self.watcher = watcher
        self.lines = lines
        self.last_seq = 0
        """The last event printed (0: none yet)."""
        self._opened_at = 0
        """The last event the controller had when the stream first opened."""

    def request(self) -> admin_pb2.EventsRequest:
        """The request that opens (or reopens) the stream."""
        after = self.last_seq or self._opened_at
        if after:
            return admin_pb2.EventsRequest(follow=True, watcher=self.watcher, after_seq=after)
        return admin_pb2.EventsRequest(follow=True, watcher=self.watcher, lines=self.lines)

    def opened(self, metadata: Mapping[str, str]) -> None:
        """A stream opened; `metadata` is its initial metadata."""
        if not self._opened_at and not self.last_seq:
            value = metadata.get(LAST_SEQ_KEY, "0")
            self._opened_at = int(value) if value.isdigit() else 0

    def accept(self, event: types_pb2.Event) -> bool:
        """Whether `event` is new (to print); it counts as printed from now on."""
        if event.seq and event.seq <= self.last_seq:
            return False
        self.last_seq = max(self.last_seq, event.seq)
        return True


class LogCursor:
    """The position of a logs follow: the lines printed so far (see stack.loglines)."""

    def __init__(self, watcher: str, lines: int, stream: str = "", host: str = "") -> None:
        self.watcher, self.lines, self.stream, self.host = watcher, lines, stream, host
        self._printed = SeenLines()
        self._replay: Replay | None = None
        """After a reopen: tells the lines printed before from new ones."""

    def request(self) -> admin_pb2.LogsRequest:
        """The request that opens (or reopens) the stream."""
        request = admin_pb2.LogsRequest(
            watcher=self.watcher, follow=True, stream=self.stream, host=self.host
        )
        if not self._printed:
            request.lines = self.lines
            return request
        self._replay = self._printed.replay()
        request.lines = RESUME_TAIL
        request.since = self._printed.since()
        return request

    def opened(self, metadata: Mapping[str, str]) -> None:
        """A stream opened (nothing to note for logs)."""

    def accept(self, line: types_pb2.LogLine) -> bool:
        """Whether `line` is new (to print); it counts as printed from now on."""
        if self._replay is not None and self._replay.repeats(line):
            return False
        self._printed.note(line)
        return True
