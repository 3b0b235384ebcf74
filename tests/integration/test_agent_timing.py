"""The agent's timing rules on a fake clock, with real processes: each edge to the millisecond.

The engine takes its clock (stack.agent.clock); here it is one that moves only when the
test says so (fake_clock.FakeClock). Workers, signals, exits and health checks are
real; only time is not. Before moving the clock past a deadline, a test waits until
the engine waits for exactly that deadline, so "nothing happens a millisecond before"
is a fact, not a guess: the clock fires nothing until it reaches the deadline.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from stack.agent.engine import Engine
from stack.spec.assignment import PinnedVersion, WatcherAssignment
from stack.spec.model import FlappingSpec, HealthSpec, WatcherSpec
from stack.v1 import types_pb2
from tests.support.clock import FakeClock
from tests.support.engine import (
    assignment,
    python_cmd,
    run,
    running_pids,
    settings,
    statuses,
    watcher,
)
from tests.support.wait import until

MS = 0.001
SLEEP = "sleep 300"
STARTING = types_pb2.PROCESS_STATE_STARTING
RUNNING = types_pb2.PROCESS_STATE_RUNNING
STOPPED = types_pb2.PROCESS_STATE_STOPPED
BACKOFF = types_pb2.PROCESS_STATE_BACKOFF
FATAL = types_pb2.PROCESS_STATE_FATAL
EXITED = types_pb2.PROCESS_STATE_EXITED


def states(engine: Engine, name: str = "w") -> dict[int, int]:
    return {wid: p.state for wid, p in statuses(engine.observed(), name).items()}


async def waits_for(clock: FakeClock, at: float, what: str) -> None:
    """Until something of the engine waits for the clock to reach `at`."""
    await until(lambda: any(abs(t - at) < 1e-9 for t in clock.timers()), what=f"a wait for {what}")


def test_warmup_delay_holds_the_next_start_until_the_first_is_warm_to_the_ms(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    t0 = clock.monotonic()

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1, 2], warmup_delay=10)))
            await until(lambda: states(engine) == {1: STARTING}, what="wid 1 warming up, alone")
            await waits_for(clock, t0 + 10, "the end of the warm-up")
            clock.advance(10 - MS)
            assert states(engine) == {1: STARTING}
            clock.advance(MS)
            await until(lambda: states(engine) == {1: RUNNING, 2: STARTING}, what="wid 2 started")
            spawns = [e for e in engine.take_events() if e.kind == "spawn"]
            assert [e.wid for e in spawns] == [1, 2]
            assert spawns[1].at - spawns[0].at == 10.0  # the clock's wall time, exactly
            await waits_for(clock, t0 + 20, "wid 2's warm-up")
            clock.advance(10)
            await until(lambda: states(engine) == {1: RUNNING, 2: RUNNING}, what="both running")

    run(scenario())


def test_a_respawned_worker_warms_up_again_before_it_counts_as_running(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], warmup_delay=2)))
            await waits_for(clock, clock.monotonic() + 2, "the warm-up")
            clock.advance(2)
            first = (await until(lambda: running_pids(engine.observed(), "w"), what="running"))[1]
            psutil.Process(first).kill()
            await until(lambda: running_pids(engine.observed(), "w") == {}, what="the respawn")
            respawned = statuses(engine.observed(), "w")[1]
            assert respawned.state == STARTING and respawned.pid not in (0, first)
            await waits_for(clock, clock.monotonic() + 2, "the new warm-up")
            clock.advance(2 - MS)
            assert states(engine) == {1: STARTING}
            clock.advance(MS)
            await until(lambda: states(engine) == {1: RUNNING}, what="warm again")

    run(scenario())


def test_max_age_recycles_a_worker_exactly_at_its_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    t0 = clock.monotonic()

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], max_age=60, max_age_variance=0)))
            old = (await until(lambda: running_pids(engine.observed(), "w"), what="running"))[1]
            await waits_for(clock, t0 + 60, "max_age")
            clock.advance(60 - MS)
            assert running_pids(engine.observed(), "w") == {1: old}
            clock.advance(MS)
            await until(
                lambda: running_pids(engine.observed(), "w").get(1, old) != old, what="recycled"
            )
            last = statuses(engine.observed(), "w")[1].last_exit
            assert last.reason == types_pb2.EXIT_REASON_MAX_AGE
            assert not psutil.pid_exists(old)

    run(scenario())


def test_a_sigterm_ignoring_worker_is_sigkilled_exactly_at_graceful_timeout(
    tmp_path: Path,
) -> None:
    cmd, args = python_cmd(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    clock = FakeClock()
    t0 = clock.monotonic()

    def spec(active: bool) -> WatcherAssignment:
        return watcher("w", cmd, [1], args=args, graceful_timeout=30, active=active)

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(spec(True)))
            await until(lambda: engine.tail("w", "out", 1), what="worker ready (SIGTERM ignored)")
            pid = running_pids(engine.observed(), "w")[1]
            engine.apply(assignment(spec(False), generation=2))
            await waits_for(clock, t0 + 30, "the graceful_timeout")
            clock.advance(30 - MS)
            assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            assert states(engine) == {1: types_pb2.PROCESS_STATE_STOPPING}
            clock.advance(MS)
            stopped = await until(
                lambda: states(engine) == {1: STOPPED} and statuses(engine.observed(), "w")[1],
                what="stopped",
            )
            assert stopped.last_exit.reason == types_pb2.EXIT_REASON_KILLED
            assert stopped.last_exit.signal == signal.SIGKILL
            assert not psutil.pid_exists(pid)
            said = [e.message for e in engine.take_events() if e.kind == "stopped"]
            assert said == [f"pid {pid} SIGKILLed after graceful_timeout"]

    run(scenario())


def test_a_crash_looping_worker_backs_off_retries_on_time_then_is_fatal_alone(
    tmp_path: Path,
) -> None:
    flap = FlappingSpec(attempts=2, window=1.0, retry_in=5.0, max_retry=1)
    cmd = """sh -c 'test "$STACK_WID" = 1 && exit 3; exec sleep 300'"""
    clock = FakeClock()
    t0 = clock.monotonic()

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", cmd, [1, 2], flapping=flap)))
            await until(lambda: states(engine) == {1: BACKOFF, 2: RUNNING}, what="wid 1 backs off")
            steady = running_pids(engine.observed(), "w")[2]
            observed = engine.observed()
            assert observed.watchers[0].message == "worker 1: flapping, retry in 5s"
            assert statuses(observed, "w")[1].restarts == 1  # two starts, then the wait
            await waits_for(clock, t0 + 5, "the retry")
            clock.advance(5 - MS)
            assert states(engine) == {1: BACKOFF, 2: RUNNING}
            clock.advance(MS)
            await until(lambda: states(engine) == {1: FATAL, 2: RUNNING}, what="wid 1 gives up")
            assert running_pids(engine.observed(), "w") == {2: steady}
            kinds = [(e.kind, e.wid) for e in engine.take_events() if e.kind != "exit"]
            flapping = kinds.index(("flapping", 1))
            assert flapping < kinds.index(("retry", 1)) < kinds.index(("fatal", 1))
            assert ("flapping", 2) not in kinds

    run(scenario())


def test_the_third_failed_check_in_a_row_restarts_the_worker_as_unhealthy(
    tmp_path: Path,
) -> None:
    check = HealthSpec(type="exec", target="false", interval=10, timeout=5, retries=3)
    clock = FakeClock()
    t0 = clock.monotonic()

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], health=check)))
            first = (await until(lambda: running_pids(engine.observed(), "w"), what="running"))[1]
            runner = engine.watchers["w"].slots[1]
            for failures in (1, 2):
                await waits_for(clock, t0 + 10 * failures, f"check {failures}")
                clock.advance(10)
                await until(lambda n=failures: runner.state.health.failures == n, what="a failure")
                assert running_pids(engine.observed(), "w") == {1: first}
            status = statuses(engine.observed(), "w")[1]
            assert status.health == types_pb2.HEALTH_STARTING
            assert status.health_message == "exec false: exit 1"
            await waits_for(clock, t0 + 30, "check 3")
            clock.advance(10)
            await until(
                lambda: running_pids(engine.observed(), "w").get(1, first) != first, what="new"
            )
            last = statuses(engine.observed(), "w")[1].last_exit
            assert last.reason == types_pb2.EXIT_REASON_UNHEALTHY
            assert last.message == "exec false: exit 1"

    run(scenario())


def test_a_check_that_hangs_fails_at_its_timeout_on_the_clock(tmp_path: Path) -> None:
    check = HealthSpec(type="exec", target="sleep 300", interval=10, timeout=5, retries=3)
    clock = FakeClock()
    t0 = clock.monotonic()

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], health=check)))
            await until(lambda: running_pids(engine.observed(), "w"), what="running")
            runner = engine.watchers["w"].slots[1]
            await waits_for(clock, t0 + 10, "the check")
            clock.advance(10)
            await waits_for(clock, t0 + 15, "the check's timeout")
            clock.advance(5 - MS)
            assert runner.state.health.failures == 0
            clock.advance(MS)
            await until(lambda: runner.state.health.failures == 1, what="the check failed")
            assert runner.state.health.message == "exec sleep 300: timed out after 5s"

    run(scenario())


def test_a_new_version_on_probation_that_crashes_stays_down_outside_flapping(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    old = WatcherSpec(name="w", cmd=SLEEP, numprocesses=2)

    async def scenario() -> None:
        async with Engine(settings(tmp_path), clock=clock) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1, 2])))
            before = await until(
                lambda: len(r := running_pids(engine.observed(), "w")) == 2 and r, what="2 running"
            )
            earlier = PinnedVersion(spec=old, restart_token=0, wids=(2,))
            new = watcher(
                "w", "sh -c 'exit 3'", [1, 2], restart_token=1, pinned=(earlier,), probation=(1,)
            )
            engine.apply(assignment(new, generation=2))
            await until(lambda: states(engine)[1] == EXITED, what="the new wid 1 crashed")
            await until(lambda: not engine.watchers["w"].stopping(), what="old wid 1 stopped")
            clock.advance(3600)  # no retry, ever: the controller halts the rollout
            engine.wake()
            assert clock.timers() == []  # nothing waits to start it
            assert not engine.watchers["w"].slots[1].state.pending
            status = statuses(engine.observed(), "w")
            assert status[1].state == EXITED and status[1].pid == 0
            assert status[1].last_exit.code == 3
            assert running_pids(engine.observed(), "w") == {2: before[2]}
            kinds = [e.kind for e in engine.take_events()]
            assert kinds.count("spawn") == 3 and "flapping" not in kinds

    run(scenario())
