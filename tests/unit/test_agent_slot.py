"""The rules of one worker slot (stack.agent.slot): pure, with the time passed in, in ms.

Each rule takes a slot's state, what happened and `now`, and returns the new state and
what the runner must do. The timing rules are checked at their edges: a millisecond
before a deadline nothing happens, at the deadline it does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from stack.agent import slot
from stack.agent.flapping import FlapPhase, FlapState
from stack.agent.health import HealthState
from stack.agent.slot import Policy, Report, Respawn, Retire, SlotState, StartCause, Wake
from stack.agent.states import ProcessState
from stack.spec.model import FlappingSpec
from stack.spec.observed import ExitReason, Health, LastExit
from stack.spec.reports import Severity

S = ProcessState
MS = 0.001
T0 = 1000.0
FLAP = FlappingSpec(attempts=2, window=1.0, retry_in=5.0, max_retry=1)
POLICY = Policy(flapping=FLAP, max_retry=5, respawn=True)


@dataclass(frozen=True)
class FakeProc:
    pid: int = 4242
    generation: int = 0
    ready_at: float = 0.0
    deadline: float = 0.0
    settled_at: float = 0.0


def running(**fields: object) -> SlotState:
    return replace(SlotState(1, state=S.RUNNING, spawned=1, pending=False), **fields)  # type: ignore[arg-type]


def kinds(actions: list[slot.Action]) -> list[str]:
    return [a.kind for a in actions if isinstance(a, Report)]


def crash(at: float) -> LastExit:
    return LastExit(0, 9, ExitReason.CRASHED, at)


# ---- warm-up ----
def test_a_warming_process_is_running_exactly_when_its_warmup_delay_is_over() -> None:
    proc = FakeProc(ready_at=T0 + 10.0)
    warming, _ = slot.spawned(SlotState(1), proc)
    assert warming.state is S.STARTING
    before, actions = slot.tend(warming, proc, T0 + 10.0 - MS, target=0, graceful=False, unbound="")
    assert before.state is S.STARTING and not actions
    after, actions = slot.tend(warming, proc, T0 + 10.0, target=0, graceful=False, unbound="")
    assert after.state is S.RUNNING and not actions


def test_a_process_without_warmup_runs_at_once_and_one_with_it_wakes_the_engine() -> None:
    cold, actions = slot.spawned(SlotState(1), FakeProc())
    assert cold.state is S.RUNNING and Wake() not in actions
    warm, actions = slot.spawned(SlotState(1), FakeProc(ready_at=T0 + 0.2))
    assert warm.state is S.STARTING and Wake() in actions
    assert kinds(actions) == ["spawn"]


def test_the_next_start_waits_for_the_warmup_of_the_last_one_only_while_it_warms() -> None:
    proc = FakeProc(ready_at=T0 + 2.0)
    assert slot.start_gate(0.0, SlotState(1, state=S.STARTING), proc) == T0 + 2.0
    assert slot.start_gate(0.0, SlotState(1, state=S.RUNNING), proc) == 0.0
    assert slot.start_gate(5.0, SlotState(1, state=S.EXITED), None) == 5.0


# ---- startsecs ----
def test_a_start_succeeds_only_once_the_process_stayed_up_startsecs() -> None:
    proc = FakeProc(settled_at=T0 + 1.0)
    after_failures = SlotState(1, state=S.EXITED, flap=FlapState(spawn_failures=3))
    started, actions = slot.spawned(after_failures, proc)
    assert started.state is S.STARTING and Wake() in actions
    assert started.flap.spawn_failures == 3  # not a successful start yet
    before, _ = slot.tend(started, proc, T0 + 1.0 - MS, 0, False, "")
    assert before.state is S.STARTING and before.flap.spawn_failures == 3
    after, _ = slot.tend(started, proc, T0 + 1.0, 0, False, "")
    assert after.state is S.RUNNING and after.flap.spawn_failures == 0


def test_startsecs_and_a_warmup_both_keep_a_process_starting_but_only_a_warmup_gates() -> None:
    proc = FakeProc(ready_at=T0 + 1.0, settled_at=T0 + 3.0)
    started, _ = slot.spawned(SlotState(1), proc)
    assert slot.tend(started, proc, T0 + 2.0, 0, False, "")[0].state is S.STARTING
    assert slot.tend(started, proc, T0 + 3.0, 0, False, "")[0].state is S.RUNNING
    assert slot.start_gate(0.0, started, proc) == T0 + 1.0
    settling = FakeProc(settled_at=T0 + 3.0)
    assert slot.start_gate(0.5, slot.spawned(SlotState(1), settling)[0], settling) == 0.5


def test_an_exit_within_startsecs_is_a_failed_start_retried_until_max_retry_in_a_row() -> None:
    policy = replace(POLICY, max_retry=3, autorestart="unexpected")
    state = SlotState(1, state=S.STARTING, flap=FlapState(spawn_failures=1))
    failed, actions = slot.start_failed(
        state, 7, "exit code 0", crash(T0), False, T0, policy, startsecs=1.0
    )
    assert failed.state is S.EXITED and Respawn() in actions  # an expected code too
    assert failed.flap.spawn_failures == 2
    assert failed.message == "exited within startsecs (1s): exit code 0"
    fatal, actions = slot.start_failed(
        failed, 8, "exit code 0", crash(T0), False, T0, policy, startsecs=1.0
    )
    assert fatal.state is S.FATAL and kinds(actions) == ["exit", "fatal"]
    text = "could not start after 3 attempts: exited within startsecs (1s): exit code 0"
    assert fatal.flap.fatal_reason == text
    down, actions = slot.start_failed(
        state, 7, "exit code 1", crash(T0), True, T0, policy, startsecs=1.0
    )
    assert not down.pending and Respawn() not in actions


# ---- autorestart ----
@pytest.mark.parametrize(
    ("autorestart", "code", "sig", "known", "expected"),
    [
        ("unexpected", 0, 0, True, True),
        ("unexpected", 2, 0, True, True),
        ("unexpected", 1, 0, True, False),
        ("unexpected", 0, 9, True, False),  # a death by a signal is never expected
        ("unexpected", 0, 0, False, False),  # nor an exit whose status is not known
        ("", 0, 0, True, False),
    ],
)
def test_autorestart_unexpected_expects_only_the_listed_exit_codes(
    autorestart: str, code: int, sig: int, known: bool, expected: bool
) -> None:
    policy = replace(POLICY, autorestart=autorestart, exitcodes=(0, 2))
    assert slot.expected_exit(policy, code, sig, known) is expected


def test_an_expected_exit_stays_down_until_a_start_or_reset() -> None:
    state = running(cause=StartCause.FAILURE)
    down, actions = slot.exited_as_expected(state, 7, "exit code 0", crash(T0))
    assert down.state is S.EXITED and not down.pending and down.cause is StartCause.NONE
    assert actions == [Report("exit", "pid 7 exit code 0: expected, not restarted", Severity.INFO)]
    assert down.flap == state.flap and down.last_exit == crash(T0)
    assert slot.reset(down).pending


# ---- max_age ----
def test_max_age_recycles_the_process_at_its_deadline_not_a_millisecond_before() -> None:
    proc = FakeProc(deadline=T0 + 60.0)
    state = running()
    same, actions = slot.tend(state, proc, T0 + 60.0 - MS, 0, False, "")
    assert same is state and not actions
    recycled, actions = slot.tend(state, proc, T0 + 60.0, 0, False, "")
    assert actions == [Retire(ExitReason.MAX_AGE)]
    assert recycled.state is S.STOPPING and recycled.pending


def test_a_version_change_comes_before_max_age_and_a_graceful_one_keeps_the_process() -> None:
    proc = FakeProc(generation=0, deadline=T0)
    replaced, actions = slot.tend(running(), proc, T0 + 1, 1, False, "")
    assert actions == [Retire(ExitReason.RESTARTED)]
    assert replaced.state is S.STOPPING and replaced.pending
    kept, actions = slot.tend(running(), proc, T0 + 1, 1, True, "")
    assert not actions and kept.state is S.RUNNING and kept.pending  # its successor first


def test_a_process_whose_new_version_cannot_bind_its_socket_is_kept_and_says_why() -> None:
    proc = FakeProc(generation=0)
    blocked, actions = slot.tend(running(), proc, T0, 1, False, "socket web: address in use")
    assert not actions and blocked.blocked == "socket web: address in use"
    back, _ = slot.tend(blocked, proc, T0, 0, False, "")  # pinned back to its version
    assert back.blocked == "" and back.state is S.RUNNING


# ---- starting ----
@pytest.mark.parametrize(
    ("state", "running_gen", "stopping", "go", "pending"),
    [
        (SlotState(1), None, False, True, True),
        (SlotState(1), None, True, False, True),  # its predecessor still stops
        (SlotState(1, pending=False), None, False, False, False),
        (SlotState(1, flap=FlapState(phase=FlapPhase.FLAPPING)), None, False, False, True),
        (SlotState(1), 1, False, False, False),  # runs the wanted version already
        (SlotState(1), 0, False, True, True),  # another version: replaced
    ],
)
def test_a_slot_starts_when_pending_active_and_not_waiting_for_its_predecessor(
    state: SlotState, running_gen: int | None, stopping: bool, go: bool, pending: bool
) -> None:
    after, start = slot.wants_start(state, running_gen, 1, "", stopping)
    assert start is go
    assert after.pending is pending


def test_a_start_counts_for_flapping_and_a_spawn_clears_the_message_and_health() -> None:
    state = SlotState(1, message="old", health=HealthState(Health.UNHEALTHY, 3, "x"))
    tried = slot.starting(state, T0, "v2", FLAP)
    assert tried.version == "v2" and tried.flap.starts == (T0,)
    up, _ = slot.spawned(tried, FakeProc())
    assert (up.message, up.health, up.spawned, up.restarts) == ("", HealthState(), 1, 0)


@pytest.mark.parametrize(
    ("cause", "restarts", "replacements"),
    [(StartCause.NONE, 0, 0), (StartCause.FAILURE, 1, 0), (StartCause.REPLACEMENT, 0, 1)],
)
def test_a_start_counts_as_a_restart_or_a_replacement_by_what_ended_the_one_before(
    cause: StartCause, restarts: int, replacements: int
) -> None:
    state = slot.starting(SlotState(1, spawned=1, cause=cause), T0, "v", FLAP)
    assert (state.restarts, state.replacements, state.cause) == (
        restarts,
        replacements,
        StartCause.NONE,
    )


def test_what_the_next_start_counts_as_follows_what_ended_the_last_process() -> None:
    proc = FakeProc(generation=0, deadline=T0)
    crashed, _ = slot.exited(running(), 7, "exit code 3", crash(T0), False, T0, POLICY)
    assert crashed.cause is StartCause.FAILURE
    replaced, _ = slot.tend(running(), proc, T0, 1, True, "")
    assert replaced.cause is StartCause.REPLACEMENT  # even a graceful one
    blocked, _ = slot.tend(running(), proc, T0, 1, False, "socket web: not bound")
    assert blocked.cause is StartCause.NONE  # not replaced (yet)
    recycled, _ = slot.tend(running(), proc, T0, 0, False, "")
    assert recycled.cause is StartCause.REPLACEMENT  # max_age
    stopped, _ = slot.stop(replace(crashed, cause=StartCause.FAILURE), has_proc=False)
    assert stopped.cause is StartCause.NONE  # a stop on purpose
    assert slot.renewed(running()).cause is StartCause.REPLACEMENT
    assert slot.renewed(SlotState(1, state=S.STOPPED, spawned=1)).cause is StartCause.NONE
    assert slot.renewed(SlotState(1)).cause is StartCause.NONE  # never started


# ---- flapping, per slot ----
def test_a_slot_started_more_than_attempts_times_in_the_window_backs_off_then_retries() -> None:
    state = SlotState(1, state=S.EXITED)
    for at in (T0, T0 + 0.1):
        state = slot.starting(state, at, "v", FLAP)
    state, actions = slot.failed(state, T0 + 0.2, POLICY)
    assert state.state is S.BACKOFF and not state.pending
    assert kinds(actions) == ["flapping"] and Wake() in actions
    assert state.flap.retry_at == pytest.approx(T0 + 5.2)
    waiting, actions = slot.retry(state, T0 + 5.2 - MS)
    assert waiting is state and not actions
    retried, actions = slot.retry(state, T0 + 5.2)
    assert retried.pending and retried.flap.phase is FlapPhase.ACTIVE
    assert kinds(actions) == ["retry"]


def test_a_slot_that_flaps_again_after_max_retry_retries_is_fatal() -> None:
    state = SlotState(1, state=S.EXITED, flap=FlapState(retries=1, starts=(T0, T0)))
    fatal, actions = slot.failed(state, T0 + 0.1, POLICY)
    assert fatal.state is S.FATAL and not fatal.pending
    text = "fatal: still flapping after 1 retry"
    assert actions == [Report("fatal", text, Severity.ERROR)]


def test_an_exit_within_attempts_is_respawned_at_once_and_only_its_slot_counts_it() -> None:
    one = slot.starting(SlotState(1, state=S.RUNNING), T0, "v", FLAP)
    other = slot.starting(SlotState(2, state=S.RUNNING), T0, "v", FLAP)
    one, actions = slot.exited(one, 7, "killed by signal 9 (crashed)", crash(T0), False, T0, POLICY)
    assert one.state is S.EXITED and actions[-1] == Respawn()
    assert kinds(actions) == ["exit"]
    assert other.flap.starts == (T0,)  # the other slot's count is its own


def test_an_exit_that_must_stay_down_neither_respawns_nor_counts_for_flapping() -> None:
    state = running()
    down, actions = slot.exited(state, 7, "exit code 3 (crashed)", crash(T0), True, T0, POLICY)
    assert down.state is S.EXITED and not down.pending
    assert Respawn() not in actions and down.flap == state.flap


# ---- spawn errors ----
def test_a_spawn_error_is_tried_again_at_once_until_the_slot_flaps() -> None:
    state = slot.starting(SlotState(1), T0, "v", FLAP)
    state, actions = slot.spawn_failed(state, "spawn error: no such file", T0, 1.8e9, False, POLICY)
    assert Respawn() in actions and state.cause is StartCause.FAILURE
    assert slot.starting(state, T0, "v", FLAP).restarts == 1  # the next try is a restart
    assert state.last_exit is not None
    assert state.last_exit.reason == ExitReason.SPAWN_ERROR
    assert state.message == "spawn error: no such file"


def test_the_max_retry_th_spawn_error_in_a_row_is_fatal_at_once() -> None:
    state = SlotState(1, flap=FlapState(spawn_failures=4))
    fatal, actions = slot.spawn_failed(state, "spawn error: x", T0, 1.8e9, False, POLICY)
    assert fatal.state is S.FATAL
    assert kinds(actions) == ["spawn_error", "fatal"]


# ---- probation ----
def test_a_new_process_on_probation_that_cannot_start_is_left_down_outside_flapping() -> None:
    state = slot.starting(SlotState(1), T0, "v2", FLAP)
    down, actions = slot.spawn_failed(state, "spawn error: x", T0, 1.8e9, True, POLICY)
    assert down.state is S.EXITED and not down.pending
    assert kinds(actions) == ["spawn_error"] and Respawn() not in actions
    assert down.flap.spawn_failures == 0  # the controller halts the rollout instead


# ---- health ----
def test_only_retries_failed_checks_in_a_row_restart_the_process() -> None:
    state = running()
    state, restart = slot.checked(state, "exit 1", retries=3)
    state, restart = slot.checked(state, "exit 1", retries=3)
    assert not restart and state.health.failures == 2
    state, restart = slot.checked(state, None, retries=3)
    assert not restart and state.health == HealthState(Health.HEALTHY, 0, "exit 1")
    for _ in range(2):
        state, restart = slot.checked(state, "exit 1", retries=3)
    assert not restart
    state, restart = slot.checked(state, "exit 1", retries=3)
    assert restart and state.health.health is Health.UNHEALTHY


def test_an_unhealthy_process_is_stopped_counted_as_a_crash_and_started_after_its_stop() -> None:
    state = running(health=HealthState(Health.UNHEALTHY, 3, "exec ./check: exit 1"))
    after, actions = slot.unhealthy(state, 7, False, T0, POLICY)
    assert actions == [
        Report("unhealthy", "pid 7: exec ./check: exit 1", Severity.WARNING),
        Retire(ExitReason.UNHEALTHY, "exec ./check: exit 1"),
    ]
    assert after.state is S.STOPPING and after.pending  # started once the stop is done
    assert slot.health_of(after, has_proc=False, has_check=True) == (
        Health.UNHEALTHY,
        "exec ./check: exit 1",
    )


# ---- stopping ----
def test_a_stop_on_purpose_ends_stopped_with_the_exit_of_its_process() -> None:
    stopping, actions = slot.stop(running(), has_proc=True)
    assert actions == [Retire(ExitReason.STOPPED)] and not stopping.pending
    last = LastExit(0, 15, ExitReason.STOPPED, 1.8e9)
    done = slot.stopped(stopping, last)
    assert done.state is S.STOPPED and done.last_exit == last
    restarting = slot.stopped(replace(stopping, pending=True), last)
    assert restarting.state is S.STOPPING  # its successor is about to start


def test_every_rule_moves_only_along_the_allowed_transitions() -> None:
    # FATAL -> STOPPING is not allowed: a rule that tried would raise InvalidTransition
    fatal = SlotState(1, state=S.FATAL, pending=False)
    stopped, actions = slot.stop(fatal, has_proc=False)
    assert stopped.state is S.STOPPED and not actions


# ---- on_demand ----
NOTE = "on demand: waiting for a connection to web"


def test_a_resting_slot_that_never_ran_shows_stopped_and_is_not_started() -> None:
    fresh = slot.resting(SlotState(1), NOTE)
    assert (fresh.state, fresh.pending, fresh.message) == (S.STOPPED, False, NOTE)
    assert slot.wants_start(fresh, None, 0, "", False) == (fresh, False)
    assert slot.done(fresh, has_proc=False)


def test_a_resting_slot_whose_worker_exited_keeps_its_exit() -> None:
    exited = replace(running(), state=S.EXITED, last_exit=crash(T0))
    rested = slot.resting(exited, NOTE)
    assert (rested.state, rested.last_exit, rested.message) == (S.EXITED, crash(T0), NOTE)


def test_a_woken_slot_is_started_by_the_next_reconcile() -> None:
    woken, actions = slot.woken(slot.resting(SlotState(1), NOTE), T0, POLICY)
    assert (woken.pending, woken.message, actions) == (True, "", [])
    assert slot.wants_start(woken, None, 0, "", False)[1]
    assert not slot.done(woken, has_proc=False)


def test_a_worker_that_exits_without_serving_is_held_back_by_the_flapping_rules() -> None:
    s, at, wakes = SlotState(1), T0, 0
    actions: list[slot.Action] = []
    while s.state is not S.BACKOFF:
        assert wakes <= FLAP.attempts, "woken again and again without backing off"
        s = slot.starting(slot.resting(s, NOTE), at, "v", FLAP)
        s = replace(s, state=S.EXITED, pending=False)  # it exited at once: at rest again
        assert slot.done(s, has_proc=False)
        s, actions = slot.woken(s, at + 0.05, POLICY)
        assert not any(isinstance(action, Respawn) for action in actions)
        at, wakes = at + 0.1, wakes + 1
    assert (s.pending, kinds(actions)) == (False, ["flapping"])
    assert s.cause is StartCause.NONE  # not a restart, whenever it starts
    assert not slot.done(s, has_proc=False)  # the watcher waits for the retry, awake


def test_a_slot_with_a_process_is_never_done() -> None:
    assert not slot.done(running(pending=False), has_proc=True)
