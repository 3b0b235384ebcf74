"""A clock that moves only when told, for the tests of the rules that depend on time.

The product takes its clocks as arguments (`mono=`, `wall=`, `clock=`, or a `now` passed
to a pure function); a test passes `clock.now` (or the clock itself, where the product
takes a `stack.agent.clock.Clock`) and moves time with `advance`, so a rule about 10
seconds is checked in microseconds and exactly at its edges.

What waits on this clock (`timeout_at`, `sleep_until`) wakes when `advance` reaches its
deadline, in order, and never before; `timers()` says what waits, so a test can make
sure the code under test is asleep on the deadline it checks before moving past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    call: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Seconds, starting at `start`; never moves on its own, never goes back. Its wall
    clock (`time`) is `wall - start` ahead of its monotonic one."""

    def __init__(self, start: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self._now = start
        self._offset = wall - start
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._offset

    def advance(self, seconds: float) -> float:
        """Move on by `seconds` (>= 0), waking what waits for a time up to the new one,
        in order; returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds}s)")
        end = self._now + seconds
        while self._timers and self._timers[0].at <= end:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, timer.at)
                timer.call()
        self._now = end
        return self._now

    def timers(self) -> list[float]:
        """The times something waits for, earliest first."""
        return sorted(timer.at for timer in self._timers if not timer.cancelled)

    def _at(self, deadline: float, call: Callable[[], object]) -> _Timer:
        timer = _Timer(deadline, next(self._seq), call)
        if deadline <= self._now:
            call()
        else:
            heapq.heappush(self._timers, timer)
        return timer

    @contextlib.asynccontextmanager
    async def timeout_at(self, deadline: float | None) -> AsyncIterator[object]:
        """A block that raises TimeoutError once the clock reaches `deadline`."""
        async with asyncio.timeout(None) as scope:
            if deadline is None:
                yield scope
                return
            loop = asyncio.get_running_loop()
            timer = self._at(deadline, lambda: scope.reschedule(loop.time()))
            try:
                yield scope
            finally:
                timer.cancel()

    async def sleep_until(self, deadline: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self._at(deadline, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            timer.cancel()

    def __repr__(self) -> str:
        return f"FakeClock({self._now})"
