"""Rolling changes: which worker ids still run an earlier version, batch by batch. Pure.

A change that needs new processes (a new cmd, env, a socket moved to another
address or added for use_sockets... or `restart --rolling`) does not replace
every worker at once. Every placed worker id is
first *pinned* to the version it runs; the controller then moves
`[update] max_parallel` of them at a time to the new version (the *batch*) and
waits until their new processes are healthy, or have stayed up `min_uptime`
without a health check, before the next batch. A batch whose new process exits,
cannot start (its agent could not bind one of its sockets, say) or fails its
health check halts the rollout: its worker ids are
pinned back to the version they ran, so the old processes keep serving, and
the reason stays in status until the next change.

Everything here is a function over frozen values; the controller feeds it what
the agents report (`Seen`) and persists the result with the desired state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from stack.controller.events import EventNote
from stack.spec.observed import ExitReason, Health, Observed, ProcessState
from stack.spec.reports import Severity
from stack.spec.version import WatcherVersion

_FAILED_STATES = (
    ProcessState.EXITED, ProcessState.STOPPED, ProcessState.BACKOFF, ProcessState.FATAL,
)  # fmt: skip


@dataclass(frozen=True)
class Seen:
    """What an agent reports of one worker id, as the rollout needs it."""

    host_id: str
    version: str
    state: ProcessState
    pid: int
    health: Health = Health.UNSPECIFIED
    running_for: float = 0.0
    """Seconds since the controller first saw this process running."""
    why: str = ""
    """The last exit or failed check, in words."""
    blocked: str = ""
    """Why the version it must run cannot start on its host (it keeps the one it runs)."""


@dataclass(frozen=True)
class Rollout:
    """A rolling change in progress (or halted)."""

    pinned: Mapping[int, WatcherVersion]
    """Worker ids still on an earlier version, not yet replaced."""
    batch: Mapping[int, WatcherVersion]
    """Worker ids being replaced now, with the version each ran before (to pin back)."""
    total: int
    """Worker ids to replace when the rollout began (for progress)."""
    halted: str = ""
    """Why the rollout stopped; empty while it runs."""

    def summary(self) -> str:
        """One line for status: progress, or why it halted."""
        if self.halted:
            return f"rollout halted: {self.halted}"
        done = max(self.total - len(self.pinned) - len(self.batch), 0)
        text = f"rolling out: {done} of {self.total} replaced"
        if self.batch:
            text += ", replacing " + ", ".join(str(wid) for wid in sorted(self.batch))
        return text


def _frozen(mapping: Mapping[int, WatcherVersion]) -> Mapping[int, WatcherVersion]:
    return MappingProxyType(dict(sorted(mapping.items())))


def begin(
    running: WatcherVersion,
    rollout: Rollout | None,
    target: WatcherVersion,
    wids: Iterable[int],
) -> Rollout | None:
    """Start rolling placed `wids` from what they run now to `target`.

    `running` is the watcher's current version and `rollout` the one in progress,
    if any: ids it still pins keep their pin. None when no id needs replacing.
    """
    earlier = dict(rollout.pinned) if rollout is not None else {}
    pinned = {}
    for wid in wids:
        version = earlier.get(wid, running)
        if version.label != target.label:
            pinned[wid] = version
    if not pinned:
        return None
    return Rollout(pinned=_frozen(pinned), batch=_frozen({}), total=len(pinned))


def failure(seen: Seen, target: str) -> str:
    """Why a batch process failed ("" if it has not): it runs `target` and is down or
    sick, or its agent cannot start `target` there (a socket it cannot bind) and keeps
    the process it runs."""
    if seen.version != target:
        return f"cannot start: {seen.blocked}" if seen.blocked else ""
    if seen.health == Health.UNHEALTHY:
        return f"is unhealthy: {seen.why}" if seen.why else "is unhealthy"
    if not seen.pid and seen.state in _FAILED_STATES:
        return f"failed: {seen.why}" if seen.why else "failed"
    return ""


def ready(seen: Seen, target: str, checked: bool, min_uptime: float) -> bool:
    """A batch process is done: healthy (with a check), or up `min_uptime` (without)."""
    if seen.version != target or not seen.pid or seen.state != ProcessState.RUNNING:
        return False
    if checked:
        return seen.health == Health.HEALTHY
    return seen.running_for >= min_uptime


def advance(
    rollout: Rollout,
    target: WatcherVersion,
    seen: Mapping[int, Seen],
    wanted: Collection[int],
) -> tuple[Rollout | None, str]:
    """The next step of `rollout`: (rollout or None when done, what happened).

    `seen` holds what agents report for each worker id, `wanted` the ids placed
    now (a scale-down drops the others). What happened is "" (nothing),
    "batch" (a new batch began), "done" or "halted".
    """
    pinned = {wid: v for wid, v in rollout.pinned.items() if wid in wanted}
    batch = {wid: v for wid, v in rollout.batch.items() if wid in wanted}
    if rollout.halted:
        return _rebuilt(rollout, pinned, batch), ""
    label = target.label
    for wid in sorted(batch):
        found = seen.get(wid)
        why = failure(found, label) if found is not None else ""
        if found is not None and why:
            kept = len(pinned) + len(batch)
            halted = (
                f"the new version of worker {wid} on {found.host_id} {why}; "
                f"{kept} processes keep the version they ran"
            )
            return Rollout(
                pinned=_frozen({**pinned, **batch}),
                batch=_frozen({}),
                total=rollout.total,
                halted=halted,
            ), "halted"
    update = target.spec.update
    checked = bool(target.spec.health.type)
    if batch and all(
        wid in seen and ready(seen[wid], label, checked, update.min_uptime) for wid in batch
    ):
        batch = {}
    what = ""
    if not batch and pinned:
        for wid in sorted(pinned)[: max(update.max_parallel, 1)]:
            batch[wid] = pinned.pop(wid)
        what = "batch"
    if not batch and not pinned:
        return None, "done"
    return _rebuilt(rollout, pinned, batch), what


def _rebuilt(
    rollout: Rollout, pinned: dict[int, WatcherVersion], batch: dict[int, WatcherVersion]
) -> Rollout:
    if pinned == dict(rollout.pinned) and batch == dict(rollout.batch):
        return rollout
    return replace(rollout, pinned=_frozen(pinned), batch=_frozen(batch))


def host_share(
    rollout: Rollout | None, wids: Collection[int]
) -> tuple[list[tuple[WatcherVersion, list[int]]], list[int]]:
    """For one host's `wids`: (each pinned version with its ids, the ids on probation)."""
    if rollout is None:
        return [], []
    groups: dict[str, tuple[WatcherVersion, list[int]]] = {}
    for wid in sorted(wids):
        version = rollout.pinned.get(wid)
        if version is not None:
            groups.setdefault(version.label, (version, []))[1].append(wid)
    probation = sorted(wid for wid in wids if wid in rollout.batch)
    return list(groups.values()), probation


