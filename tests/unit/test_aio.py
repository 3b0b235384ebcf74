"""stack.aio: named, guarded tasks, stopping them, racing them, bounded waits."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from stack import aio


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


async def fail() -> None:
    raise RuntimeError("boom")


async def forever() -> None:
    await asyncio.Event().wait()


def test_a_failing_task_is_logged_by_name_and_its_owner_learns_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test() -> None:
        with pytest.raises(ExceptionGroup):
            async with asyncio.TaskGroup() as tg:
                aio.start(tg, fail(), "the-loop")
        assert "the-loop failed" in caplog.text and "boom" in caplog.text

    run(test)


def test_a_task_whose_failure_is_its_own_is_logged_and_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test() -> None:
        async with asyncio.TaskGroup() as tg:
            task = aio.start(tg, fail(), "a-check", reraise=False)
        assert task.result() is None and "a-check failed" in caplog.text

    run(test)


def test_a_task_meant_to_run_forever_that_returns_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test() -> None:
        async with asyncio.TaskGroup() as tg:
            aio.start(tg, asyncio.sleep(0), "the-writer", forever=True)
        assert "the-writer has finished unexpectedly" in caplog.text

    run(test)


def test_a_cancelled_task_is_not_reported_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        async with asyncio.TaskGroup() as tg:
            task = aio.start(tg, forever(), "idle", forever=True)
            await asyncio.sleep(0)
            task.cancel()
        assert task.cancelled() and caplog.text == ""

    run(test)


def test_stop_cancels_and_names_the_tasks_that_do_not_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stubborn(release: asyncio.Event) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop (a bug this reports)

    async def test() -> None:
        release = asyncio.Event()
        polite = asyncio.create_task(forever(), name="polite")
        rude = asyncio.create_task(stubborn(release), name="rude")
        await asyncio.sleep(0)
        with caplog.at_level(logging.WARNING):
            stuck = await aio.stop([polite, rude], title="shutting down", timeout=0.05)
        assert stuck == {rude} and polite.cancelled()
        assert "shutting down: still running 0.05s after being cancelled: rude" in caplog.text
        release.set()
        await rude

    run(test)


def test_a_race_ends_with_its_first_finisher_and_cancels_the_rest() -> None:
    async def test() -> None:
        cancelled = asyncio.Event()

        async def slow() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

        assert await aio.race(slow=slow(), quick=asyncio.sleep(0)) == "quick"
        assert cancelled.is_set()

    run(test)


def test_a_failure_in_a_race_is_raised() -> None:
    async def test() -> None:
        with pytest.raises(ExceptionGroup) as caught:
            await aio.race(idle=forever(), broken=fail())
        assert caught.group_contains(RuntimeError, match="boom")

    run(test)


def test_waiting_for_an_event_says_whether_it_came_in_time() -> None:
    async def test() -> None:
        event = asyncio.Event()
        assert not await aio.wait_event(event, 0.01)
        asyncio.get_running_loop().call_soon(event.set)
        assert await aio.wait_event(event, 5.0)
        assert await aio.wait_event(event, 0)

    run(test)


def test_a_future_that_finishes_late_is_not_reported_as_unretrieved() -> None:
    async def test() -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        assert not await aio.finished_within(future, 0.01)
        future.set_exception(RuntimeError("late"))  # dropped, not logged by asyncio
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(3)
        assert await aio.finished_within(done, 0.01) and done.result() == 3

    run(test)


def test_an_unstoppable_change_runs_to_its_end_when_its_caller_gives_up() -> None:
    async def test() -> None:
        finished = asyncio.Event()

        async def change() -> int:
            await asyncio.sleep(0.02)
            finished.set()
            return 1

        caller = asyncio.create_task(aio.unstoppable(change(), "change"))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert await aio.wait_event(finished, 5.0)
        assert await aio.unstoppable(change(), "change") == 1

    run(test)


def test_a_call_in_its_own_thread_returns_or_raises_and_leaves_no_thread_behind() -> None:
    """A soak (chaos seed 7) saw an agent keep one more thread for good after its first
    TLS diagnosis: asyncio.to_thread's executor never ends its threads."""

    async def test() -> None:
        before = threading.active_count()
        assert await aio.in_own_thread("answer", lambda: 6 * 7) == 42

        def fails() -> int:
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            await aio.in_own_thread("fails", fails)
        deadline = time.monotonic() + 5.0
        while threading.active_count() > before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert threading.active_count() == before

    run(test)


def test_a_prestarted_pool_runs_all_its_threads_from_the_start_and_never_more() -> None:
    """A soak (chaos seed 709449257) saw a controller's threads grow by two when a
    partition first held its store calls: the default executor starts threads late."""
    before = threading.active_count()
    pool = aio.prestarted_pool("test", 4)
    try:
        assert threading.active_count() == before + 4
        gate = threading.Event()
        held = [pool.submit(gate.wait, 5.0) for _ in range(4)]
        queued = pool.submit(lambda: 1)
        assert threading.active_count() == before + 4
        gate.set()
        assert all(f.result() for f in held) and queued.result() == 1
    finally:
        pool.shutdown()


async def fails_when_cancelled() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise RuntimeError("cut short") from None


def test_a_task_failing_after_the_block_leaves_its_owner_not_cancelled() -> None:
    # asyncio's own TaskGroup (Python 3.11, 3.12) leaves the owner's cancel count at 1
    # here: every later "am I being cancelled?" would then say yes.
    async def test() -> None:
        owner = asyncio.current_task()
        assert owner is not None
        with pytest.raises(ExceptionGroup) as raised:
            async with aio.TaskGroup() as tg:
                task = tg.create_task(fails_when_cancelled())
                await asyncio.sleep(0)
                task.cancel()
        assert [str(e) for e in raised.value.exceptions] == ["cut short"]
        assert owner.cancelling() == 0
        await asyncio.sleep(0)  # and no cancel is still on its way

    run(test)


def test_a_task_group_still_passes_on_its_owners_cancel_and_its_tasks_failures() -> None:
    started = asyncio.Event()

    async def cancelled_owner() -> None:
        async with aio.TaskGroup() as tg:
            tg.create_task(forever())
            tg.create_task(forever())
            started.set()

    async def failing_task() -> None:
        async with aio.TaskGroup() as tg:
            tg.create_task(forever())
            tg.create_task(fail())

    async def test() -> None:
        owner = asyncio.create_task(cancelled_owner())
        await started.wait()
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        with pytest.raises(ExceptionGroup) as raised:
            await failing_task()
        assert [str(e) for e in raised.value.exceptions] == ["boom"]
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0

    run(test)
