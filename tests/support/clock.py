"""A clock that moves only when told, for unit tests of the rules that depend on time.

The product takes its clocks as arguments (`mono=`, `wall=`, `clock=`, or a `now` passed
to a pure function); a test passes `clock.now` and moves time with `advance`, so a rule
about 10 seconds is checked in microseconds and exactly at its edges.
"""

from __future__ import annotations


class FakeClock:
    """Seconds, starting at `start`; never moves on its own, never goes back."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move on by `seconds` (>= 0); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds}s)")
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now})"
