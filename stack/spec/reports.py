"""What agents and the controller record besides state: events and output lines."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.IntEnum):
    """How much an event matters (wire: stack.v1.Severity)."""

    UNSPECIFIED = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: a spawn, an exit, flapping, an apply..."""

    at: float
    """Unix time."""
    kind: str
    """`spawn`, `exit`, `flapping`, `apply`..."""
    message: str
    host_id: str = ""
    """The host it happened on; "" for the controller's own."""
    watcher: str = ""
    """"" for host or controller events."""
    wid: int = 0
    """0 when not about one process."""
    severity: Severity = Severity.INFO
    seq: int = 0
    """The controller's number for it (0 as agents send them; see controller/events.py)."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a worker wrote, as its agent read it."""

    at: float
    """Unix time the agent read it."""
    host_id: str
    watcher: str
    wid: int
    stream: str
    """"out" or "err"."""
    text: str
    """Without the trailing newline."""

    @property
    def weight(self) -> int:
        """Bytes it weighs in a message, about: its text, its names and their framing
        (what caps on output in bytes count)."""
        names = len(self.host_id) + len(self.watcher) + len(self.stream)
        return len(self.text.encode()) + names + 24
