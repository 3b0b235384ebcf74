"""The rollout driver: moves rolling changes on as their batches come up.

While leading, it wakes when an agent reports while a rolling change is in progress
(at rest, ten thousand agents' heartbeats wake nothing), when one begins, and at least
every POLL seconds (the unit of min_uptime), asks rollout.batch_seen what the agents
report of each batch, and commits desired.step_rollout's answer through the controller
like any other change, recording the event rollout.outcome_note asks for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from stack.aio import wait_event
from stack.controller import desired as d
from stack.controller.errors import FencedOut, Unavailable
from stack.controller.rollout import Seen, batch_seen, outcome_note

if TYPE_CHECKING:
    from stack.controller.controller import Controller

log = logging.getLogger(__name__)

POLL = 0.2
"""Seconds between two rounds at most, reports or not."""


class RolloutDriver:
    """Rolling changes in progress, advanced batch by batch."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller
        self._wake = asyncio.Event()
        self._running_since: dict[tuple[str, int, int], float] = {}
        """(watcher, wid, pid) of batch processes -> when first seen running."""
        self._rolling = True
        """Whether the last round found a rolling change in progress (True until one ran)."""

    def wake(self) -> None:
        """Something changed (a rollout began): take a step soon."""
        self._wake.set()

    def reported(self) -> None:
        """An agent reported: take a step soon if a rolling change is in progress."""
        if self._rolling:
            self._wake.set()

    def reset(self) -> None:
        """Forget what was seen running (leadership ended)."""
        self._running_since.clear()
        self._rolling = True

    async def run(self) -> None:
        """Advance rollouts when agents report, and at least every POLL seconds."""
        while True:
            await wait_event(self._wake, POLL)
            self._wake.clear()
            try:
                await self.advance()
            except (FencedOut, Unavailable) as exc:
                log.error("cannot advance rolling changes: %s", exc)

    async def advance(self) -> None:
        """Take the next step of every rollout in progress (see rollout.advance)."""
        c = self._c
        now = c.clock()
        rolling = [n for n, w in c.state.watchers.items() if w.rollout and not w.rollout.halted]
        self._rolling = bool(rolling)
        if not rolling:
            self._running_since.clear()
            return
        placed = c.scheduler.placed()
        for name in rolling:
            reports = [record.observed for record in c.agents.reporting()]
            rollout = c.state.watchers[name].rollout
            batch = set(rollout.batch) if rollout is not None else set()
            seen, first_seen = batch_seen(name, batch, reports, self._running_since, now)
            self._running_since.update(first_seen)
            outcomes: list[str] = []
            step = functools.partial(
                _step, name=name, seen=seen, wanted=placed.get(name, set()), outcomes=outcomes
            )
            await c.change(step)
            after = c.state.watchers.get(name)
            note = outcome_note(
                name, outcomes[0] if outcomes else "", after.rollout if after else None
            )
            if note is not None:
                c.events.note(note)
                c.metrics.noted(note)


def _step(
    state: d.DesiredState,
    name: str,
    seen: dict[int, Seen],
    wanted: set[int],
    outcomes: list[str],
) -> d.DesiredState:
    new, outcome = d.step_rollout(state, name, seen, wanted)
    outcomes.append(outcome)
    return new
