"""Fan-out and the event ring: bounded, filtered, and never blocking the publisher."""

from __future__ import annotations

import asyncio

from stack.controller.events import CONTROLLER_HOST, EventLog
from stack.controller.fanout import Fanout
from stack.v1 import types_pb2


def test_a_slow_follower_loses_items_without_blocking_the_others() -> None:
    fanout: Fanout[int] = Fanout(queue_size=3)

    async def scenario() -> tuple[list[int | None], list[int | None], int]:
        with fanout.follow() as slow, fanout.follow(lambda n: n % 2 == 0) as even:
            for n in range(10):
                fanout.publish(n)
            got_slow = [await slow.get() for _ in range(3)]
            got_even = [await even.get() for _ in range(3)]
            return got_slow, got_even, slow.dropped

    slow, even, dropped = asyncio.run(scenario())
    assert slow == [0, 1, 2]
    assert even == [0, 2, 4]
    assert dropped == 7
    assert len(fanout) == 0


def test_closing_the_fanout_ends_every_follower_stream() -> None:
    fanout: Fanout[int] = Fanout(queue_size=2)

    async def scenario() -> list[int | None]:
        with fanout.follow() as follower:
            fanout.publish(1)
            fanout.close()
            fanout.publish(2)
            return [await follower.get(), await follower.get()]

    assert asyncio.run(scenario()) == [None, None]


def test_the_event_ring_keeps_the_last_events_per_watcher() -> None:
    ring = EventLog(capacity=3, follower_queue=10, wall=lambda: 42.0)
    for n in range(5):
        ring.record("scale", f"scale {n}", watcher="web" if n % 2 else "job")
    kept = ring.recent()
    assert [e.message for e in kept] == ["scale 2", "scale 3", "scale 4"]
    assert all(e.host_id == CONTROLLER_HOST and e.at == 42.0 for e in kept)
    assert [e.message for e in ring.recent("web")] == ["scale 3"]
    assert [e.message for e in ring.recent(lines=1)] == ["scale 4"]
    assert ring.recent()[0].severity == types_pb2.SEVERITY_INFO
