"""Every task of the agent's engine has one owner, and none dies or is cancelled unseen."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from stack import aio
from stack.agent.engine import Engine, _forever
from stack.spec.assignment import WatcherAssignment
from tests.support.clock import FakeClock
from tests.support.engine import assignment, run, settings, watcher
from tests.support.wait import until


def test_an_engine_loop_that_returns_is_logged_and_ends_the_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def quits() -> None:
        return

    with pytest.raises(RuntimeError, match="engine x has finished unexpectedly"):
        asyncio.run(aio.guard(_forever(quits, "engine x"), "engine x"))  # as the engine runs it
    assert "engine x failed" in caplog.text
    assert "RuntimeError: engine x has finished unexpectedly" in caplog.text


def test_a_cancelled_engine_loop_ends_cancelled_and_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(_forever(lambda: asyncio.sleep(3600), "engine x"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert "engine x" not in caplog.text


def test_a_failing_task_is_logged_and_a_cancelled_one_stays_cancelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def fails() -> None:
        raise ValueError("boom")

    async def cleans_up_badly() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            raise OSError("while cancelled")  # what a stop may raise on its way out

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            failed = engine.run_task(fails(), name="fails")
            await until(failed.done, what="the failing task done")
            assert not failed.cancelled()  # its failure was logged, not raised
            cancelled = engine.run_task(cleans_up_badly(), name="cleans up")
            await asyncio.sleep(0)
            cancelled.cancel()
            await until(cancelled.done, what="the cancelled task done")
            assert cancelled.cancelled()  # the cancel, whatever it raised

    run(scenario())
    assert "fails failed" in caplog.text and "ValueError: boom" in caplog.text
    assert "cleans up" not in caplog.text


def test_the_tasks_of_a_slot_belong_to_its_runner_and_end_with_its_process(
    tmp_path: Path,
) -> None:
    cmd = "sh -c \"trap '' TERM; exec sleep 300\""  # a stop waits for its graceful_timeout
    clock = FakeClock()

    def spec(wids: list[int]) -> WatcherAssignment:
        return watcher("w", cmd, wids, graceful_timeout=10)

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(spec([1, 2])))
            await until(lambda: len(engine.watchers["w"].procs()) == 2, what="2 workers")
            w = engine.watchers["w"]
            assert w.tasks() == []  # no check, no stop: no task
            engine.apply(assignment(spec([2]), generation=2))
            await until(lambda: w.stopping(), what="wid 1 stopping")
            [stop] = w.draining[1].tasks()  # its stop, the one task its runner owns
            assert stop.get_name().startswith("stop w[1] ")
            assert w.tasks() == [stop]
            clock.advance(10)
            await until(lambda: not w.draining, what="wid 1 gone, and its runner")
            assert stop.done() and w.tasks() == []
            engine.apply(assignment(spec([]), generation=3))  # what is left, before leaving
            await until(lambda: w.stopping(), what="wid 2 stopping")
            clock.advance(10)
            await until(w.idle, what="no worker left")

    run(scenario())
