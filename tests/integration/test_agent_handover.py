"""The engine handed over to its next image in the same process (what an exec does).

These drive `Engine.hand_over` and `Engine(settings, handover)` directly with real
workers, in one process, the way `stack-agent` does when its exec fails and it carries
on in place; test_agent_restart.py does the same through a real exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from stack.agent.engine import Engine
from stack.agent.handover import Handover, from_bytes, to_bytes
from stack.agent.settings import AgentSettings
from stack.spec.model import FlappingSpec, SocketSpec
from stack.v1 import types_pb2
from tests.support.engine import (
    assignment,
    python_cmd,
    run,
    running_pids,
    settings,
    statuses,
    watcher,
)
from tests.support.wait import until, wait_for

# Prints half a line, then (on SIGUSR1) the rest of it; then lives on.
HALF_LINE = python_cmd(
    "import signal, sys, time\n"
    "sys.stdout.write('first half ')\n"
    "sys.stdout.flush()\n"
    "def rest(*_):\n"
    "    print('second half', flush=True)\n"
    "signal.signal(signal.SIGUSR1, rest)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)
SLEEP = "sleep 300"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


async def _first_life(config: AgentSettings) -> tuple[Handover, dict[int, int], dict[int, int]]:
    async with Engine(config) as engine:
        engine.apply(
            assignment(
                watcher("half", HALF_LINE[0], [1], args=HALF_LINE[1]),
                watcher("w", SLEEP, [1, 2]),
            )
        )
        half = await until(lambda: running_pids(engine.observed(), "half"), what="half running")
        pids = await until(
            lambda: len(p := running_pids(engine.observed(), "w")) == 2 and p, what="2 workers"
        )
        await asyncio.sleep(0.3)  # the half line is read (it waits for its newline)
        handover = engine.hand_over(0.0, "", "")
    return handover, half, pids


def test_the_next_image_keeps_every_worker_and_reaps_exits_of_the_switch_with_their_status(
    tmp_path: Path,
) -> None:
    config = settings(tmp_path)
    handover, half, pids = run(_first_life(config))
    try:
        _second_life(config, handover, half, pids)
    finally:  # (the second life stops them; not if it failed early)
        for pid in [*half.values(), *pids.values()]:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def _second_life(
    config: AgentSettings, handover: Handover, half: dict[int, int], pids: dict[int, int]
) -> None:
    # Between the two images nothing reaps: a worker that exits now stays a zombie.
    os.kill(pids[2], signal.SIGTERM)
    wait_for(lambda: _zombie(pids[2]), 5, "the worker that exited in the switch to be a zombie")
    handover = from_bytes(to_bytes(handover))  # as it travels through the memfd

    async def second_life() -> None:
        async with Engine(config, handover) as engine:
            observed = engine.observed()
            assert running_pids(observed, "half") == half
            assert running_pids(observed, "w")[1] == pids[1], "still the same worker"
            w1 = statuses(observed, "w")[1]
            assert w1.restarts == 0 and w1.state == types_pb2.PROCESS_STATE_RUNNING

            # The exit of the switch: reaped with its real status, and respawned.
            def respawned() -> bool:
                status = statuses(engine.observed(), "w")[2]
                running = status.state == types_pb2.PROCESS_STATE_RUNNING
                return running and status.pid not in (0, pids[2])

            await until(respawned, what="w[2] respawned")
            w2 = statuses(engine.observed(), "w")[2]
            assert w2.last_exit.signal == signal.SIGTERM and not w2.last_exit.code_unknown
            assert w2.restarts == 1
            kinds = [e.kind for e in engine.take_events()]
            assert "agent_reloaded" in kinds
            assert engine.reexecs == 1 and engine.reexecuted_at > 0
            # The half line read before the switch is finished by what comes after it.
            os.kill(half[1], signal.SIGUSR1)
            await until(
                lambda: [line.text for line in engine.tail("half", "out", 10)],
                what="the joined line",
            )
            assert [line.text for line in engine.tail("half", "out", 10)] == [
                "first half second half"
            ]

    run(second_life())


def test_a_unix_socket_passes_to_the_next_image_and_is_removed_when_that_one_stops(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "svc.sock"
    path.parent.mkdir()
    config = settings(tmp_path)
    web = SocketSpec(name="web", path=str(path))

    async def first_life() -> tuple[Handover, int]:
        async with Engine(config) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], use_sockets=True), sockets=(web,)))
            pids = await until(lambda: running_pids(engine.observed(), "w"), what="the worker")
            return engine.hand_over(0.0, "", ""), pids[1]

    handover, pid = run(first_life())
    try:
        assert path.exists(), "the socket file stays across the switch"

        async def second_life() -> None:
            async with Engine(config, from_bytes(to_bytes(handover))) as engine:
                assert running_pids(engine.observed(), "w") == {1: pid}
                bound = engine.sockets.get("web")
                assert bound is not None and bound.sock is not None and bound.place is not None
                assert bound.sock.getsockname() == str(path)
            assert not path.exists(), "removed with the socket, as one bound by this image"

        run(second_life())
    finally:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def test_a_flapping_worker_stays_held_back_by_the_next_image_and_retries_on_time(
    tmp_path: Path,
) -> None:
    """Worker 2 crash-loops and waits for its retry; worker 1 serves. Across the exec
    worker 2 keeps its wait (and its retry count) and worker 1 its process."""
    config = settings(tmp_path)
    flap = FlappingSpec(attempts=1, window=5.0, retry_in=2.0, max_retry=1)
    crash_2 = "test $STACK_WID != 2 || exit 3; exec sleep 300"
    stack = assignment(watcher("w", crash_2, [1, 2], shell=True, flapping=flap))

    async def first_life() -> tuple[Handover, int, float]:
        async with Engine(config) as engine:
            engine.apply(stack)

            def waiting() -> bool:
                status = statuses(engine.observed(), "w").get(2)
                return status is not None and status.state == types_pb2.PROCESS_STATE_BACKOFF

            await until(waiting, what="worker 2 to back off")
            (observed,) = engine.observed().watchers
            assert observed.phase == types_pb2.WATCHER_PHASE_FLAPPING
            assert observed.message.startswith("worker 2: flapping, retry in")
            one = running_pids(engine.observed(), "w")[1]
            return engine.hand_over(0.0, "", ""), one, observed.retry_at

    handover, one, retry_at = run(first_life())

    async def second_life() -> None:
        async with Engine(config, from_bytes(to_bytes(handover))) as engine:
            observed = engine.observed()
            assert running_pids(observed, "w") == {1: one}
            assert statuses(observed, "w")[2].state == types_pb2.PROCESS_STATE_BACKOFF
            (watcher_,) = observed.watchers
            assert watcher_.phase == types_pb2.WATCHER_PHASE_FLAPPING
            assert abs(watcher_.retry_at - retry_at) < 0.05, "the same retry time"
            assert watcher_.flapping_retries == 1

            def fatal() -> bool:
                return statuses(engine.observed(), "w")[2].state == types_pb2.PROCESS_STATE_FATAL

            await until(fatal, 15, what="worker 2 retried, flapped again and gave up")
            kinds = [(e.kind, e.wid) for e in engine.take_events()]
            assert ("retry", 2) in kinds and ("fatal", 2) in kinds
            assert running_pids(engine.observed(), "w") == {1: one}

    run(second_life())
