"""Circus's flapping rules as a table over a fake clock (stack.agent.flapping is pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.agent.flapping import (
    Decision,
    FlapPhase,
    FlapState,
    message,
    record_exit,
    reset,
    spawn_failed,
    spawned,
    tick,
)
from stack.spec.model import FlappingSpec

SPEC = FlappingSpec(attempts=2, window=1.0, retry_in=5.0, max_retry=2)


def _play(steps: list[tuple[str, float]], spec: FlappingSpec = SPEC) -> list[Decision]:
    state = FlapState()
    decisions = []
    for action, now in steps:
        if action == "exit":
            state, decision = record_exit(state, now, spec)
        else:
            state, decision = tick(state, now)
        decisions.append(decision)
    return decisions


R, B, F, T, W = Decision.RESPAWN, Decision.BACKOFF, Decision.FATAL, Decision.RETRY, Decision.WAIT


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([("exit", 0.0), ("exit", 0.5)], [R, R], id="attempts-exits-in-window-respawn"),
        pytest.param(
            [("exit", 0.0), ("exit", 0.5), ("exit", 0.9)],
            [R, R, B],
            id="one-more-than-attempts-in-window-flaps",
        ),
        pytest.param(
            [("exit", 0.0), ("exit", 0.6), ("exit", 1.2), ("exit", 1.8)],
            [R, R, R, R],
            id="exits-spread-over-the-window-never-flap",
        ),
        pytest.param(
            [("exit", 0.0), ("exit", 0.1), ("exit", 0.2), ("tick", 4.0), ("tick", 5.2)],
            [R, R, B, W, T],
            id="retry-only-after-retry-in",
        ),
        pytest.param(
            [("exit", 0.0), ("exit", 0.1), ("exit", 0.2), ("exit", 0.3)],
            [R, R, B, W],
            id="exits-while-flapping-are-ignored",
        ),
        pytest.param(
            [
                ("exit", 0.0),
                ("exit", 0.1),
                ("exit", 0.2),
                ("tick", 5.2),
                ("exit", 5.3),
                ("exit", 5.4),
                ("exit", 5.5),
                ("tick", 10.5),
                ("exit", 10.6),
                ("exit", 10.7),
                ("exit", 10.8),
                ("tick", 99.0),
            ],
            [R, R, B, T, R, R, B, T, R, R, F, W],
            id="fatal-after-max-retry-retries",
        ),
    ],
)
def test_flapping_decisions_follow_circus_rules(
    steps: list[tuple[str, float]], expected: list[Decision]
) -> None:
    assert _play(steps) == expected


def test_max_retry_minus_one_retries_forever() -> None:
    spec = FlappingSpec(attempts=0, window=1.0, retry_in=1.0, max_retry=-1)
    state = FlapState()
    for round_ in range(50):
        state, decision = record_exit(state, round_ * 10.0, spec)
        assert decision is Decision.BACKOFF
        state, decision = tick(state, round_ * 10.0 + 1.0)
        assert decision is Decision.RETRY


def test_messages_say_when_the_retry_comes_and_how_often_it_flapped() -> None:
    state, _ = record_exit(FlapState(), 0.0, FlappingSpec(attempts=0, retry_in=5.0, max_retry=0))
    assert state.phase is FlapPhase.FATAL
    assert message(state, 0.0) == "fatal: flapped 1 times"
    state, _ = record_exit(FlapState(), 10.0, FlappingSpec(attempts=0, retry_in=5.0))
    assert message(state, 10.0) == "flapping, retry in 5s"
    assert message(state, 11.5) == "flapping, retry in 4s"
    assert message(reset(), 0.0) == ""


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=40))
def test_never_flaps_with_at_most_attempts_exits(times: list[float]) -> None:
    spec = FlappingSpec(attempts=len(times), window=1.0, retry_in=1.0, max_retry=0)
    state = FlapState()
    for now in sorted(times):
        state, decision = record_exit(state, now, spec)
        assert decision is Decision.RESPAWN


def test_spawn_errors_in_a_row_beyond_max_retry_are_fatal_with_the_error() -> None:
    state = FlapState()
    for _ in range(3):
        state = spawn_failed(state, "spawn error: boom", max_retry=3)
        assert state.phase is FlapPhase.ACTIVE
    state = spawn_failed(state, "spawn error: boom", max_retry=3)
    assert state.phase is FlapPhase.FATAL
    assert message(state, 0.0) == "fatal: could not start after 4 attempts: spawn error: boom"


def test_a_successful_spawn_ends_the_run_of_spawn_errors() -> None:
    state = spawn_failed(spawn_failed(FlapState(), "e", max_retry=2), "e", max_retry=2)
    state = spawned(state)
    assert spawn_failed(spawn_failed(state, "e", max_retry=2), "e", max_retry=2).phase is (
        FlapPhase.ACTIVE
    )


def test_max_retry_minus_one_never_gives_up_on_spawn_errors() -> None:
    state = FlapState()
    for _ in range(100):
        state = spawn_failed(state, "e", max_retry=-1)
    assert state.phase is FlapPhase.ACTIVE


def _spawn_errors_until_fatal(max_retry: int, spec: FlappingSpec) -> tuple[FlapState, list[str]]:
    """Play the watcher's loop for a command that never starts: spawn error, exit, retry."""
    state, now, trail = FlapState(), 0.0, []
    for _ in range(100):
        state = spawn_failed(state, "spawn error: no such file", max_retry)
        if state.phase is FlapPhase.FATAL:
            trail.append("fatal")
            return state, trail
        state, decision = record_exit(state, now, spec)
        trail.append(decision.value)
        if decision is Decision.BACKOFF:
            now = state.retry_at
            state, decision = tick(state, now)
            assert decision is Decision.RETRY
            trail.append(decision.value)
        now += 0.001
    raise AssertionError(f"never fatal: {trail}")


def test_spawn_errors_in_a_row_stay_counted_across_flapping_backoffs() -> None:
    state, trail = _spawn_errors_until_fatal(max_retry=3, spec=FlappingSpec())
    assert trail == ["respawn", "respawn", "backoff", "retry", "fatal"]
    assert state.spawn_failures == 4
    assert message(state, 0.0) == (
        "fatal: could not start after 4 attempts: spawn error: no such file"
    )


def test_backoff_and_retry_keep_the_spawn_error_run_and_a_spawn_or_reset_clears_it() -> None:
    spec = FlappingSpec(attempts=0, retry_in=1.0)
    state = spawn_failed(FlapState(), "e", max_retry=5)
    state, decision = record_exit(state, 0.0, spec)
    assert decision is Decision.BACKOFF and state.spawn_failures == 1
    state, decision = tick(state, 1.0)
    assert decision is Decision.RETRY and state.spawn_failures == 1
    assert spawned(state).spawn_failures == 0
    assert reset().spawn_failures == 0
