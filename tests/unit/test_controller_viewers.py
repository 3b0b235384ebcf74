"""Viewers' bounds as plain bookkeeping: follow slots per viewer, tail sizes."""

from __future__ import annotations

import pytest

from stack.controller.errors import InvalidArgument, ResourceExhausted
from stack.controller.viewers import FollowSlots, ViewerLimits, check_tail, newest_within
from stack.spec.reports import LogLine


def test_each_viewer_holds_its_own_slots_up_to_the_limit() -> None:
    slots = FollowSlots(limit=2)
    slots.take("viewer 'vic'")
    slots.take("viewer 'vic'")
    with pytest.raises(ResourceExhausted, match="too many follow streams for viewer 'vic'"):
        slots.take("viewer 'vic'")
    slots.take("admin 'ann'")  # another certificate is not held back
    slots.give_back("viewer 'vic'")
    slots.take("viewer 'vic'")
    assert (slots.held("viewer 'vic'"), slots.held("admin 'ann'")) == (2, 1)
    slots.give_back("admin 'ann'")
    assert slots.held("admin 'ann'") == 0


@pytest.mark.parametrize("lines", [-1, 10_001])
def test_a_tail_beyond_the_limit_is_refused(lines: int) -> None:
    with pytest.raises(InvalidArgument, match=f"between 0 and 10000, got {lines}"):
        check_tail(lines, ViewerLimits())
    check_tail(10_000, ViewerLimits())


def test_a_tail_keeps_its_newest_lines_within_its_bytes() -> None:
    lines = [LogLine(0.0, "h", "w", 1, "out", str(n) * 10) for n in range(5)]
    each = lines[0].weight
    assert [line.text[0] for line in newest_within(lines, 2 * each + 1)] == ["3", "4"]
    assert list(newest_within(lines, 1000)) == lines
    assert list(newest_within(lines, 5)) == []
