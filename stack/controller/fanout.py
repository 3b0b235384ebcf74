"""Fan-out of a stream of items (events, log lines) to live followers.

Each follower gets its own bounded queue, in items and (for output lines) in
bytes; publishing never waits. A follower too slow to keep up loses items
(counted), and never slows or grows the controller, nor the other followers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


def _no_size(_: object) -> int:
    return 0


class Follower(Generic[T]):
    """One follower's bounded queue of matching items: at most `size` items, and at
    most `max_bytes` of them as `measure` counts (0: no byte bound)."""

    def __init__(
        self,
        accept: Callable[[T], bool],
        size: int,
        max_bytes: int = 0,
        measure: Callable[[T], int] = _no_size,
    ) -> None:
        self._accept = accept
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=size)
        self._closed = False
        self._max_bytes = max_bytes
        self._measure = measure
        self.queued_bytes = 0
        """What the queued items weigh now."""
        self.dropped = 0
        """Items lost because the queue was full."""

    def offer(self, item: T) -> None:
        """Queue `item` if it matches; drop it when the follower is behind."""
        if self._closed or not self._accept(item):
            return
        weight = self._measure(item)
        if self._max_bytes and self.queued_bytes + weight > self._max_bytes:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self.queued_bytes += weight

    async def get(self) -> T | None:
        """The next item, waiting for one; None once the fan-out is closed."""
        if self._closed:
            return None
        item = await self._queue.get()
        if item is None:
            self._closed = True
            return None
        self.queued_bytes -= self._measure(item)
        return item

    def close(self) -> None:
        """Wake the reader with the end of the stream, dropping what it has not read."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class Fanout(Generic[T]):
    """Publishes items to every current follower."""

    def __init__(
        self, queue_size: int, max_bytes: int = 0, measure: Callable[[T], int] = _no_size
    ) -> None:
        self._queue_size = queue_size
        self._max_bytes = max_bytes
        self._measure = measure
        self._followers: set[Follower[T]] = set()

    @contextmanager
    def follow(self, accept: Callable[[T], bool] = lambda _: True) -> Iterator[Follower[T]]:
        """A follower that receives matching items while the block runs."""
        follower: Follower[T] = Follower(accept, self._queue_size, self._max_bytes, self._measure)
        self._followers.add(follower)
        try:
            yield follower
        finally:
            self._followers.discard(follower)

    def close(self) -> None:
        """End every follower's stream (the controller is stopping)."""
        for follower in tuple(self._followers):
            follower.close()

    def publish(self, item: T) -> None:
        """Offer `item` to every follower; never blocks."""
        for follower in tuple(self._followers):
            follower.offer(item)

    def __len__(self) -> int:
        return len(self._followers)
