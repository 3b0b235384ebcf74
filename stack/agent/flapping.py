"""Circus's flapping detection as pure functions over a frozen state and a clock value.

A watcher whose workers keep dying is "flapping": more than `attempts` unplanned exits
(crashes or spawn errors, each followed by a restart) within `window` seconds. The
watcher then stops respawning, waits `retry_in` seconds and tries again; after
`max_retry` retries (-1: forever) it is fatal until reset. Nothing here reads a clock
or touches a process: the watcher passes `now` (monotonic seconds) and acts on the
returned decision, so the rules are tested with a table and a fake clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from stack.spec.model import FlappingSpec


class FlapPhase(enum.Enum):
    ACTIVE = "active"
    FLAPPING = "flapping"
    FATAL = "fatal"


class Decision(enum.Enum):
    RESPAWN = "respawn"
    """Restart the process now."""
    BACKOFF = "backoff"
    """Flapping detected: stop the watcher's processes and wait until `retry_at`."""
    FATAL = "fatal"
    """Flapped `max_retry` times: stop everything and give up until reset."""
    RETRY = "retry"
    """The flapping wait is over: start the watcher's processes again."""
    WAIT = "wait"
    """Nothing to do now."""


@dataclass(frozen=True)
class FlapState:
    """The flapping bookkeeping of one watcher."""

    exits: tuple[float, ...] = ()
    """Times of the recent unplanned exits (inside the window)."""
    retries: int = 0
    """How many times flapping was detected and a retry scheduled."""
    phase: FlapPhase = FlapPhase.ACTIVE
    retry_at: float = 0.0
    """Monotonic time of the next retry while FLAPPING."""
    spawn_failures: int = 0
    """Spawn errors in a row; more than the watcher's max_retry is fatal."""
    fatal_reason: str = ""
    """Why the watcher gave up, when not by flapping."""


def record_exit(state: FlapState, now: float, spec: FlappingSpec) -> tuple[FlapState, Decision]:
    """An unplanned exit (or spawn error) happened at `now`: respawn, back off or give up."""
    if state.phase is not FlapPhase.ACTIVE:
        return state, Decision.WAIT
    exits = (*(t for t in state.exits if now - t <= spec.window), now)
    if len(exits) <= spec.attempts:
        return replace(state, exits=exits), Decision.RESPAWN
    # `replace` keeps spawn_failures: a run of spawn errors goes on across a backoff.
    if spec.max_retry != -1 and state.retries >= spec.max_retry:
        return replace(state, exits=(), phase=FlapPhase.FATAL, retry_at=0.0), Decision.FATAL
    flapping = replace(
        state,
        exits=(),
        retries=state.retries + 1,
        phase=FlapPhase.FLAPPING,
        retry_at=now + spec.retry_in,
    )
    return flapping, Decision.BACKOFF


def spawn_failed(state: FlapState, error: str, max_retry: int) -> FlapState:
    """A spawn error: fatal once more than `max_retry` (-1: never) happen in a row."""
    failures = state.spawn_failures + 1
    if max_retry != -1 and failures > max_retry:
        why = f"could not start after {failures} attempts: {error}"
        return replace(
            state,
            exits=(),
            phase=FlapPhase.FATAL,
            retry_at=0.0,
            spawn_failures=failures,
            fatal_reason=why,
        )
    return replace(state, spawn_failures=failures)


def spawned(state: FlapState) -> FlapState:
    """A successful spawn ends a run of spawn errors."""
    return replace(state, spawn_failures=0) if state.spawn_failures else state


def tick(state: FlapState, now: float) -> tuple[FlapState, Decision]:
    """Time passed: once `retry_at` is reached a flapping watcher retries.

    The retry keeps `spawn_failures`: only a successful spawn or a reset ends the run.
    """
    if state.phase is FlapPhase.FLAPPING and now >= state.retry_at:
        return replace(state, phase=FlapPhase.ACTIVE, exits=(), retry_at=0.0), Decision.RETRY
    return state, Decision.WAIT


def reset() -> FlapState:
    """A fresh state: what `stackctl reset` or `start` leaves behind."""
    return FlapState()


def message(state: FlapState, now: float) -> str:
    """How `status` explains the phase: `flapping, retry in 5s`, `fatal: flapped 3 times`."""
    if state.phase is FlapPhase.FLAPPING:
        seconds = max(0, math.ceil(state.retry_at - now))
        return f"flapping, retry in {seconds}s"
    if state.phase is FlapPhase.FATAL and state.fatal_reason:
        return f"fatal: {state.fatal_reason}"
    if state.phase is FlapPhase.FATAL:
        return f"fatal: flapped {state.retries + 1} times"
    return ""
