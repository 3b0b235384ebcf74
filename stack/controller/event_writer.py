"""The event writer: keeps the store's copy of the event history up to date.

While leading, it writes what the history gained and lost (EventLog.take_write) in
batches, at most `store_rate` operations a second, off the path of admin writes; when
the controller stops it writes what is left, for FLUSH_TIMEOUT at most. Not when
leadership is lost: stepping down must not wait for the store (and a newer leader's
fencing would refuse the write anyway).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from stack.controller.store.base import EVENT_WRITE_OPS, StaleTerm, StoreError
from stack.metrics.tally import timed

if TYPE_CHECKING:
    from stack.controller.controller import Controller

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 2.0
"""Seconds the writer may spend writing what is left when the controller stops."""


class EventWriter:
    """Writes the controller's event history to its store."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller
        self._failing = False
        """The last write failed (logged once until one succeeds)."""

    async def run(self) -> None:
        """Write in batches every write_interval until cancelled; flush when stopping."""
        c = self._c
        settings = c.settings.events
        per_batch = max(1, int(settings.store_rate * settings.write_interval))
        try:
            while True:
                await asyncio.sleep(settings.write_interval)
                c.events.tick(c.clock())
                await self.save(per_batch)
        finally:
            if c.stopping:
                await self._flush()

    async def _flush(self) -> None:
        """Write what the store still lacks of the history, for FLUSH_TIMEOUT at most."""
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self.save(2 * self._c.events.pending() + 1)
        except TimeoutError:
            log.warning("%d event changes were not written", self._c.events.pending())

    async def save(self, budget: int) -> None:
        """Write up to `budget` operations of the history, in transactions of at most
        EVENT_WRITE_OPS; stops at the first failure (the rest waits for the next round)."""
        c = self._c
        events = c.events
        while budget > 0 and events.pending():
            write = events.take_write(min(budget, EVENT_WRITE_OPS) - 1)
            budget -= len(write)
            try:
                commit = functools.partial(c.store.write_events, c.term, write)
                _, seconds = await asyncio.to_thread(timed, commit)
            except (StoreError, asyncio.CancelledError) as exc:
                events.failed(write)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if isinstance(exc, StaleTerm):
                    c.fenced.set()
                if not self._failing:
                    log.warning("cannot write events to the store (will retry): %s", exc)
                self._failing = True
                return
            c.metrics.committed("events", seconds)
            if self._failing:
                log.info("writing events to the store again")
                self._failing = False
