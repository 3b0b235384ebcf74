"""Flapping per worker slot, as tables over a fake clock (stack.agent.flapping is pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.agent.flapping import (
    Decision,
    FlapPhase,
    FlapState,
    may_restart,
    message,
    reset,
    spawn_failed,
    spawned,
    started,
    tick,
    watcher_summary,
)
from stack.spec.model import FlappingSpec

SPEC = FlappingSpec(attempts=2, window=1.0, retry_in=5.0, max_retry=2)
R, B, F, T, W = Decision.RESPAWN, Decision.BACKOFF, Decision.FATAL, Decision.RETRY, Decision.WAIT


def _play(steps: list[tuple[str, float]], spec: FlappingSpec = SPEC) -> list[Decision]:
    """One slot: `start` is a start, `die` an unplanned exit (restarted at once when
    the decision says so), `tick` time passing (a retry starts the slot)."""
    state = FlapState()
    decisions = []
    for action, now in steps:
        if action == "start":
            state = started(state, now, spec)
            continue
        if action == "die":
            state, decision = may_restart(state, now, spec)
        else:
            state, decision = tick(state, now)
        if decision in (R, T):
            state = started(state, now, spec)
        decisions.append(decision)
    return decisions


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [("start", 0.0), ("die", 0.5)], [R], id="attempts-starts-in-the-window-restart"
        ),
        pytest.param(
            [("start", 0.0), ("die", 0.2), ("die", 0.4)],
            [R, B],
            id="a-start-beyond-attempts-in-the-window-flaps",
        ),
        pytest.param(
            [("start", 0.0), ("die", 0.6), ("die", 1.7), ("die", 2.8), ("die", 3.9)],
            [R, R, R, R],
            id="starts-spread-over-the-window-never-flap",
        ),
        pytest.param(
            [("start", 0.0), ("die", 100.0), ("die", 200.0)],
            [R, R],
            id="a-worker-dying-once-in-a-while-never-flaps",
        ),
        pytest.param(
            [("start", 0.0), ("die", 0.1), ("die", 0.2), ("tick", 4.0), ("tick", 5.2)],
            [R, B, W, T],
            id="retry-only-after-retry-in",
        ),
        pytest.param(
            [("start", 0.0), ("die", 0.1), ("die", 0.2), ("die", 0.3)],
            [R, B, W],
            id="exits-while-flapping-are-ignored",
        ),
        pytest.param(
            [
                ("start", 0.0), ("die", 0.1), ("die", 0.2),
                ("tick", 5.2), ("die", 5.3), ("die", 5.4),
                ("tick", 10.4), ("die", 10.5), ("die", 10.6),
                ("tick", 99.0),
            ],
            [R, B, T, R, B, T, R, F, W],
            id="fatal-when-it-flaps-again-after-max-retry-retries",
        ),
    ],
)  # fmt: skip
def test_one_slot_follows_the_flapping_rules(
    steps: list[tuple[str, float]], expected: list[Decision]
) -> None:
    assert _play(steps) == expected


def test_max_retry_minus_one_retries_forever() -> None:
    spec = FlappingSpec(attempts=1, window=1.0, retry_in=1.0, max_retry=-1)
    state = FlapState()
    for round_ in range(50):
        state = started(state, round_ * 10.0, spec)
        state, decision = may_restart(state, round_ * 10.0, spec)
        assert decision is Decision.BACKOFF
        state, decision = tick(state, round_ * 10.0 + 1.0)
        assert decision is Decision.RETRY


def test_messages_say_when_the_retry_comes_and_why_a_slot_gave_up() -> None:
    spec = FlappingSpec(attempts=1, retry_in=5.0, max_retry=0)
    state, _ = may_restart(started(FlapState(), 0.0, spec), 0.0, spec)
    assert state.phase is FlapPhase.FATAL
    assert message(state, 0.0) == "fatal: flapping, and max_retry allows no retry"
    spec = FlappingSpec(attempts=1, retry_in=5.0)
    state, _ = may_restart(started(FlapState(), 10.0, spec), 10.0, spec)
    assert message(state, 10.0) == "flapping, retry in 5s"
    assert message(state, 11.5) == "flapping, retry in 4s"
    assert message(reset(), 0.0) == ""


def test_the_fatal_message_counts_the_retries_max_retry_allows() -> None:
    spec = FlappingSpec(attempts=1, window=1.0, retry_in=1.0, max_retry=5)
    state, now, backoffs = FlapState(), 0.0, 0
    while state.phase is not FlapPhase.FATAL:
        state = started(state, now, spec)
        state, decision = may_restart(state, now, spec)
        if decision is Decision.BACKOFF:
            backoffs += 1
            now = state.retry_at
            state, _ = tick(state, now)
    assert backoffs == 5
    assert message(state, now) == "fatal: still flapping after 5 retries"


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=40))
def test_never_flaps_with_at_most_attempts_starts_in_the_window(times: list[float]) -> None:
    spec = FlappingSpec(attempts=len(times) + 1, window=1.0, retry_in=1.0, max_retry=0)
    state = FlapState()
    for now in sorted(times):
        state = started(state, now, spec)
        state, decision = may_restart(state, now, spec)
        assert decision is Decision.RESPAWN


@given(
    workers=st.integers(min_value=1, max_value=64),
    deaths=st.lists(st.floats(min_value=0, max_value=1.0, allow_nan=False), max_size=64),
    attempts=st.integers(min_value=2, max_value=5),
)
def test_a_burst_where_each_worker_dies_once_never_flaps(
    workers: int, deaths: list[float], attempts: int
) -> None:
    """A signal to all workers, or an OOM killer taking several at once: every slot
    dies once (whenever in the burst) and is started again; none flaps, however many."""
    spec = FlappingSpec(attempts=attempts, window=1.0, retry_in=7.0, max_retry=5)
    slots = {wid: started(FlapState(), 0.0, spec) for wid in range(1, workers + 1)}
    burst = 100.0
    for wid, offset in zip(slots, deaths, strict=False):
        slots[wid], decision = may_restart(slots[wid], burst + offset, spec)
        assert decision is Decision.RESPAWN
        slots[wid] = started(slots[wid], burst + offset, spec)
    assert watcher_summary(slots, burst + 2).phase is FlapPhase.ACTIVE


def _crash_loop(workers: int, spec: FlappingSpec) -> tuple[dict[int, FlapState], float]:
    """Every slot's process dies right after each start; slots retry when due. Returns
    the slots once all gave up, and the time that took."""
    slots = {wid: started(FlapState(), 0.0, spec) for wid in range(1, workers + 1)}
    now = 0.0
    for _ in range(10_000):
        for wid in sorted(slots):
            state = slots[wid]
            if state.phase is FlapPhase.FLAPPING:
                state, decision = tick(state, now)
                if decision is Decision.RETRY:
                    state = started(state, now, spec)
            elif state.phase is FlapPhase.ACTIVE:
                state, decision = may_restart(state, now, spec)
                if decision is Decision.RESPAWN:
                    state = started(state, now, spec)
            slots[wid] = state
        if all(state.phase is FlapPhase.FATAL for state in slots.values()):
            return slots, now
        now += 0.01
    raise AssertionError("the crash loop never went fatal")


@given(workers=st.integers(min_value=1, max_value=16), max_retry=st.integers(0, 4))
def test_a_crash_loop_of_every_slot_flaps_then_goes_fatal_after_max_retry(
    workers: int, max_retry: int
) -> None:
    spec = FlappingSpec(attempts=2, window=1.0, retry_in=2.0, max_retry=max_retry)
    slots, took = _crash_loop(workers, spec)
    assert all(state.retries == max_retry for state in slots.values())
    # max_retry waits of retry_in, as a watcher-wide count would take, not one per slot
    assert max_retry * spec.retry_in <= took < max_retry * spec.retry_in + 1.0
    summary = watcher_summary(slots, took)
    assert summary.phase is FlapPhase.FATAL
    expected = {
        0: "fatal: flapping, and max_retry allows no retry",
        1: "fatal: still flapping after 1 retry",
    }.get(max_retry, f"fatal: still flapping after {max_retry} retries")
    assert summary.message == expected


@pytest.mark.parametrize(
    ("phases", "phase", "text"),
    [
        pytest.param({}, FlapPhase.ACTIVE, "", id="no-slots"),
        pytest.param({1: "a", 2: "a"}, FlapPhase.ACTIVE, "", id="all-active"),
        pytest.param(
            {1: "a", 2: "w", 3: "a"}, FlapPhase.FLAPPING, "worker 2: flapping, retry in 5s",
            id="one-slot-waits-while-the-others-serve",
        ),
        pytest.param(
            {1: "w", 2: "w"}, FlapPhase.FLAPPING, "flapping, retry in 5s",
            id="every-slot-waits",
        ),
        pytest.param(
            {1: "a", 2: "f", 3: "f"}, FlapPhase.ACTIVE,
            "workers 2, 3: fatal: still flapping after 2 retries",
            id="slots-that-gave-up-beside-live-ones-are-named",
        ),
        pytest.param(
            {1: "f", 2: "f"}, FlapPhase.FATAL, "fatal: still flapping after 2 retries",
            id="every-slot-gave-up-the-watcher-is-fatal",
        ),
        pytest.param(
            {1: "f", 2: "s"}, FlapPhase.FATAL,
            "fatal: worker 1: still flapping after 2 retries; "
            "worker 2: could not start after 5 attempts: spawn error: x",
            id="different-reasons-each-named",
        ),
    ],
)  # fmt: skip
def test_the_watcher_looks_as_its_slots_make_it(
    phases: dict[int, str], phase: FlapPhase, text: str
) -> None:
    kinds = {
        "a": FlapState(),
        "w": FlapState(retries=1, phase=FlapPhase.FLAPPING, retry_at=15.0),
        "f": FlapState(retries=2, phase=FlapPhase.FATAL),
        "s": FlapState(
            phase=FlapPhase.FATAL,
            fatal_reason="could not start after 5 attempts: spawn error: x",
        ),
    }
    summary = watcher_summary({wid: kinds[kind] for wid, kind in phases.items()}, 10.0)
    assert (summary.phase, summary.message) == (phase, text)
    assert summary.retry_at == (15.0 if "w" in phases.values() else 0.0)


def test_the_max_retry_th_spawn_error_in_a_row_is_fatal_with_the_error() -> None:
    state = FlapState()
    for _ in range(4):
        state = spawn_failed(state, "spawn error: boom", max_retry=5)
        assert state.phase is FlapPhase.ACTIVE
    state = spawn_failed(state, "spawn error: boom", max_retry=5)
    assert state.phase is FlapPhase.FATAL
    assert message(state, 0.0) == "fatal: could not start after 5 attempts: spawn error: boom"


def test_max_retry_zero_or_one_gives_up_at_the_first_spawn_error() -> None:
    for max_retry in (0, 1):
        state = spawn_failed(FlapState(), "e", max_retry=max_retry)
        assert message(state, 0.0) == "fatal: could not start after 1 attempt: e"


def test_a_successful_spawn_ends_the_run_of_spawn_errors() -> None:
    state = spawn_failed(spawn_failed(FlapState(), "e", max_retry=3), "e", max_retry=3)
    state = spawned(state)
    assert spawn_failed(spawn_failed(state, "e", max_retry=3), "e", max_retry=3).phase is (
        FlapPhase.ACTIVE
    )


def test_max_retry_minus_one_never_gives_up_on_spawn_errors() -> None:
    state = FlapState()
    for _ in range(100):
        state = spawn_failed(state, "e", max_retry=-1)
    assert state.phase is FlapPhase.ACTIVE


def _spawn_errors_until_fatal(max_retry: int, spec: FlappingSpec) -> tuple[FlapState, list[str]]:
    """Play the watcher's loop for one slot whose command never starts: a start
    attempt, its spawn error, the restart decision, the retry."""
    state, now, trail = FlapState(), 0.0, []
    for _ in range(100):
        state = started(state, now, spec)
        state = spawn_failed(state, "spawn error: no such file", max_retry)
        if state.phase is FlapPhase.FATAL:
            trail.append("fatal")
            return state, trail
        state, decision = may_restart(state, now, spec)
        trail.append(decision.value)
        if decision is Decision.BACKOFF:
            now = state.retry_at
            state, decision = tick(state, now)
            assert decision is Decision.RETRY
            trail.append(decision.value)
        now += 0.001
    raise AssertionError(f"never fatal: {trail}")


def test_spawn_errors_in_a_row_stay_counted_across_flapping_backoffs() -> None:
    state, trail = _spawn_errors_until_fatal(max_retry=5, spec=FlappingSpec())
    assert trail == ["respawn", "backoff", "retry", "respawn", "backoff", "retry", "fatal"]
    assert state.spawn_failures == 5
    assert message(state, 0.0) == (
        "fatal: could not start after 5 attempts: spawn error: no such file"
    )


def test_backoff_and_retry_keep_the_spawn_error_run_and_a_spawn_or_reset_clears_it() -> None:
    spec = FlappingSpec(attempts=1, retry_in=1.0)
    state = spawn_failed(started(FlapState(), 0.0, spec), "e", max_retry=5)
    state, decision = may_restart(state, 0.0, spec)
    assert decision is Decision.BACKOFF and state.spawn_failures == 1
    state, decision = tick(state, 1.0)
    assert decision is Decision.RETRY and state.spawn_failures == 1
    assert spawned(state).spawn_failures == 0
    assert reset().spawn_failures == 0
