"""The clock the agent's timing rules read, passed in so that a test can replace it.

Warm-up, max_age, flapping backoff, health check intervals and graceful stop deadlines
are rules about monotonic time. The engine, its watchers and their slot runners take a
`Clock` and read the time only from it; they never call `time.monotonic()`,
`time.time()` or `asyncio.sleep` for a rule. In production that is `SYSTEM`; a test
passes a clock that moves only when told (tests/support/clock.py), so a rule about ten
seconds is checked in milliseconds and exactly at its edges.

What is not a rule stays on real time: the short polls that wait for a stopped
process group to be gone, the flush and stats loops, the session's heartbeats.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for deadlines, wall time for what status shows, and waiting."""

    def monotonic(self) -> float:
        """Seconds, for deadlines; never goes back."""
        ...

    def time(self) -> float:
        """Unix time, for what is shown (an exit's time, an event's)."""
        ...

    def timeout_at(self, deadline: float | None) -> AbstractAsyncContextManager[object]:
        """A block that raises TimeoutError once `monotonic()` reaches `deadline`
        (None: never), as `asyncio.timeout_at` does."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `monotonic()` reaches `deadline`."""
        ...


class SystemClock:
    """The real clocks: `time.monotonic` (also the event loop's) and `time.time`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def timeout_at(self, deadline: float | None) -> AbstractAsyncContextManager[object]:
        if deadline is None:
            return asyncio.timeout(None)
        return asyncio.timeout(max(0.0, deadline - time.monotonic()))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


SYSTEM: Clock = SystemClock()
