"""Flapping detection per worker slot, as pure functions over frozen states and a clock value.

A worker slot (one worker id of a watcher on this host) is "flapping" when it is started
more than `attempts` times within `window` seconds: its process keeps dying (a crash,
a spawn error, a failed health check) right after each start. That slot then waits
`retry_in` seconds and is tried again; after `max_retry` retries (-1: forever) it is
fatal until reset. Spawn errors in a row are counted per slot as well: the watcher's
own `max_retry` of them is fatal at once ("could not start after 5 attempts").

Counting per slot, not per watcher (Circus's flapping plugin counts the starts of the
whole watcher and stops all of it), is what keeps a burst of deaths from taking a
service down: a signal that kills every worker, or an OOM killer taking three of four,
starts each slot once more, which is no slot's flapping. A watcher whose every slot
fails at start still flaps and goes fatal slot by slot, at the same pace as a
watcher-wide count would. `watcher_summary` says how a watcher looks from its slots.

Nothing here reads a clock or touches a process: the watcher passes `now` (monotonic
seconds) and acts on the returned decision, so the rules are tested with a table and a
fake clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from stack.spec.model import FlappingSpec


class FlapPhase(enum.Enum):
    ACTIVE = "active"
    FLAPPING = "flapping"
    FATAL = "fatal"


class Decision(enum.Enum):
    RESPAWN = "respawn"
    """Start the slot again now."""
    BACKOFF = "backoff"
    """The slot flaps: leave it down until `retry_at`."""
    FATAL = "fatal"
    """The slot flapped after `max_retry` retries: leave it down until reset."""
    RETRY = "retry"
    """The flapping wait is over: start the slot again."""
    WAIT = "wait"
    """Nothing to do now."""


@dataclass(frozen=True)
class FlapState:
    """The flapping bookkeeping of one worker slot."""

    starts: tuple[float, ...] = ()
    """Monotonic times of the slot's recent starts and start attempts (inside the window)."""
    retries: int = 0
    """How many times flapping was detected and a retry scheduled."""
    phase: FlapPhase = FlapPhase.ACTIVE
    retry_at: float = 0.0
    """Monotonic time of the next retry while FLAPPING."""
    spawn_failures: int = 0
    """Spawn errors in a row; the watcher's max_retry of them is fatal."""
    fatal_reason: str = ""
    """Why the slot gave up, in words (`could not start after 5 attempts: ...`)."""


def started(state: FlapState, now: float, spec: FlappingSpec) -> FlapState:
    """The slot's process was started (or a start was attempted) at `now`."""
    return replace(state, starts=(*_recent(state.starts, now, spec.window), now))


def may_restart(state: FlapState, now: float, spec: FlappingSpec) -> tuple[FlapState, Decision]:
    """The slot's process died unplanned at `now`: start it again, back off or give up.

    Another start now would be one more than `attempts` within `window`: flapping.
    """
    if state.phase is not FlapPhase.ACTIVE:
        return state, Decision.WAIT
    recent = _recent(state.starts, now, spec.window)
    if len(recent) < spec.attempts:
        return replace(state, starts=recent), Decision.RESPAWN
    # `replace` keeps spawn_failures: a run of spawn errors goes on across a backoff.
    if spec.max_retry != -1 and state.retries >= spec.max_retry:
        why = _retries(state.retries)
        return replace(
            state, starts=(), phase=FlapPhase.FATAL, retry_at=0.0, fatal_reason=why
        ), Decision.FATAL
    flapping = replace(
        state,
        starts=(),
        retries=state.retries + 1,
        phase=FlapPhase.FLAPPING,
        retry_at=now + spec.retry_in,
    )
    return flapping, Decision.BACKOFF


