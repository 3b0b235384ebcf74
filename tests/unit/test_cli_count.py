"""The count argument of `stackctl scale`: N sets, +N / -N change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.cli.count import MAX_COUNT, Count, parse_count


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6", Count(6, relative=False)),
        ("0", Count(0, relative=False)),
        ("+2", Count(2, relative=True)),
        ("-2", Count(-2, relative=True)),
        ("+0", Count(0, relative=True)),
        ("007", Count(7, relative=False)),
    ],
)
def test_count_parses_absolute_and_relative_forms(text: str, expected: Count) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "1.5", "--2", "+-2", " 3", "3 ", "2+", "+", "-", "1e3"]
)
def test_count_refuses_anything_but_n_plus_n_minus_n(text: str) -> None:
    with pytest.raises(ValueError, match="expected N, \\+N or -N"):
        parse_count(text)


def test_count_refuses_a_number_too_large_for_the_wire() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_count(str(MAX_COUNT + 1))
    assert parse_count(str(MAX_COUNT)).value == MAX_COUNT


@given(st.integers(min_value=0, max_value=MAX_COUNT))
def test_count_round_trips_every_number_in_each_form(value: int) -> None:
    assert parse_count(str(value)) == Count(value, relative=False)
    assert parse_count(f"+{value}") == Count(value, relative=True)
    assert parse_count(f"-{value}") == Count(-value, relative=True)
