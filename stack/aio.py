"""Running asyncio tasks the one way Stack runs them: named, owned, guarded, stoppable.

Every long-lived task has a name and an owner (a TaskGroup, or the caller awaiting it),
and a guard that says in the log when it failed or, meant to run forever, ended. The
idioms that asyncio leaves to every caller are written here once:

- `TaskGroup`: asyncio's, without the cancel request it leaks on Python 3.11 and 3.12;
- `guard` / `start`: a task that logs its failure with its name (and re-raises, so its
  owner ends too, or not, for tasks whose failure is only theirs);
- `stop`: cancel tasks, wait for them a bounded time, and name the ones that are stuck;
- `race`: run coroutines until the first ends, cancel the others, wait for them;
- `wait_event` and `finished_within`: wait for an event or a future, at most so long;
- `in_own_thread`: a rare blocking call in a thread that ends with it;
- `prestarted_pool`: a thread pool whose threads all run from the start.

Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that arrives as the
awaited thing completes, and a loop must end when its owner cancels it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import threading
import types
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskGroup(asyncio.TaskGroup):
    """asyncio.TaskGroup without the cancel request it leaks on Python 3.11 and 3.12.

    When a task of the group fails after the block has ended, while the group waits in
    `__aexit__` for its other tasks (a task cancelled at the end of the block that fails
    instead of ending cancelled: a gRPC write cut short does), those versions cancel the
    owner task to abort it and never withdraw the request: `Task.cancelling()` stays
    above 0 for good. Every later check of "am I being cancelled?" then says yes, and a
    loop that must end when its owner cancels it takes its next error for that cancel
    and ends without a word (an agent's session did: it never reconnected). Python 3.13
    withdraws the request. This group waits for its tasks at the end of the block as the
    block itself would, so that such a failure cancels that wait instead, which
    asyncio's TaskGroup handles rightly on every version.
    """

    def __init__(self) -> None:
        super().__init__()
        self._running: set[asyncio.Task[Any]] = set()

    def create_task(
        self,
        coro: Generator[Any, None, T] | Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if et is None:
            try:
                while self._running:
                    await asyncio.wait(tuple(self._running))
            except asyncio.CancelledError as cancel:
                await super().__aexit__(type(cancel), cancel, cancel.__traceback__)
                return
        await super().__aexit__(et, exc, tb)


async def guard(
    coro: Coroutine[Any, Any, T],
    name: str,
    *,
    forever: bool = False,
    reraise: bool = True,
    logger: logging.Logger = log,
) -> T | None:
    """Await `coro`, logging by `name` how it ended if it should not have.

    A failure is logged with its traceback, then re-raised (`reraise`, so the owner
    learns of it) or swallowed (None is returned: the failure is the task's alone). A
    `forever` task that returns is logged as having finished unexpectedly. A
    cancellation passes through untouched, even one that arrived as an exception.
    """
    try:
        result = await coro
    except Exception:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None  # the cancel, whatever it raised
        logger.exception("%s failed", name)
        if reraise:
            raise
        return None
    if forever:
        logger.error("%s has finished unexpectedly", name)
    return result


def start(
    owner: asyncio.TaskGroup,
    coro: Coroutine[Any, Any, T],
    name: str,
    *,
    forever: bool = False,
    reraise: bool = True,
    logger: logging.Logger = log,
) -> asyncio.Task[T | None]:
    """Run `coro` as a task of `owner`, named and guarded (see `guard`)."""
    task = owner.create_task(
        guard(coro, name, forever=forever, reraise=reraise, logger=logger), name=name
    )
    # A task cancelled before its first step never starts `coro`: close it quietly.
    task.add_done_callback(lambda _: coro.close())
    return task


async def stop(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    title: str,
    timeout: float | None = None,
    logger: logging.Logger = log,
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait for them to end, `timeout` seconds at most (None: as long
    as it takes); return those still running then, after naming them in the log under
    `title`. Their results and failures are not raised (a cancelled task's is its own)."""
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    if not pending:
        return set()
    _, stuck = await asyncio.wait(pending, timeout=timeout)
    if stuck:
        names = ", ".join(sorted(task.get_name() for task in stuck))
        logger.warning("%s: still running %gs after being cancelled: %s", title, timeout, names)
    return stuck


async def race(**contenders: Coroutine[Any, Any, Any]) -> str:
    """Run each coroutine as a task named after its keyword until the first one ends,
    cancel the others and wait for them; return the first one's name.

    The tasks share one TaskGroup: a failure of any of them is raised (in an
    ExceptionGroup) once all have ended, and cancelling the caller cancels them all.
    """
    async with TaskGroup() as group:
        tasks = {group.create_task(coro, name=name): name for name, coro in contenders.items()}
        done, losers = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in losers:
            task.cancel()
    return tasks[next(iter(done))]


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set, `timeout` seconds at most; whether it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


async def finished_within(future: asyncio.Future[Any], seconds: float) -> bool:
    """Wait for `future` at most `seconds`; whether it finished. It is not cancelled
    when it did not (a thread cannot be), and what it ends with later is dropped
    instead of being reported as never retrieved."""
    future.add_done_callback(_consume)
    done, _ = await asyncio.wait({future}, timeout=seconds)
    return bool(done)


async def unstoppable(coro: Coroutine[Any, Any, T], name: str) -> T:
    """Run `coro` to its end even if the caller is cancelled meanwhile, and return its
    result to a caller still waiting. For a change that must never stop half-way (memory
    and store apart): a caller that gives up only stops waiting for it."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _RUNNING_ON.add(task)  # its owner until it ends, whoever waits for it
    task.add_done_callback(_RUNNING_ON.discard)
    task.add_done_callback(_consume)
    return await asyncio.shield(task)


async def in_own_thread(name: str, call: Callable[[], T]) -> T:
    """`call()` in a thread of its own that ends with it. For a rare blocking call in a
    daemon meant to hold no idle thread: asyncio.to_thread's executor keeps its threads
    for good (an agent's first TLS diagnosis added one for the rest of its life). A
    caller cancelled meanwhile stops waiting; the call runs to its end and is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    future.add_done_callback(_consume)

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:  # handed to the caller, which re-raises it
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


def prestarted_pool(name: str, workers: int | None = None) -> concurrent.futures.ThreadPoolExecutor:
    """A thread pool whose threads all start now (`workers`, by default as many as
    asyncio's default executor may have), for a daemon's blocking calls. The default
    executor starts a thread only when calls pile up, and keeps it: a controller's
    threads went from 15 to 17 twenty minutes into its life, when a partition first held
    its store calls (a 30-minute soak, chaos seed 709449257), which a soak cannot tell
    from a leak. Started at once, the count is what it will always be."""
    count = workers or min(32, (os.cpu_count() or 1) + 4)
    pool = concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix=name)
    # The pool starts a thread for each call that finds none idle: `count` calls that
    # wait for each other start them all.
    barrier = threading.Barrier(count)
    for started in [pool.submit(barrier.wait) for _ in range(count)]:
        started.result()
    return pool


_RUNNING_ON: set[asyncio.Task[Any]] = set()
"""The `unstoppable` tasks not finished yet (the loop keeps only weak references)."""


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
