"""Domain values as plain JSON data (stack.spec.plain), as the agent keeps them: its
Assignment and its unshipped events come back equal, enums included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from stack.spec.assignment import Assignment
from stack.spec.plain import PlainError, from_plain, to_plain
from stack.spec.reports import Event, Severity
from tests.unit.test_wire_agent import assignments, events


def _through_json(kind: type[Any], value: Any) -> Any:
    return from_plain(kind, json.loads(json.dumps(to_plain(value))))


@given(assignments())
def test_an_assignment_comes_back_equal_through_json(assignment: Assignment) -> None:
    assert _through_json(Assignment, assignment) == assignment


@given(events)
def test_an_event_comes_back_equal_through_json_with_its_severity(event: Event) -> None:
    again = _through_json(Event, event)
    assert again == event and type(again.severity) is Severity


def test_an_enum_is_kept_as_its_value() -> None:
    assert to_plain(Event(1.0, "spawn", "pid 1", severity=Severity.ERROR))["severity"] == 3


@pytest.mark.parametrize("value", [9, "3", True, None])
def test_a_value_no_member_of_the_enum_has_is_refused_by_name(value: Any) -> None:
    with pytest.raises(PlainError, match=r"Event\.severity: expected a Severity"):
        from_plain(Event, {"at": 1.0, "kind": "k", "message": "m", "severity": value})
