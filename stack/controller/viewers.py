"""Bounds on what people and scripts reading the controller may make it hold.

A viewer may only read, but reading costs the controller memory: every `logs -f` or
`events -f` keeps a queue, and a tail gathers lines from every agent. So each viewer
(one certificate, the local socket, or one plaintext peer) may hold at most
`max_follows` follow streams at once; a tail asks for at most `max_tail_lines` lines
and returns at most `max_tail_bytes`; and a follower too slow for a flood of output
loses lines beyond `follower_bytes` (see fanout.py) instead of growing the controller.

Pure bookkeeping: who the viewer is is decided at the gRPC edge (admin.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stack.controller.errors import InvalidArgument, ResourceExhausted
from stack.spec.reports import LogLine


@dataclass(frozen=True)
class ViewerLimits:
    """What one viewer may make the controller hold."""

    max_follows: int = 8
    """Follow streams (`logs -f`, `events -f`) one viewer may hold open at once."""
    max_tail_lines: int = 10_000
    """Lines one `logs -n` or `events -n` may ask for."""
    max_tail_bytes: int = 8 * 1024 * 1024
    """Bytes of output one tail returns at most (its newest lines)."""
    follower_bytes: int = 4 * 1024 * 1024
    """Output one follower may have waiting; beyond it, lines are dropped for it alone."""


class FollowSlots:
    """How many follow streams each viewer holds."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def take(self, viewer: str) -> None:
        """One more follow stream for `viewer`; ResourceExhausted over the limit."""
        held = self._held.get(viewer, 0)
        if held >= self.limit:
            raise ResourceExhausted(
                f"too many follow streams for {viewer}: at most {self.limit} at once; "
                "close one (logs -f, events -f) first"
            )
        self._held[viewer] = held + 1

    def give_back(self, viewer: str) -> None:
        """A follow stream of `viewer` ended."""
        left = self._held.get(viewer, 0) - 1
        if left > 0:
            self._held[viewer] = left
        else:
            self._held.pop(viewer, None)

    def held(self, viewer: str) -> int:
        """How many follow streams `viewer` holds."""
        return self._held.get(viewer, 0)


def check_tail(lines: int, limits: ViewerLimits) -> None:
    """InvalidArgument unless 0 <= `lines` <= max_tail_lines."""
    if not 0 <= lines <= limits.max_tail_lines:
        raise InvalidArgument(f"lines must be between 0 and {limits.max_tail_lines}, got {lines}")


def newest_within(lines: Sequence[LogLine], max_bytes: int) -> Sequence[LogLine]:
    """The newest of `lines` (oldest first) whose sizes add up to `max_bytes` at most."""
    total = 0
    for index in range(len(lines) - 1, -1, -1):
        total += lines[index].weight
        if total > max_bytes:
            return lines[index + 1 :]
    return lines
