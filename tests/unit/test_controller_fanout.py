"""Fan-out: bounded, filtered, and never blocking the publisher."""

from __future__ import annotations

import asyncio

from stack.controller.fanout import Fanout


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


def test_a_follower_holds_at_most_its_byte_budget_and_reading_frees_it() -> None:
    fanout: Fanout[str] = Fanout(queue_size=100, max_bytes=10, measure=len)

    async def scenario() -> tuple[list[str | None], int, int]:
        with fanout.follow() as follower:
            for word in ("aaaa", "bbbb", "cccc", "d"):  # the third would make 12 bytes
                fanout.publish(word)
            held = follower.queued_bytes
            first = await follower.get()
            fanout.publish("eeee")  # 4 bytes freed: it fits again
            rest = [await follower.get() for _ in range(3)]
            return [first, *rest], held, follower.dropped

    got, held, dropped = asyncio.run(scenario())
    assert (got, held, dropped) == (["aaaa", "bbbb", "d", "eeee"], 9, 1)


def test_closing_the_fanout_ends_every_follower_stream() -> None:
    fanout: Fanout[int] = Fanout(queue_size=2)

    async def scenario() -> list[int | None]:
        with fanout.follow() as follower:
            fanout.publish(1)
            fanout.close()
            fanout.publish(2)
            return [await follower.get(), await follower.get()]

    assert asyncio.run(scenario()) == [None, None]
