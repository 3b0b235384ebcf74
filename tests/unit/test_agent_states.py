"""The process state table: what may follow what (stack.agent.states is pure)."""

from __future__ import annotations

import pytest

from stack.agent.states import ALLOWED, InvalidTransition, ProcessState, transition
from stack.v1 import types_pb2

S = ProcessState


def test_states_have_the_wire_numbers() -> None:
    for state in ProcessState:
        assert types_pb2.ProcessState.Value(f"PROCESS_STATE_{state.name}") == state.value


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.UNSPECIFIED, S.RUNNING),
        (S.RUNNING, S.EXITED),
        (S.EXITED, S.RUNNING),
        (S.RUNNING, S.STOPPING),
        (S.STOPPING, S.STOPPED),
        (S.EXITED, S.BACKOFF),
        (S.BACKOFF, S.RUNNING),
        (S.BACKOFF, S.FATAL),
        (S.FATAL, S.RUNNING),
    ],
)
def test_allowed_transitions_pass(old: ProcessState, new: ProcessState) -> None:
    assert transition(old, new) is new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.STOPPED, S.STOPPING),
        (S.FATAL, S.BACKOFF),
        (S.STARTING, S.UNSPECIFIED),
        (S.RUNNING, S.UNSPECIFIED),
        (S.EXITED, S.STOPPING),
    ],
)
def test_forbidden_transitions_raise(old: ProcessState, new: ProcessState) -> None:
    with pytest.raises(InvalidTransition, match=f"{old.name} -> {new.name}"):
        transition(old, new)


def test_every_state_has_a_row_and_nothing_returns_to_unspecified() -> None:
    assert set(ALLOWED) == set(ProcessState)
    assert all(S.UNSPECIFIED not in targets for targets in ALLOWED.values())