# ---- what the controller's rollout driver reads and tells ----

RunningSince = Mapping[tuple[str, int, int], float]
"""(watcher, wid, pid) of a batch process -> when the controller first saw it running."""


def batch_seen(
    watcher: str,
    batch: Collection[int],
    reports: Iterable[Observed],
    running_since: RunningSince,
    now: float,
) -> tuple[dict[int, Seen], dict[tuple[str, int, int], float]]:
    """What the ready agents' `reports` say of `watcher`'s `batch` worker ids at `now`:
    (wid -> Seen, the processes first seen running now, to add to `running_since`)."""
    seen: dict[int, Seen] = {}
    first_seen: dict[tuple[str, int, int], float] = {}
    for observed in reports:
        for proc in observed.processes:
            if proc.watcher != watcher or proc.wid not in batch:
                continue
            running_for = 0.0
            if proc.pid and proc.state == ProcessState.RUNNING:
                key = (watcher, proc.wid, proc.pid)
                since = running_since.get(key)
                if since is None:
                    since = first_seen[key] = now
                running_for = now - since
            last = proc.last_exit
            why = proc.health_message or (last.message if last else "") or proc.message
            if not why and last is not None and not proc.pid:
                why = last.describe()
            health = proc.health
            if not proc.pid and last is not None and last.reason == ExitReason.UNHEALTHY:
                health = Health.UNHEALTHY  # stopped for failing its check
            seen[proc.wid] = Seen(
                host_id=proc.host_id,
                version=proc.version,
                state=proc.state,
                pid=proc.pid,
                health=health,
                running_for=running_for,
                why=why,
                blocked=proc.blocked,
            )
    return seen, first_seen


def outcome_note(name: str, outcome: str, rollout: Rollout | None) -> EventNote | None:
    """The event telling what one step (`advance`'s outcome) did to `name`'s rollout."""
    if outcome == "done":
        return EventNote("rollout_done", f"rollout of {name} done", name)
    if outcome == "halted" and rollout is not None:
        return EventNote(
            "rollout_halted",
            f"rollout of {name} halted: {rollout.halted}",
            name,
            severity=Severity.ERROR,
        )
    if outcome == "batch" and rollout is not None:
        return EventNote("rollout", f"{name}: {rollout.summary()}", name)
    return None
