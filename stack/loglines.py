"""Which log lines a reader was given already, when the same lines may come again.

Two places hand out lines that overlap: the controller's `Logs` sends a tail (read back
from the agents' files) and then the live lines, which start before the tail ends; and
stackctl, reopening a follow after a failover, asks for a tail again since the last line
it printed. Lines have no number, only the time the agent read them, which the agents'
files keep to the millisecond. So a reader notes, per host, the last millisecond it gave
out and how many of each line it gave in it (a millisecond may hold several equal lines);
a repeat is then, per host, a line of an earlier millisecond, or one of that last
millisecond that was given already. Lines of one host come in the order they were read,
so once a line of a host is new, every later line of it is.

Shared by the controller and stackctl; pure.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Protocol

_Key = tuple[str, int, str, str]


class ShippedLine(Protocol):
    """An output line as both ends hold it (the controller's domain LogLine, the
    wire's LogLine at stackctl): what telling repeats reads of it."""

    @property
    def at(self) -> float: ...
    @property
    def host_id(self) -> str: ...
    @property
    def watcher(self) -> str: ...
    @property
    def wid(self) -> int: ...
    @property
    def stream(self) -> str: ...
    @property
    def text(self) -> str: ...


def millisecond(at: float) -> int:
    """The millisecond of a line's time as the agents' files keep it (truncated); a time
    read back from a file (a whole millisecond in binary floating point) gives its own."""
    return math.floor(at * 1000 + 1e-4)


def _key(line: ShippedLine) -> _Key:
    return (line.watcher, line.wid, line.stream, line.text)


class SeenLines:
    """Per host, the last millisecond of the lines given out, and those lines."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, Counter[_Key]]] = {}

    def __bool__(self) -> bool:
        return bool(self._last)

    def note(self, line: ShippedLine) -> None:
        """`line` was given out."""
        ms = millisecond(line.at)
        last = self._last.get(line.host_id)
        if last is None or ms > last[0]:
            self._last[line.host_id] = (ms, Counter([_key(line)]))
        elif ms == last[0]:
            last[1][_key(line)] += 1

    def since(self) -> float:
        """A time at or before every host's last line: where a tail must start to cover
        what may be missing after them."""
        return (min(ms for ms, _ in self._last.values()) - 1) / 1000 if self._last else 0.0

    def replay(self) -> Replay:
        """A filter for a stream of lines that repeats some of those given so far."""
        return Replay({host: (ms, Counter(seen)) for host, (ms, seen) in self._last.items()})


class Replay:
    """Tells the lines given already from new ones, host by host (see the module)."""

    def __init__(self, last: dict[str, tuple[int, Counter[_Key]]]) -> None:
        self._checking = last

    def repeats(self, line: ShippedLine) -> bool:
        """Whether `line` was given already (each given line matches once)."""
        last = self._checking.get(line.host_id)
        if last is None:
            return False
        last_ms, unmatched = last
        ms = millisecond(line.at)
        if ms < last_ms:
            return True
        key = _key(line)
        if ms == last_ms and unmatched[key] > 0:
            unmatched[key] -= 1
            return True
        del self._checking[line.host_id]  # new: every later line of this host is too
        return False