def spawn_failed(state: FlapState, error: str, max_retry: int) -> FlapState:
    """A spawn error: the `max_retry`th in a row (at least the first with 0; -1: never)
    is fatal."""
    failures = state.spawn_failures + 1
    if max_retry != -1 and failures >= max(max_retry, 1):
        why = f"could not start after {_count(failures, 'attempt')}: {error}"
        return replace(
            state,
            starts=(),
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
    """Time passed: once `retry_at` is reached a flapping slot retries.

    The retry keeps `spawn_failures`: only a successful spawn or a reset ends the run.
    """
    if state.phase is FlapPhase.FLAPPING and now >= state.retry_at:
        return replace(state, phase=FlapPhase.ACTIVE, starts=(), retry_at=0.0), Decision.RETRY
    return state, Decision.WAIT


def reset() -> FlapState:
    """A fresh state: what `stackctl reset` or `start` leaves behind, and what a slot
    given a new version of its watcher starts with."""
    return FlapState()


def message(state: FlapState, now: float) -> str:
    """How `status` explains a slot's phase: `flapping, retry in 5s`, `fatal: ...`."""
    if state.phase is FlapPhase.FLAPPING:
        return f"flapping, retry in {_seconds(state.retry_at, now)}s"
    if state.phase is FlapPhase.FATAL:
        return f"fatal: {state.fatal_reason or _retries(state.retries)}"
    return ""


@dataclass(frozen=True)
class WatcherFlapping:
    """How a watcher looks from its slots' flapping states."""

    phase: FlapPhase
    """FATAL when every slot gave up; FLAPPING while some slot waits for its retry;
    ACTIVE otherwise (a slot that gave up beside live ones is named in `message`)."""
    message: str = ""
    retry_at: float = 0.0
    """The earliest retry of a flapping slot (monotonic), 0 when none waits."""
    retries: int = 0
    """The most retries any slot has had."""


def watcher_summary(slots: Mapping[int, FlapState], now: float) -> WatcherFlapping:
    """The watcher's phase and one line for status, from its slots' states (by wid)."""
    fatal = {wid: state for wid, state in slots.items() if state.phase is FlapPhase.FATAL}
    waiting = {wid: state for wid, state in slots.items() if state.phase is FlapPhase.FLAPPING}
    retries = max((state.retries for state in slots.values()), default=0)
    if slots and len(fatal) == len(slots):
        reasons = _by_reason(fatal)
        if len(reasons) == 1:
            return WatcherFlapping(FlapPhase.FATAL, f"fatal: {next(iter(reasons))}", 0.0, retries)
        text = "; ".join(f"{_workers(wids)}: {why}" for why, wids in reasons.items())
        return WatcherFlapping(FlapPhase.FATAL, f"fatal: {text}", 0.0, retries)
    parts = []
    retry_at = 0.0
    if waiting:
        retry_at = min(state.retry_at for state in waiting.values())
        text = f"flapping, retry in {_seconds(retry_at, now)}s"
        parts.append(text if len(waiting) == len(slots) else f"{_workers(waiting)}: {text}")
    for why, wids in _by_reason(fatal).items():
        parts.append(f"{_workers(wids)}: fatal: {why}")
    phase = FlapPhase.FLAPPING if waiting else FlapPhase.ACTIVE
    return WatcherFlapping(phase, "; ".join(parts), retry_at, retries)


def _by_reason(fatal: Mapping[int, FlapState]) -> dict[str, list[int]]:
    """Why each fatal slot gave up -> its wids, in wid order."""
    reasons: dict[str, list[int]] = {}
    for wid in sorted(fatal):
        state = fatal[wid]
        reasons.setdefault(state.fatal_reason or _retries(state.retries), []).append(wid)
    return reasons


def _recent(starts: tuple[float, ...], now: float, window: float) -> tuple[float, ...]:
    return tuple(t for t in starts if now - t <= window)


def _seconds(at: float, now: float) -> int:
    return max(0, math.ceil(at - now))


def _count(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _retries(retries: int) -> str:
    if retries == 0:
        return "flapping, and max_retry allows no retry"
    return f"still flapping after {retries} {'retry' if retries == 1 else 'retries'}"


def _workers(slots: Mapping[int, FlapState] | list[int]) -> str:
    """`worker 3`, `workers 1, 2`: the slots a line is about."""
    wids = sorted(slots)
    if len(wids) == 1:
        return f"worker {wids[0]}"
    shown = ", ".join(str(wid) for wid in wids[:5])
    more = f" and {len(wids) - 5} more" if len(wids) > 5 else ""
    return f"workers {shown}{more}"
