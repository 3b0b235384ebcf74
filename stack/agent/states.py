"""The explicit life cycle of one worker slot, with its allowed transitions written down.

A slot is one worker id of a watcher on this host. `status` must always be able to say
why a slot is where it is, so every state change goes through `transition`, which
refuses a move that the table below does not allow (a bug, not an operator error).
"""

from __future__ import annotations

from stack.spec.observed import ProcessState

__all__ = ["ALLOWED", "InvalidTransition", "ProcessState", "transition"]

S = ProcessState

ALLOWED: dict[ProcessState, frozenset[ProcessState]] = {
    # A new slot may start, be held back by flapping or be created stopped.
    S.UNSPECIFIED: frozenset({S.STARTING, S.RUNNING, S.EXITED, S.BACKOFF, S.FATAL, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.EXITED, S.STARTING, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.EXITED, S.STARTING, S.RUNNING}),
    S.STOPPING: frozenset({S.STOPPED, S.EXITED, S.BACKOFF, S.FATAL, S.STARTING, S.RUNNING}),
    S.EXITED: frozenset({S.STARTING, S.RUNNING, S.EXITED, S.BACKOFF, S.FATAL, S.STOPPED}),
    S.BACKOFF: frozenset({S.STARTING, S.RUNNING, S.EXITED, S.FATAL, S.STOPPED, S.BACKOFF}),
    S.FATAL: frozenset({S.STARTING, S.RUNNING, S.EXITED, S.STOPPED, S.FATAL}),
    S.STOPPED: frozenset({S.STARTING, S.RUNNING, S.EXITED, S.STOPPED, S.BACKOFF, S.FATAL}),
    # The controller's word for a host it cannot reach: never a slot's.
    S.UNKNOWN: frozenset(),
}
"""From each state, the states a slot may move to. RUNNING -> RUNNING is a replacement;
STARTING -> STOPPED a start stopped while its before_spawn hook ran, before any spawn.
Flapping is a slot's own: only a slot whose process is gone (EXITED, or STOPPING after
a failed health check) goes to BACKOFF or FATAL, never one that runs."""


class InvalidTransition(AssertionError):
    """A state change the table does not allow: a bug in the agent."""


def transition(old: ProcessState, new: ProcessState) -> ProcessState:
    """Return `new` if `old -> new` is allowed, else raise InvalidTransition."""
    if new not in ALLOWED[old]:
        raise InvalidTransition(f"process state {old.name} -> {new.name} is not allowed")
    return new
