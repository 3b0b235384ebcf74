"""The desired state and its transitions, as pure functions over frozen values.

Everything an operator can ask for (apply a stack, scale, start, stop, restart,
reload, reset, remove) is a function `state -> new state` here, or a domain
error. Nothing is stored or sent: the controller persists the new state, then
pushes Assignments. A transition that changes nothing returns the same state
object, so callers can skip the write. Every change bumps `generation`.

How a state is kept in the store is the store's business (store/schema.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from stack.controller.errors import InvalidArgument, unknown_watcher
from stack.controller.events import EventNote
from stack.controller.placement import WatcherDemand
from stack.controller.rollout import Rollout, Seen, advance, begin
from stack.spec.diff import Change, diff_stacks, needs_new_processes
from stack.spec.model import MAX_PROCESSES, SocketSpec, StackSpec, WatcherSpec, version_sockets
from stack.spec.version import WatcherVersion


@dataclass(frozen=True)
class DesiredWatcher:
    """One watcher as the operator wants it."""

    spec: WatcherSpec
    """The watcher's options (numprocesses is the desired count)."""
    active: bool = True
    """False when stopped by the user: its workers are placed but not running."""
    restart_token: int = 0
    """Bumped to restart every worker (restart, reload, a spec change)."""
    graceful: bool = False
    """With the last restart_token bump: start new workers before stopping old (reload)."""
    reset_token: int = 0
    """Bumped to clear flapping and fatal state (reset, start)."""
    rollout: Rollout | None = None
    """A rolling change in progress or halted (see rollout.py)."""

    def version(self, sockets: Mapping[str, SocketSpec]) -> WatcherVersion:
        """The version new processes run, given the stack's `sockets`."""
        return WatcherVersion(self.spec, self.restart_token, version_sockets(self.spec, sockets))

    def rolled_to(
        self,
        target: DesiredWatcher,
        wids: Collection[int],
        sockets: Mapping[str, SocketSpec],
        target_sockets: Mapping[str, SocketSpec],
    ) -> DesiredWatcher:
        """`target` (the same watcher changed, in a stack with `target_sockets`; this
        one runs with `sockets`), rolling placed `wids` over when it runs."""
        if not self.active:
            return replace(target, rollout=None)
        running, wanted = self.version(sockets), target.version(target_sockets)
        return replace(target, rollout=begin(running, self.rollout, wanted, wids))


def _no_watchers() -> Mapping[str, DesiredWatcher]:
    return MappingProxyType({})


def _no_sockets() -> Mapping[str, SocketSpec]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DesiredState:
    """The whole desired state of the stack."""

    watchers: Mapping[str, DesiredWatcher] = field(default_factory=_no_watchers)
    """Watchers by name."""
    sockets: Mapping[str, SocketSpec] = field(default_factory=_no_sockets)
    """Sockets by name."""
    generation: int = 0
    """Increases with every change; never goes back (persisted)."""
    drained: frozenset[str] = frozenset()
    """Hosts the operator drained: their processes move away, nothing new is placed there."""

    def stack(self) -> StackSpec:
        """The desired state as a stack file's model."""
        return StackSpec(
            watchers=MappingProxyType({n: w.spec for n, w in sorted(self.watchers.items())}),
            sockets=MappingProxyType(dict(sorted(self.sockets.items()))),
        )

    def version(self, name: str) -> WatcherVersion:
        """The version new processes of watcher `name` run (KeyError if unknown)."""
        return self.watchers[name].version(self.sockets)

    def watcher(self, name: str) -> DesiredWatcher:
        """The watcher called `name`, or NotFound."""
        try:
            return self.watchers[name]
        except KeyError:
            raise unknown_watcher(name) from None

    def demand(self) -> dict[str, WatcherDemand]:
        """watcher -> what placement must satisfy for it."""
        return {
            name: WatcherDemand(w.spec.numprocesses, w.spec.placement, w.spec.singleton)
            for name, w in self.watchers.items()
        }

    def counts(self) -> dict[str, int]:
        """watcher -> desired numprocesses (what placement needs)."""
        return {name: w.spec.numprocesses for name, w in self.watchers.items()}


def _sorted(sockets: Mapping[str, SocketSpec]) -> dict[str, SocketSpec]:
    return dict(sorted(sockets.items()))


