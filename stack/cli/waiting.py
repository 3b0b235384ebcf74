"""`--wait`: poll Status until the watchers reach what a command asked for.

Each kind of wait is a pure check of one WatcherStatus returning a `WaitState`
(done or not, progress, and where it stands in words). `wait_until` polls the
controller every 100 ms with a deadline. Each step it sees is a line of its own on
stdout when stdout is not a terminal (`webapp has 5 of 8 running (0.6s)`), a progress
bar on a terminal; it ends with `done in 1.2s: webapp has 8 of 8 running`, or on
timeout fails with `timed out after 30s: webapp has 3 of 6 running`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stack.cli.errors import CommandError
from stack.cli.formats import format_elapsed, format_seconds, state_name
from stack.cli.render import print_text, wait_display
from stack.v1 import admin_pb2, types_pb2

if TYPE_CHECKING:
    from stack.cli.client import StackClient

PS = types_pb2.ProcessState
POLL_INTERVAL = 0.1

# States in which a process has (or is about to have) an OS process.
_LIVE = (PS.PROCESS_STATE_STARTING, PS.PROCESS_STATE_RUNNING, PS.PROCESS_STATE_STOPPING)


@dataclass(frozen=True)
class WaitState:
    """How far one watcher is from what the command waits for."""

    done: bool
    """The watcher is where the command wanted it."""
    have: int
    """Progress so far (processes running, restarted, ...)."""
    want: int
    """Progress needed."""
    missing: str
    """Where it stands, in words: `webapp has 3 of 6 running` (what is missing, until
    it is done)."""
    hopeless: str = ""
    """Why it cannot get there without another command (it is stopped); fail at once."""


Check = Callable[[admin_pb2.WatcherStatus], WaitState]
ProcessKey = tuple[str, int]


def _hopeless(watcher: admin_pb2.WatcherStatus) -> str:
    """Why processes of `watcher` will not come up by waiting, if they will not."""
    # Only the desired state counts here: what agents report lags behind a command.
    if not watcher.active:
        return f"{watcher.name} is stopped (stackctl start {watcher.name})"
    return ""


def _others_text(others: Sequence[types_pb2.ProcessStatus]) -> str:
    by_state: dict[str, int] = {}
    for process in others:
        name = state_name(process.state)
        by_state[name] = by_state.get(name, 0) + 1
    return ", ".join(f"{count} still {name}" for name, count in sorted(by_state.items()))


def scaled_to(count: int) -> Check:
    """Exactly `count` processes RUNNING and no others remain (stopped ones aside)."""

    def check(watcher: admin_pb2.WatcherStatus) -> WaitState:
        running = [p for p in watcher.processes if p.state == PS.PROCESS_STATE_RUNNING]
        others = [
            p
            for p in watcher.processes
            if p.state not in (PS.PROCESS_STATE_RUNNING, PS.PROCESS_STATE_STOPPED)
        ]
        missing = f"{watcher.name} has {len(running)} of {count} running"
        if len(running) > count:
            missing = f"{watcher.name} has {len(running)} running, {count} wanted"
        if others:
            missing += f", {_others_text(others)}"
        done = len(running) == count and not others and not watcher.pending
        return WaitState(
            done, min(len(running), count), count, missing, _hopeless(watcher) if count else ""
        )

    return check


def started() -> Check:
    """Every desired process of the watcher RUNNING."""

    def check(watcher: admin_pb2.WatcherStatus) -> WaitState:
        return scaled_to(watcher.numprocesses)(watcher)

    return check


def stopped() -> Check:
    """No process of the watcher left with an OS process."""

    def check(watcher: admin_pb2.WatcherStatus) -> WaitState:
        live = [p for p in watcher.processes if p.pid != 0 or p.state in _LIVE]
        total = len(watcher.processes)
        if live:
            count = f"{len(live)} process" + ("" if len(live) == 1 else "es")
            missing = f"{watcher.name} has {count} still running"
        else:
            missing = f"{watcher.name} has none running"
        return WaitState(not live, total - len(live), total, missing)

    return check


def start_times(reply: admin_pb2.StatusReply) -> dict[ProcessKey, float]:
    """(host, wid) -> started_at of every process, taken before a restart."""
    return {(p.host_id, p.wid): p.started_at for w in reply.watchers for p in w.processes}


def restarted(before: Mapping[ProcessKey, float]) -> Check:
    """Every process started after the call (compared with `before`, so no clock skew)."""

    def check(watcher: admin_pb2.WatcherStatus) -> WaitState:
        def fresh(p: types_pb2.ProcessStatus) -> bool:
            previous = before.get((p.host_id, p.wid))
            return previous is None or p.started_at > previous

        running = [p for p in watcher.processes if p.state == PS.PROCESS_STATE_RUNNING]
        renewed = [p for p in running if fresh(p)]
        stale = [p for p in watcher.processes if p.pid != 0 and not fresh(p)]
        want = watcher.numprocesses
        missing = f"{watcher.name} has {len(renewed)} of {want} replaced"
        done = len(renewed) == want and not stale and not watcher.pending
        return WaitState(done, min(len(renewed), want), want, missing)

    return check


def rolled_out(before: Mapping[ProcessKey, float]) -> Check:
    """A rolling restart done: every process restarted and the rollout over.

    Hopeless once the rollout halts: it waits for a fix, not for time.
    """
    every = restarted(before)

    def check(watcher: admin_pb2.WatcherStatus) -> WaitState:
        state = every(watcher)
        if watcher.rollout.startswith("rollout halted"):
            return WaitState(False, state.have, state.want, state.missing, watcher.rollout)
        if watcher.rollout:
            where = f"{watcher.name}: {watcher.rollout}"
            return WaitState(False, state.have, state.want, where)
        return state

    return check


def wait_until(
    client: StackClient,
    watchers: Sequence[str],
    check: Check,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    quiet: bool = False,
) -> None:
    """Poll Status until `check` is done for every watcher, showing each step (none with
    `quiet`), then say how long it took; CommandError on timeout."""
    started = clock()
    deadline = started + timeout
    only = watchers[0] if len(watchers) == 1 else ""
    description = ", ".join(watchers)
    with wait_display(description, quiet) as display:
        while True:
            remaining = deadline - clock()
            reply = client.status(only, timeout=max(0.1, min(remaining, client.settings.timeout)))
            by_name = {w.name: w for w in reply.watchers}
            states = [
                check(by_name[name])
                if name in by_name
                else WaitState(False, 0, 1, f"{name} is not in the status")
                for name in watchers
            ]
            where = "; ".join(s.missing for s in states)
            if all(s.done for s in states):
                break
            have, want = sum(s.have for s in states), sum(s.want for s in states)
            display.update(have, want, where, clock() - started)
            hopeless = [s.hopeless for s in states if s.hopeless and not s.done]
            if hopeless:
                raise CommandError("; ".join(hopeless))
            remaining = deadline - clock()
            if remaining <= 0:
                missing = "; ".join(s.missing for s in states if not s.done)
                raise CommandError(f"timed out after {format_seconds(timeout)}s: {missing}")
            time.sleep(min(POLL_INTERVAL, remaining))
    if not quiet:
        print_text(f"done in {format_elapsed(clock() - started)}: {where}")


def wait_until_drained(
    client: StackClient,
    host_id: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    quiet: bool = False,
) -> None:
    """Poll Agents until `host_id` runs no process, showing each step (none with
    `quiet`), then say how long it took; CommandError on timeout."""
    started = clock()
    deadline = started + timeout
    with wait_display(f"draining {host_id}", quiet) as display:
        first = 0
        while True:
            agent = next((a for a in client.agents().agents if a.host_id == host_id), None)
            left = agent.processes if agent is not None else 0
            first = max(first, left)
            if left == 0:
                break
            display.update(first - left, first, f"{host_id} still runs {left}", clock() - started)
            remaining = deadline - clock()
            if remaining <= 0:
                raise CommandError(
                    f"timed out after {format_seconds(timeout)}s: {host_id} still runs {left}"
                )
            time.sleep(min(POLL_INTERVAL, remaining))
    if not quiet:
        print_text(f"done in {format_elapsed(clock() - started)}: {host_id} runs nothing")
