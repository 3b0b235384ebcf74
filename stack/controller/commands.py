"""Commands that go through agents: signals, and tails of workers' output.

The controller asks the agents that run a watcher and gathers their answers; nothing
here changes the desired state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stack.aio import wait_event
from stack.controller.agents import AgentRecord
from stack.controller.errors import InvalidArgument, NotFound
from stack.controller.logs import merge
from stack.controller.viewers import newest_within
from stack.spec.load import parse_signal
from stack.spec.reports import LogLine
from stack.spec.session import LOOK_SECONDS, SignalCommand, StatsWanted, TailRequest

if TYPE_CHECKING:
    from stack.controller.controller import Controller

log = logging.getLogger(__name__)


class Commands:
    """Signals and tails, through the agents that run a watcher."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller

    def signal(self, watcher: str, signal: str, wid: int, children: bool) -> tuple[int, int]:
        """Signal the watcher's running processes: (agents sent to, processes meant)."""
        c = self._c
        c.state.watcher(watcher)
        try:
            name = parse_signal(signal)
        except ValueError:
            raise InvalidArgument(f"unknown signal {signal!r}") from None
        targets = {
            record.host_id: [
                p for p in record.observed.processes
                if p.watcher == watcher and p.pid and (not wid or p.wid == wid)
            ]
            for record in c.agents.ready()
        }  # fmt: skip
        targets = {host: procs for host, procs in targets.items() if procs}
        if not targets:
            what = f"worker {wid} of {watcher!r}" if wid else f"{watcher!r}"
            raise NotFound(f"no running process of {what} to signal")
        command = SignalCommand(watcher=watcher, signal=name, wid=wid, children=children)
        for record in c.agents.ready():
            if record.host_id in targets:
                assert record.session is not None
                record.session.send(command, c.term)
        return len(targets), sum(len(procs) for procs in targets.values())

    def want_stats(self, seconds: float = LOOK_SECONDS) -> int:
        """Someone reads the workers' figures: every ready agent samples them fast for
        `seconds` (and slowly otherwise, see the agent's engine). An agent whose last ask
        has more than half of `seconds` to run is not asked again, so a steady reader
        asks each agent once every `seconds / 2`. Returns how many agents were asked."""
        c = self._c
        now = c.clock()
        asked = 0
        wanted = StatsWanted(seconds)
        # every scrape calls this: no sorted copy of the fleet, only a look at each agent
        for record in c.agents.records.values():
            if record.stats_wanted_until - now > seconds / 2:
                continue
            if not record.ready or record.session is None:
                continue
            record.session.send(wanted, c.term)
            record.stats_wanted_until = now + seconds
            asked += 1
        return asked

    def running(self, watcher: str) -> list[AgentRecord]:
        """Ready agents that run (or are placed) some worker of `watcher`."""
        c = self._c
        placed = set(c.scheduler.placement.hosts_of(watcher))
        return [r for r in c.agents.ready() if r.host_id in placed or watcher in r.wids()]

    async def tail(self, watcher: str, lines: int, stream: str, host: str) -> list[LogLine]:
        """The last `lines` output lines of a watcher, gathered from its agents."""
        c = self._c
        c.state.watcher(watcher)
        records = [r for r in self.running(watcher) if not host or r.host_id == host]
        request_id, pending = c.logs.open_tail((r.host_id for r in records), lines)
        try:
            request = TailRequest(request_id, watcher, stream, lines)
            for record in records:
                assert record.session is not None
                record.session.send(request, c.term)
            if not await wait_event(pending.done, c.settings.tail_timeout):
                log.warning("log tail of %s: no reply from %s", watcher, sorted(pending.waiting))
        finally:
            c.logs.close_tail(request_id)
        wanted = [
            line
            for line in pending.lines
            if line.watcher == watcher and (not stream or line.stream == stream)
        ]
        return list(newest_within(merge(wanted, lines), c.settings.viewer_limits.max_tail_bytes))