def _with(
    state: DesiredState,
    watchers: Mapping[str, DesiredWatcher],
    sockets: Mapping[str, SocketSpec] | None = None,
) -> DesiredState:
    return DesiredState(
        watchers=MappingProxyType(dict(sorted(watchers.items()))),
        sockets=MappingProxyType(_sorted(state.sockets if sockets is None else sockets)),
        generation=state.generation + 1,
        drained=state.drained,
    )


def apply_stack(
    state: DesiredState,
    stack: StackSpec,
    placed: Mapping[str, Collection[int]] | None = None,
    *,
    max_processes: int | None = None,
    filename: str = "",
) -> tuple[DesiredState, list[Change]]:
    """Make `stack` the whole desired stack; return the new state and what changed.

    `max_processes` is the controller's cap on any watcher's numprocesses (a
    count above it is InvalidArgument naming `filename` and the key).

    Watchers whose processes must be replaced roll over to the new spec: the
    worker ids in `placed` (watcher -> ids placed now) keep their version until
    the rollout moves them (see rollout.py). A change of numprocesses (or other
    live options) alone only scales. New watchers start active when autostart is
    set. No change: the same state.
    """
    placed = placed or {}
    if max_processes is not None:
        _check_counts(stack, max_processes, filename)
    old_stack = state.stack()
    changes = diff_stacks(old_stack, stack)
    if not changes:
        return state, []
    watchers: dict[str, DesiredWatcher] = {}
    for name, spec in stack.watchers.items():
        old = state.watchers.get(name)
        if old is None:
            watchers[name] = DesiredWatcher(spec=spec, active=spec.autostart)
        elif needs_new_processes(old.spec, spec, old_stack=old_stack, new_stack=stack):
            # The new version is named by its spec and sockets alone (the restart
            # token stays), so that going back to a version still pinned restarts nothing.
            changed = replace(old, spec=spec, graceful=False)
            wids = placed.get(name, ())
            watchers[name] = old.rolled_to(changed, wids, state.sockets, stack.sockets)
        else:
            watchers[name] = replace(old, spec=spec)
    changes = [_replacing(change, state.watchers, watchers) for change in changes]
    return _with(state, watchers, dict(stack.sockets)), changes


def _replacing(
    change: Change, before: Mapping[str, DesiredWatcher], after: Mapping[str, DesiredWatcher]
) -> Change:
    """`change` as the plan shows it: a new version replaces workers only when some
    running worker is rolled over to it; going back to the version a halted or
    unfinished rollout left running replaces none."""
    old, new = before.get(change.name), after.get(change.name)
    if not change.replaces or change.kind != "watcher" or old is None or new is None:
        return change
    if new.rollout is not None:
        return change
    note: tuple[str, ...] = ()
    if old.rollout is not None and old.active:
        note = ("its workers run this version already: none is replaced",)
    return replace(change, replaces=False, details=change.details + note)


def _check_counts(stack: StackSpec, max_processes: int, filename: str) -> None:
    """InvalidArgument for the first watcher of `stack` that asks for too many processes."""
    for name, spec in sorted(stack.watchers.items()):
        if spec.numprocesses > max_processes:
            where = f"{filename or '<stack>'}: watchers.{name}.numprocesses"
            raise InvalidArgument(
                f"{where}: must be <= {max_processes} (the controller's --max-processes), "
                f"got {spec.numprocesses}"
            )


def scale(
    state: DesiredState,
    name: str,
    count: int,
    relative: bool,
    max_processes: int | None = None,
) -> tuple[DesiredState, int]:
    """Set the desired numprocesses of `name` (absolute, or a delta); return (state, previous).

    The count may not exceed `max_processes` (the controller's cap; at most MAX_PROCESSES).
    """
    current = state.watcher(name)
    previous = current.spec.numprocesses
    target = previous + count if relative else count
    cap = MAX_PROCESSES if max_processes is None else min(max_processes, MAX_PROCESSES)
    top = 1 if current.spec.singleton else cap
    if not 0 <= target <= top:
        what = " for a singleton" if current.spec.singleton else ""
        raise InvalidArgument(
            f"scale {name}: count must be between 0 and {top}{what}, got {target}"
        )
    if target == previous:
        return state, previous
    spec = replace(current.spec, numprocesses=target)
    return _with(state, {**state.watchers, name: replace(current, spec=spec)}), previous


def select(state: DesiredState, names: Iterable[str], all_watchers: bool) -> tuple[str, ...]:
    """The watchers a Start/Stop/Restart/Reload/Reset request names, validated."""
    wanted = tuple(dict.fromkeys(names))
    if all_watchers:
        return tuple(sorted(state.watchers))
    if not wanted:
        raise InvalidArgument("name at least one watcher, or use all")
    for name in wanted:
        state.watcher(name)
    return wanted


