"""Worker output at the controller: live fan-out, and tails gathered from agents.

The controller keeps no output itself: agents keep files and a memory tail.
A tail asks every agent running the watcher (a LogTailRequest with an id) and
merges the replies by time; live lines arrive in LogBatches and fan out to
followers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

from stack.controller.fanout import Fanout
from stack.v1 import agent_pb2, types_pb2


class TailRequest:
    """Replies awaited for one LogTailRequest."""

    def __init__(self, hosts: Iterable[str], lines: int) -> None:
        self.lines_wanted = lines
        """The most lines one host's reply may add (what was asked for)."""
        self.waiting = set(hosts)
        self.lines: list[types_pb2.LogLine] = []
        self.errors: list[str] = []
        self.done = asyncio.Event()
        if not self.waiting:
            self.done.set()


class LogHub:
    """Live log lines for followers, and the bookkeeping of tail requests."""

    def __init__(self, follower_queue: int, follower_bytes: int = 0) -> None:
        self.fanout: Fanout[types_pb2.LogLine] = Fanout(
            follower_queue, follower_bytes, types_pb2.LogLine.ByteSize
        )
        self._ids = itertools.count(1)
        self._tails: dict[int, TailRequest] = {}

    def publish(self, lines: Iterable[types_pb2.LogLine], host_id: str) -> None:
        """Send live lines from `host_id` to the followers, stamped with that host."""
        for line in lines:
            line.host_id = host_id
            self.fanout.publish(line)

    def open_tail(self, hosts: Iterable[str], lines: int) -> tuple[int, TailRequest]:
        """A new request id and the record that collects its replies (`lines` each)."""
        request_id = next(self._ids)
        tail = TailRequest(hosts, lines)
        self._tails[request_id] = tail
        return request_id, tail

    def close_tail(self, request_id: int) -> None:
        """Forget a request (answered or timed out); late replies are ignored."""
        self._tails.pop(request_id, None)

    def deliver(self, reply: agent_pb2.LogTailReply, host_id: str) -> None:
        """Take one agent's reply to a tail request."""
        tail = self._tails.get(reply.request_id)
        if tail is None:
            return
        kept = merge(reply.lines, tail.lines_wanted)  # no more than was asked of it
        for line in kept:
            line.host_id = host_id
        tail.lines.extend(kept)
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


def merge(lines: Iterable[types_pb2.LogLine], count: int) -> list[types_pb2.LogLine]:
    """The last `count` lines by time (stable for equal times)."""
    ordered = sorted(lines, key=lambda line: line.at)
    return ordered[-count:] if count > 0 else []
