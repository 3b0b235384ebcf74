"""What an operator may ask of the controller, whichever door they ask through.

The gRPC AdminService (stackctl) and the web console are two doors to the same
operations: each operation here checks the names it is given (a malformed one is
INVALID_ARGUMENT, not merely unknown), requires leadership and calls the controller,
which validates, stores the change, records its event and pushes Assignments. A door
only decodes its request and encodes the answer or the ControllerError, so that a
scale from the page and one from stackctl are refused, recorded and applied alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager

from stack.controller.controller import Controller
from stack.controller.errors import InvalidArgument
from stack.controller.viewers import check_tail
from stack.loglines import SeenLines
from stack.spec.model import NAME_RULE, valid_name
from stack.spec.reports import Event, LogLine

ACTIONS = ("start", "stop", "restart", "reload", "reset")
"""What `Admin.act` does to watchers."""

Opened = Callable[[], Awaitable[None]]
"""Called once a follow stream receives what comes (a door tells its client so)."""


async def _nothing() -> None:
    return None


def check_names(what: str, *names: str) -> None:
    """InvalidArgument for a name no stack file or agent could have made.

    Called first by every operation that takes a watcher or host name, so a
    careless or hostile name is called invalid rather than merely unknown.
    """
    for name in names:
        if not valid_name(name):
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise InvalidArgument(f"{what} {shown!r} {NAME_RULE}")


class Admin:
    """The operations that change the desired state, over one Controller."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller

    async def scale(self, watcher: str, count: int, relative: bool) -> tuple[int, int]:
        """Set (or, `relative`, change) a watcher's count: (previous, now)."""
        self._c.require_leader()
        check_names("watcher name", watcher)
        return await self._c.scale(watcher, count, relative)

    async def act(
        self, kind: str, watchers: list[str], all_watchers: bool, rolling: bool = False
    ) -> tuple[str, ...]:
        """start, stop, restart (`rolling`: in batches), reload or reset watchers."""
        self._c.require_leader()
        if kind not in ACTIONS:
            raise InvalidArgument(f"unknown action {kind[:32]!r}: one of {', '.join(ACTIONS)}")
        check_names("watcher name", *watchers)
        rolling = rolling and kind == "restart"
        return await self._c.act(kind, watchers, all_watchers, rolling=rolling)

    async def drain(self, host_id: str) -> int:
        """Move a host's processes away: how many it runs now."""
        self._c.require_leader()
        check_names("host id", host_id)
        return await self._c.drain(host_id)

    async def undrain(self, host_id: str) -> int:
        """Let a host take processes again."""
        self._c.require_leader()
        check_names("host id", host_id)
        return await self._c.undrain(host_id)

    # ---- reading: tails and follows ----

    def check_logs(self, watcher: str, host: str, lines: int) -> None:
        """The checks of a log tail or follow, before anything is held for it."""
        self._c.require_leader()
        check_names("watcher name", watcher)
        if host:
            check_names("host id", host)
        check_tail(lines, self._c.settings.viewer_limits)
        self._c.check_watcher(watcher)

    def check_events(self, watcher: str, lines: int) -> None:
        """The checks of an event tail or follow."""
        self._c.require_leader()
        if watcher:
            check_names("watcher name", watcher)
            self._c.check_watcher(watcher)
        check_tail(lines, self._c.settings.viewer_limits)

    @contextmanager
    def follow_slot(self, viewer: str, follow: bool) -> Iterator[None]:
        """One of `viewer`'s follow streams for the block (nothing to hold without
        `follow`); ResourceExhausted when it holds too many."""
        if not follow:
            yield
            return
        self._c.follows.take(viewer)
        try:
            yield
        finally:
            self._c.follows.give_back(viewer)

    async def log_lines(
        self,
        watcher: str,
        lines: int,
        *,
        stream: str = "",
        host: str = "",
        since: float = 0.0,
        follow: bool = False,
        opened: Opened = _nothing,
    ) -> AsyncGenerator[LogLine, None]:
        """The last `lines` output lines of a watcher (from the agents' files), then with
        `follow` every new one, each once. Checked by `check_logs` first."""
        c = self._c

        def wanted(line: LogLine) -> bool:
            return (
                line.watcher == watcher
                and (not stream or line.stream == stream)
                and (not host or line.host_id == host)
                and line.at >= since
            )

        with c.logs.fanout.follow(wanted) as follower:
            await opened()
            if since > 0:
                # A follow resuming on a controller that just took over: the lines it
                # missed are in the agents' files, and an agent still reconnecting
                # would answer no tail. Give them the time they have to come back
                # (live lines wait in the follower meanwhile).
                await asyncio.sleep(c.scheduler.warm_in())
            sent = SeenLines()
            if lines > 0:
                for line in await c.commands.tail(watcher, lines, stream, host):
                    if line.at >= since:
                        sent.note(line)
                        yield line
            # Live lines began before the tail was read: skip the ones it had.
            replay = sent.replay()
            while follow and (live := await follower.get()) is not None:
                if not replay.repeats(live):
                    yield live

    async def events(
        self,
        watcher: str,
        lines: int,
        *,
        after_seq: int = 0,
        follow: bool = False,
        opened: Callable[[int], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """The last `lines` events (or those after `after_seq`), then with `follow` every
        new one. `opened` is given the seq of the last event recorded when it opened."""
        events = self._c.events
        with events.fanout.follow(lambda e: not watcher or e.watcher == watcher) as follower:
            if opened is not None:
                await opened(events.next_seq - 1)
            kept = (
                events.after(after_seq, watcher) if after_seq > 0 else events.recent(watcher, lines)
            )
            last = after_seq
            for event in kept:
                last = event.seq
                yield event
            # The follower got every event from the moment it joined: skip the ones sent.
            while follow and (new := await follower.get()) is not None:
                if new.seq > last:
                    last = new.seq
                    yield new