def _update(
    state: DesiredState, names: tuple[str, ...], change: Callable[[DesiredWatcher], DesiredWatcher]
) -> DesiredState:
    if not names:
        return state
    watchers = dict(state.watchers)
    for name in names:
        watchers[name] = change(watchers[name])
    if all(watchers[name] == state.watchers[name] for name in names):
        return state
    return _with(state, watchers)


def start(state: DesiredState, names: tuple[str, ...]) -> DesiredState:
    """Make the watchers active; starting also clears flapping (reset_token + 1)."""
    return _update(state, names, lambda w: replace(w, active=True, reset_token=w.reset_token + 1))


def stop(state: DesiredState, names: tuple[str, ...]) -> DesiredState:
    """Stop the watchers' workers (they stay placed, not running)."""
    return _update(state, names, lambda w: replace(w, active=False))


def restart(
    state: DesiredState,
    names: tuple[str, ...],
    rolling: bool = False,
    placed: Mapping[str, Collection[int]] | None = None,
) -> DesiredState:
    """Replace every worker: stop the old ones, then start new ones.

    `rolling`: in batches (see rollout.py), over the ids in `placed`.
    """
    placed = placed or {}

    def change(w: DesiredWatcher) -> DesiredWatcher:
        restarted = replace(
            w, active=True, restart_token=w.restart_token + 1, graceful=False, rollout=None
        )
        if not rolling:
            return restarted
        return w.rolled_to(restarted, placed.get(w.spec.name, ()), state.sockets, state.sockets)

    return _update(state, names, change)


def reload(state: DesiredState, names: tuple[str, ...]) -> DesiredState:
    """Replace every worker gracefully: new ones up before the old ones stop."""
    return _update(
        state,
        names,
        lambda w: replace(w, restart_token=w.restart_token + 1, graceful=True, rollout=None),
    )


def set_rollout(state: DesiredState, name: str, rollout: Rollout | None) -> DesiredState:
    """The next step of a watcher's rollout (see rollout.advance)."""
    watcher = state.watchers.get(name)
    if watcher is None or watcher.rollout == rollout:
        return state
    return _with(state, {**state.watchers, name: replace(watcher, rollout=rollout)})


def step_rollout(
    state: DesiredState, name: str, seen: Mapping[int, Seen], wanted: Collection[int]
) -> tuple[DesiredState, str]:
    """The next step of `name`'s rollout, given what agents report of its batch (`seen`)
    and the ids placed now (`wanted`): (the new state, rollout.advance's outcome). A
    removed, finished or stopped watcher (stopping pauses a rollout) takes no step."""
    watcher = state.watchers.get(name)
    if watcher is None or watcher.rollout is None or not watcher.active:
        return state, ""
    rollout, outcome = advance(watcher.rollout, state.version(name), seen, wanted)
    return set_rollout(state, name, rollout), outcome


def rollouts_begun(old: DesiredState, new: DesiredState) -> list[EventNote]:
    """An event for each rollout the change from `old` to `new` began."""
    notes = []
    for name, watcher in new.watchers.items():
        before = old.watchers.get(name)
        rollout = watcher.rollout
        if (
            rollout is not None
            and before is not None
            and old.version(name).label != new.version(name).label
        ):
            notes.append(
                EventNote(
                    "rollout_started",
                    f"rolling {name} over to a new version: {rollout.total} processes, "
                    f"{watcher.spec.update.max_parallel} at a time",
                    name,
                )
            )
    return notes


def reset(state: DesiredState, names: tuple[str, ...]) -> DesiredState:
    """Clear flapping and fatal state."""
    return _update(state, names, lambda w: replace(w, reset_token=w.reset_token + 1))


def remove(state: DesiredState, name: str) -> DesiredState:
    """Delete a watcher from the desired state (its workers stop)."""
    state.watcher(name)
    return _with(state, {n: w for n, w in state.watchers.items() if n != name})


def drain(state: DesiredState, host_id: str) -> DesiredState:
    """Move every process away from `host_id` and place nothing new there."""
    if host_id in state.drained:
        return state
    return replace(state, drained=state.drained | {host_id}, generation=state.generation + 1)


def undrain(state: DesiredState, host_id: str) -> DesiredState:
    """Let `host_id` take processes again (none move back on their own)."""
    if host_id not in state.drained:
        return state
    return replace(state, drained=state.drained - {host_id}, generation=state.generation + 1)
