"""Worker output at the controller: live fan-out, and tails gathered from agents.

The controller keeps no output itself: agents keep files and a memory tail.
A tail asks every agent running the watcher (a TailRequest with an id) and
merges the replies by time; live lines arrive in LogBatches and fan out to
followers. Lines come stamped with the host of the session that sent them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

from stack.controller.fanout import Fanout
from stack.spec.reports import LogLine
from stack.spec.session import TailReply


def _weight(line: LogLine) -> int:
    return line.weight


class PendingTail:
    """Replies awaited for one tail request."""

    def __init__(self, hosts: Iterable[str], lines: int) -> None:
        self.lines_wanted = lines
        """The most lines one host's reply may add (what was asked for)."""
        self.waiting = set(hosts)
        self.lines: list[LogLine] = []
        self.errors: list[str] = []
        self.done = asyncio.Event()
        if not self.waiting:
            self.done.set()


class LogRelay:
    """Live log lines for followers, and the bookkeeping of tail requests."""

    def __init__(self, follower_queue: int, follower_bytes: int = 0) -> None:
        self.fanout: Fanout[LogLine] = Fanout(follower_queue, follower_bytes, _weight)
        self._ids = itertools.count(1)
        self._tails: dict[int, PendingTail] = {}

    def publish(self, lines: Iterable[LogLine]) -> None:
        """Send live lines to the followers."""
        for line in lines:
            self.fanout.publish(line)

    def open_tail(self, hosts: Iterable[str], lines: int) -> tuple[int, PendingTail]:
        """A new request id and the record that collects its replies (`lines` each)."""
        request_id = next(self._ids)
        tail = PendingTail(hosts, lines)
        self._tails[request_id] = tail
        return request_id, tail

    def close_tail(self, request_id: int) -> None:
        """Forget a request (answered or timed out); late replies are ignored."""
        self._tails.pop(request_id, None)

    def deliver(self, reply: TailReply, host_id: str) -> None:
        """Take one agent's reply to a tail request."""
        tail = self._tails.get(reply.request_id)
        if tail is None:
            return
        tail.lines.extend(merge(reply.lines, tail.lines_wanted))  # no more than was asked
        if reply.error:
            tail.errors.append(f"{host_id}: {reply.error}")
        tail.waiting.discard(host_id)
        if not tail.waiting:
            tail.done.set()

    def host_gone(self, host_id: str) -> None:
        """Stop waiting for a host whose stream ended."""
        for tail in self._tails.values():
            tail.waiting.discard(host_id)
            if not tail.waiting:
                tail.done.set()

    def close(self) -> None:
        """End every follower's stream."""
        self.fanout.close()


def merge(lines: Iterable[LogLine], count: int) -> list[LogLine]:
    """The last `count` lines by time (stable for equal times)."""
    ordered = sorted(lines, key=lambda line: line.at)
    return ordered[-count:] if count > 0 else []
