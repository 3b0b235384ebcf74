"""The rules of one worker slot, as pure functions: (state, what happened, now) -> (state, actions).

A slot is one worker id of a watcher on this host. Its `SlotState` is what `status`
shows and what a re-executed agent takes over: the process state (states.py), restart
counts, the last exit, the health found by its checks, its flapping bookkeeping
(flapping.py) and whether it waits to be started (`pending`).

Each function here takes that state, one thing that happened (a tick of time, an exit,
a spawn that failed, a failed health check, a stop that ended) and the time, and
returns the new state and what to do: a `Report` (an event) to record, `Retire` the slot's
process, `Respawn` it now, `Wake` the engine. Nothing here reads a clock, spawns,
signals or logs; the slot's runner (runner.py) does what the actions say, and the
watcher (watcher.py) decides which slot starts when. So every timing rule (warm-up,
max_age, flapping backoff, probation) is tested with a table and a fake clock.

The process a slot runs is seen through `ProcView`: its pid, the process generation it
was started for, and its deadlines (warm-up, max_age) that the runner's hooks set.

A slot counts the processes it starts after its first by why the one before went:
`restarts` after a failure (an exit nobody asked for, a failed health check, a spawn
error; a retry after flapping too), `replacements` after a replacement on purpose (a
restart, a reload, a change of the watcher, rolling or not, max_age). A start after a
stop the user asked for is neither. `cause` keeps what the next start counts as.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Protocol

from stack.agent import flapping, health
from stack.agent.flapping import Decision, FlapPhase, FlapState
from stack.agent.health import HealthState
from stack.agent.states import ProcessState, transition
from stack.spec.model import FlappingSpec
from stack.spec.observed import ExitReason, Health, LastExit
from stack.spec.reports import Severity

INFO, WARNING, ERROR = Severity.INFO, Severity.WARNING, Severity.ERROR
AWAY = "exited while the agent was down"
_AFTER_UNHEALTHY = (
    ProcessState.STOPPING, ProcessState.EXITED, ProcessState.BACKOFF, ProcessState.FATAL,
)  # fmt: skip


class StartCause(enum.Enum):
    """Why a slot's next process is started, which says what it counts as."""

    NONE = ""
    """The first, or one after a stop the user asked for: counted as neither."""
    FAILURE = "failure"
    """The previous one failed: a restart."""
    REPLACEMENT = "replacement"
    """The previous one is replaced on purpose: a replacement."""


@dataclass(frozen=True)
class SlotState:
    """One worker slot as status shows it, beyond its running process."""

    wid: int
    state: ProcessState = ProcessState.UNSPECIFIED
    restarts: int = 0
    """Processes started after a failure of the one before (status's RESTARTS)."""
    replacements: int = 0
    """Processes started to replace the one before on purpose (status's REPLACED)."""
    cause: StartCause = StartCause.NONE
    """What the next process started in this slot counts as."""
    spawned: int = 0
    last_exit: LastExit | None = None
    message: str = ""
    pending: bool = True
    """Should be started by the next reconcile (new, restarted, retried, reset)."""
    health: HealthState = field(default_factory=HealthState)
    """What the health checks of the current process found (when it has a check)."""
    version: str = ""
    """Version.label of the last process started (or tried) in this slot."""
    blocked: str = ""
    """Why the version this slot must run cannot start here (a socket it cannot bind):
    its process, of another version, is kept meanwhile."""
    flap: FlapState = field(default_factory=FlapState)
    """The slot's flapping bookkeeping (see flapping.py)."""

    def moved(self, new: ProcessState) -> SlotState:
        """This state in process state `new`, if the table allows the move (states.py)."""
        return replace(self, state=transition(self.state, new))


