"""The scheduler: applies schedule.plan to the controller's world.

It owns the placement, the warm-up deadline of a takeover and the set of agents last
seen lost; `reschedule` gathers the world, asks `schedule.plan` what to do and queues
each host's Assignment where it changed. Agent messages come in storms (a thousand
agents reconnecting after a controller restart), so they reschedule once per window
(`reschedule_soon`); operator changes reschedule at once. The window is RESCHEDULE_WINDOW,
or longer when a pass is slow (a large fleet): a storm of ten thousand agents joining is
then placed in a few passes, not in one pass per few agents, each of which places the
whole fleet (see schedule.window).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from stack.controller import schedule
from stack.controller.liveness import warming
from stack.controller.placement import Placement
from stack.spec.assignment import Assignment

if TYPE_CHECKING:
    from stack.controller.agents import AgentRecord
    from stack.controller.controller import Controller


class Scheduler:
    """Placement and Assignments for one controller while it leads."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller
        self.placement = Placement()
        self.warm_until = 0.0
        """Monotonic time the warm-up after a takeover ends (0: over, or none)."""
        self.hold_until = 0.0
        """Monotonic time the hold after a takeover ends (0: over, or none)."""
        self.hold: schedule.Hold | None = None
        """What a takeover keeps in place after its warm-up (see schedule.restrain)."""
        self.lost: frozenset[str] = frozenset()
        """Agents down past reschedule_after at the last placement."""
        self._handle: asyncio.TimerHandle | None = None
        self._placed_for: Placement | None = None
        self._placed_where: dict[tuple[str, int], str] = {}
        self._last: schedule.Plan | None = None
        """The plan applied last (its Assignments are kept where nothing changed)."""
        self._cost = 0.0
        """Seconds the last reschedule took (the window after it grows with it)."""

    def reset(self) -> None:
        """Forget everything (leadership ended)."""
        self.cancel()
        self.placement = Placement()
        self._last = None
        self.lost = frozenset()
        self.hold_until, self.hold = 0.0, None

    def cancel(self) -> None:
        """Drop a pending `reschedule_soon`."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def warming_up(self) -> bool:
        """Whether agents still have time to report after a takeover (see liveness.py)."""
        return warming(self._c.clock(), self.warm_until)

    def warm_in(self) -> float:
        """Seconds until the agents had their time to reconnect (0: they had it)."""
        return max(0.0, self.warm_until - self._c.clock())

    def reschedule_soon(self) -> None:
        """Reschedule once for all the agent messages of the next window (see
        schedule.window)."""
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(schedule.window(self._cost), self._deferred)

    def _deferred(self) -> None:
        self._handle = None
        if not self._c.stopping:
            self.reschedule()

    def reschedule(self) -> None:
        """Place anew and queue a new Assignment to every host whose share changed."""
        c = self._c
        began = c.clock()
        records = c.agents.records.values()
        self.lost = schedule.lost_hosts(records, began, c.settings.reschedule_after)
        plan = schedule.plan(
            c.state,
            self._records(),
            self.placement,
            lost=self.lost,
            warming=self.warming_up(),
            term=c.term,
            hold=self._holding(),
            last=self._last,
        )
        self._apply(plan)
        self._cost = c.clock() - began

    def rebalance(self, watcher: str) -> int:
        """Spread a watcher's processes evenly again; return how many move."""
        c = self._c
        plan, moved = schedule.rebalanced(
            watcher,
            c.state,
            self._records(),
            self.placement,
            lost=self.lost,
            term=c.term,
            warming=self.warming_up(),
            hold=self._holding(),
            last=self._last,
        )
        self._apply(plan)
        return moved

    def _holding(self) -> schedule.Hold | None:
        """The hold after a takeover while it lasts."""
        return self.hold if self.hold_until and self._c.clock() < self.hold_until else None

    def release(self) -> None:
        """End the hold after a takeover (reschedule_after has passed)."""
        self.hold_until, self.hold = 0.0, None

    def placed(self) -> dict[str, set[int]]:
        """watcher -> every worker id placed on some host now."""
        return schedule.placed_ids(self.placement)

    def placed_where(self) -> dict[tuple[str, int], str]:
        """(watcher, wid) -> the host it is placed on, computed once per placement
        (agents' reports read it often)."""
        if self._placed_for is not self.placement:
            self._placed_where = schedule.placed_where(self.placement)
            self._placed_for = self.placement
        return self._placed_where

    def _records(self) -> list[AgentRecord]:
        return [record for _, record in sorted(self._c.agents.records.items())]

    def _apply(self, plan: schedule.Plan) -> None:
        """Keep the plan's placement; queue each Assignment that differs from the last
        one its session was sent."""
        self.placement = plan.placement
        self._last = plan
        if self.hold is not None and plan.hold is not None:
            self.hold = plan.hold
        c = self._c
        for host_id, assignment in plan.assignments.items():
            record = c.agents.records[host_id]
            session = record.session
            assert session is not None
            if assignment is session.last_assignment or assignment == session.last_assignment:
                continue
            session.last_assignment = assignment
            _note_assigned(record, assignment, c.state.watchers)
            session.send(assignment, c.term)


def _note_assigned(
    record: AgentRecord, assignment: Assignment, watchers: Mapping[str, object]
) -> None:
    """Remember which worker ids `record`'s host was ever told of (what it may report),
    forgetting watchers no longer in the desired state."""
    for share in assignment.watchers:
        record.assigned.setdefault(share.spec.name, set()).update(share.wids)
    for gone in [name for name in record.assigned if name not in watchers]:
        del record.assigned[gone]
