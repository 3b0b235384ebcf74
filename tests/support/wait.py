"""Polling a condition with a deadline: how every test waits for something to happen.

A deadline here is how long a test waits before it gives up and says what it waited for,
not a figure the test checks: it is generous (a loaded CI runner is slow), and a passing
test never waits it out. What a test measures goes in `bench/`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    polls = _polls(check, timeout, what)
    try:
        while True:
            next(polls)
            time.sleep(interval)
    except StopIteration as found:
        return found.value  # type: ignore[no-any-return]


async def until(
    check: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.005
) -> T:
    """`wait_for` inside an event loop: the loop runs on between the checks."""
    polls = _polls(check, timeout, what)
    try:
        while True:
            next(polls)
            await asyncio.sleep(interval)
    except StopIteration as found:
        return found.value  # type: ignore[no-any-return]


def _polls(check: Callable[[], T], timeout: float, what: str) -> Generator[None, None, T]:
    """Checks until one is truthy (returned) or `timeout` passed (AssertionError); yields
    between two checks, for the caller to wait its way."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        yield
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