class ProcView(Protocol):
    """What the rules read of a slot's process (process.Proc is one)."""

    @property
    def pid(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def ready_at(self) -> float: ...
    @property
    def deadline(self) -> float: ...
    @property
    def settled_at(self) -> float: ...


@dataclass(frozen=True)
class Policy:
    """What the rules read of the watcher's desired state, for one slot."""

    flapping: FlappingSpec
    max_retry: int
    """Spawn errors in a row that make the slot fatal (-1: never)."""
    respawn: bool
    autorestart: str = ""
    """"unexpected": an exit whose code is in `exitcodes` is not restarted."""
    exitcodes: tuple[int, ...] = (0,)


# ---- actions ----
@dataclass(frozen=True)
class Report:
    """Record this event about the slot."""

    kind: str
    message: str
    severity: Severity


@dataclass(frozen=True)
class Retire:
    """Stop the process the slot had before this step, in a task; it left the slot."""

    reason: ExitReason
    note: str = ""


@dataclass(frozen=True)
class Respawn:
    """Start the slot's process again now (in this turn of the event loop)."""


@dataclass(frozen=True)
class Wake:
    """Wake the engine's reconcile loop (the slot will have something to do)."""


Action = Report | Retire | Respawn | Wake
Step = tuple[SlotState, list[Action]]


# ---- time passes ----
def retry(s: SlotState, now: float) -> Step:
    """Once its flapping wait is over, a slot is started again."""
    flap, decision = flapping.tick(s.flap, now)
    if decision is Decision.RETRY:
        event = Report("retry", "retrying after flapping", INFO)
        return replace(s, flap=flap, pending=True), [event]
    return s, []


def tend(
    s: SlotState, proc: ProcView, now: float, target: int, graceful: bool, unbound: str
) -> Step:
    """The slot's process at `now`: done with its warm-up? of the version the slot must
    run (`target`; `unbound` says why that version cannot start here, "" when it can)?
    past its max_age? A process of another version is stopped at once, or kept for
    the watcher to start its successor first (`graceful`), or kept while its
    successor cannot start."""
    if s.state is ProcessState.STARTING and now >= max(proc.ready_at, proc.settled_at):
        s = s.moved(ProcessState.RUNNING)
        if proc.settled_at:  # its start counts as successful only now (startsecs)
            s = replace(s, flap=flapping.spawned(s.flap))
    if proc.generation == target and s.blocked:
        s = replace(s, blocked="")  # pinned back to the version it runs
    if proc.generation != target:
        s = replace(s, pending=True, blocked=unbound)
        if unbound:
            return s, []
        s = replace(s, cause=StartCause.REPLACEMENT)
        if graceful:
            return s, []
        return s.moved(ProcessState.STOPPING), [Retire(ExitReason.RESTARTED)]
    if proc.deadline and now >= proc.deadline:
        s = replace(s, pending=True, cause=StartCause.REPLACEMENT).moved(ProcessState.STOPPING)
        return s, [Retire(ExitReason.MAX_AGE)]
    return s, []


def wants_start(
    s: SlotState, running: int | None, target: int, unbound: str, predecessor_stopping: bool
) -> tuple[SlotState, bool]:
    """Whether the slot is to be started now. `running`: the generation of its process
    (None: it has none); `predecessor_stopping`: a process of this wid still stops."""
    if not s.pending or s.flap.phase is not FlapPhase.ACTIVE:
        return s, False
    if running is not None and running == target:
        return replace(s, pending=False), False
    if running is not None:
        s = replace(s, blocked=unbound)
        return s, not unbound
    return s, not predecessor_stopping


def start_gate(gate: float, s: SlotState, proc: ProcView | None) -> float:
    """The time before which the watcher starts no other slot, once this slot started:
    the end of its warm-up while it warms up, else `gate` as it was (startsecs holds
    back no other slot)."""
    if proc is not None and s.state is ProcessState.STARTING and proc.ready_at:
        return proc.ready_at
    return gate


# ---- starting ----
def starting(s: SlotState, now: float, version: str, spec: FlappingSpec) -> SlotState:
    """A start of `version` is attempted at `now`: it counts for flapping, and as a
    restart or a replacement by its cause (before the spawn: a spawn error counts)."""
    restarts, replacements = s.restarts, s.replacements
    if s.cause is StartCause.FAILURE:
        restarts += 1
    elif s.cause is StartCause.REPLACEMENT:
        replacements += 1
    return replace(
        s,
        version=version,
        flap=flapping.started(s.flap, now, spec),
        restarts=restarts,
        replacements=replacements,
        cause=StartCause.NONE,
    )


def spawned(s: SlotState, proc: ProcView) -> Step:
    """`proc` started: STARTING until its warm-up and its startsecs are over, else
    RUNNING; its checks start over. With startsecs, the start counts as successful (it
    ends a run of failed starts) only once the process has stayed up that long."""
    s = replace(
        s,
        flap=s.flap if proc.settled_at else flapping.spawned(s.flap),
        spawned=s.spawned + 1,
        pending=False,
        message="",
        blocked="",
        health=HealthState(),
    )
    warming = proc.ready_at > 0 or proc.settled_at > 0
    s = s.moved(ProcessState.STARTING if warming else ProcessState.RUNNING)
    actions: list[Action] = [Wake()] if warming else []
    return s, [*actions, Report("spawn", f"pid {proc.pid}", INFO)]


def spawn_failed(
    s: SlotState, text: str, now: float, wall: float, probation: bool, policy: Policy
) -> Step:
    """A start failed at once (`text` says why). On probation (a rollout's new version)
    the slot stays down and the controller halts the rollout; else it counts toward
    the watcher's max_retry and the flapping rules: `Respawn` means try again now."""
    last = LastExit(0, 0, ExitReason.SPAWN_ERROR, wall, text)
    s = replace(s, last_exit=last, message=text).moved(ProcessState.EXITED)
    actions: list[Action] = [Report("spawn_error", text, ERROR)]
    if probation:
        return replace(s, pending=False), actions
    s, more = _start_not_made(s, text, now, policy, policy.respawn)
    return s, actions + more


def _start_not_made(s: SlotState, text: str, now: float, policy: Policy, again: bool) -> Step:
    """A start that failed (`text` says why) counts toward the watcher's max_retry in a
    row, which make the slot fatal; otherwise it is tried again (`again`) under the
    flapping rules, or left down."""
    s = replace(s, flap=flapping.spawn_failed(s.flap, text, policy.max_retry))
    if s.flap.phase is FlapPhase.FATAL:
        return give_up(s, now)
    if not again:
        return replace(s, pending=False), []
    return failed(s, now, policy)


# ---- failures ----
def failed(s: SlotState, now: float, policy: Policy) -> Step:
    """The slot's process died unplanned (it has none now): `Respawn` it at once, or
    the slot flaps and waits (BACKOFF) or gives up (FATAL) on its own. Its next start
    is a restart, whenever it comes."""
    spec = policy.flapping
    flap, decision = flapping.may_restart(s.flap, now, spec)
    s = replace(s, flap=flap, cause=StartCause.FAILURE)
    if decision is Decision.RESPAWN:
        return s, [Respawn()]
    if decision is Decision.BACKOFF:
        text = (
            f"started {spec.attempts + 1} times within {spec.window:g}s: "
            f"flapping, retry in {spec.retry_in:g}s"
        )
        s = replace(s, pending=False).moved(ProcessState.BACKOFF)
        return s, [Report("flapping", text, WARNING), Wake()]
    if decision is Decision.FATAL:
        return give_up(s, now)
    return s, []


def give_up(s: SlotState, now: float) -> Step:
    """The slot is fatal (flapped after max_retry retries, or could not start): it
    stays down until reset, start or a new version."""
    text = flapping.message(s.flap, now)
    return replace(s, pending=False).moved(ProcessState.FATAL), [Report("fatal", text, ERROR)]


def after_failure(s: SlotState, keep_down: bool, now: float, policy: Policy) -> Step:
    """After a failure: down for good when `keep_down` (no respawn, stopped, removed,
    or a rollout's new process on probation), else the flapping rules."""
    if keep_down:
        return replace(s, pending=False), []
    return failed(s, now, policy)


def exited(
    s: SlotState, pid: int, how: str, last: LastExit, keep_down: bool, now: float, policy: Policy
) -> Step:
    """The slot's process `pid` exited unplanned (`how`, for the event)."""
    s = replace(s, last_exit=last).moved(ProcessState.EXITED)
    event = Report("exit", f"pid {pid} {how}", WARNING)
    s, actions = after_failure(s, keep_down, now, policy)
    return s, [event, *actions]


def expected_exit(policy: Policy, code: int, sig: int, known: bool) -> bool:
    """Whether an exit is one that autorestart = "unexpected" leaves down: its status is
    known and its code is in `exitcodes`. A death by a signal is never expected (the
    stops the agent sends do not come here)."""
    return policy.autorestart == "unexpected" and known and not sig and code in policy.exitcodes


def exited_as_expected(s: SlotState, pid: int, how: str, last: LastExit) -> Step:
    """The slot's process exited with an expected code (autorestart = "unexpected"): it
    stays EXITED, not restarted, until a start, a reset or a new version."""
    s = replace(s, last_exit=last, pending=False, cause=StartCause.NONE, message="")
    s = s.moved(ProcessState.EXITED)
    return s, [Report("exit", f"pid {pid} {how}: expected, not restarted", INFO)]


def start_failed(
    s: SlotState,
    pid: int,
    how: str,
    last: LastExit,
    keep_down: bool,
    now: float,
    policy: Policy,
    startsecs: float,
) -> Step:
    """The slot's process exited before it had stayed up `startsecs`: a start that failed,
    whatever its exit code. It counts as a spawn error does (the watcher's max_retry of
    them in a row make the slot fatal) and by the flapping rules, and is tried again
    unless the slot is kept down (stopped, removed, or on probation)."""
    text = f"exited within startsecs ({startsecs:g}s): {how}"
    s = replace(s, last_exit=last, message=text).moved(ProcessState.EXITED)
    actions: list[Action] = [Report("exit", f"pid {pid} {text}", WARNING)]
    if keep_down:
        return replace(s, pending=False), actions
    s, more = _start_not_made(s, text, now, policy, True)
    return s, actions + more


def exited_away(
    s: SlotState, pid: int, how: str, last: LastExit, keep_down: bool, now: float, policy: Policy
) -> Step:
    """A worker of the slot exited while no agent ran: reported, then started again
    by the next reconcile like any crash (flapping rules included)."""
    s = replace(s, last_exit=last).moved(ProcessState.EXITED)
    event = Report("exit", f"pid {pid} {AWAY}: {how}", WARNING)
    s, actions = after_failure(s, keep_down, now, policy)
    if Respawn() in actions:
        return replace(s, pending=True), [event, Wake()]
    return s, [event, *actions]


def checked(s: SlotState, failure: str | None, retries: int) -> tuple[SlotState, bool]:
    """One health check's result (None: passed): the new state, and whether the process
    failed `retries` checks in a row and must be restarted."""
    found, restart = health.record(s.health, failure, retries)
    return (s if found == s.health else replace(s, health=found)), restart


def unhealthy(s: SlotState, pid: int, keep_down: bool, now: float, policy: Policy) -> Step:
    """The slot's process failed its check `retries` times: stopped, it counts as a
    crash, and the slot is started again once the stop is done."""
    why = s.health.message
    event = Report("unhealthy", f"pid {pid}: {why}", WARNING)
    s = s.moved(ProcessState.STOPPING)
    s, actions = after_failure(s, keep_down, now, policy)
    if Respawn() in actions:
        return replace(s, pending=True), [event, Retire(ExitReason.UNHEALTHY, why)]
    return s, [event, Retire(ExitReason.UNHEALTHY, why), *actions]


# ---- stopping ----
def stop(s: SlotState, has_proc: bool) -> Step:
    """Stop the slot on purpose (a stop, a removal, the agent's shutdown)."""
    actions: list[Action] = []
    if has_proc:
        s = s.moved(ProcessState.STOPPING)
        actions.append(Retire(ExitReason.STOPPED))
    elif s.state not in (ProcessState.STOPPING, ProcessState.STOPPED):
        s = s.moved(ProcessState.STOPPED)
    return replace(s, pending=False, cause=StartCause.NONE), actions


def stopped(s: SlotState, last: LastExit) -> SlotState:
    """A process of this wid was stopped while the slot has none: its exit is the
    slot's last, and a slot stopped on purpose is STOPPED now."""
    s = replace(s, last_exit=last)
    if s.state is ProcessState.STOPPING and not s.pending:
        s = s.moved(ProcessState.STOPPED)
    return s


# ---- desired state ----
def reset(s: SlotState) -> SlotState:
    """Flapping and fatal cleared: the slot is started again (reset, start)."""
    return replace(s, flap=flapping.reset(), pending=True, message="")


def renewed(s: SlotState) -> SlotState:
    """The slot must run another version: started anew, with a fresh flapping count;
    its process, if it had one not stopped on purpose, is replaced."""
    s = replace(s, pending=True, flap=flapping.reset())
    if s.spawned and s.state is not ProcessState.STOPPED:
        s = replace(s, cause=StartCause.REPLACEMENT)
    return s


# ---- on_demand ----
def done(s: SlotState, has_proc: bool) -> bool:
    """Whether the slot's worker is over with nothing to come: no process, none to start
    and no flapping retry or give-up to tell. An on_demand watcher whose slots are all
    done rests until its next connection."""
    return not has_proc and not s.pending and s.flap.phase is FlapPhase.ACTIVE


def resting(s: SlotState, note: str) -> SlotState:
    """The slot of an on_demand watcher waits for a connection, as `note` says: one
    that never ran (or was stopped) shows STOPPED, one whose worker exited keeps its
    exit; none is started by a reconcile until `woken`."""
    if s.state in (ProcessState.UNSPECIFIED, ProcessState.STOPPED):
        s = s.moved(ProcessState.STOPPED)
    return replace(s, pending=False, message=note)


def woken(s: SlotState, now: float, policy: Policy) -> Step:
    """A connection came for a resting slot: it is to be started. One whose worker
    exited on its own goes through the flapping rules first, so that a worker that
    exits without serving the connection is held back as a crash loop would be; its
    start counts as neither a restart nor a replacement."""
    s = replace(s, message="")
    if s.state is not ProcessState.EXITED:
        return replace(s, pending=True), []
    s, actions = failed(s, now, policy)
    s = replace(s, cause=StartCause.NONE)
    if any(isinstance(action, Respawn) for action in actions):
        return replace(s, pending=True), [a for a in actions if not isinstance(a, Respawn)]
    return s, actions


def adopted(s: SlotState) -> SlotState:
    """A process left running by the previous agent took the slot back."""
    s = replace(s, pending=False)
    if s.state is not ProcessState.RUNNING:
        s = s.moved(ProcessState.RUNNING)  # (a warmup_delay cut short by the restart)
    return s


def health_of(s: SlotState, has_proc: bool, has_check: bool) -> tuple[Health, str]:
    """(health, last failure) for status. Unhealthy stays shown while that process
    stops and until a new one starts (unless stopped on purpose)."""
    if not has_check:
        return Health.UNSPECIFIED, ""
    if not has_proc:
        failing = s.state in _AFTER_UNHEALTHY
        if not (failing and s.health.health is Health.UNHEALTHY):
            return Health.UNSPECIFIED, ""
    return s.health.health, s.health.message
