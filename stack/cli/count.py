"""The count argument of `stackctl scale`: `N` sets, `+N` and `-N` change by N.

A pure parser, kept apart so the command stays a thin edge and the rules are
tested by a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COUNT = re.compile(r"([+-]?)([0-9]+)")
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Count:
    """A parsed count."""

    value: int
    """The new number of processes, or the signed change when `relative`."""
    relative: bool
    """True for `+N` / `-N`."""


def parse_count(text: str) -> Count:
    """`6` -> Count(6, False), `+2` -> Count(2, True), `-2` -> Count(-2, True).

    Raises ValueError with a one-line message for anything else.
    """
    match = _COUNT.fullmatch(text)
    if match is None:
        raise ValueError(f"expected N, +N or -N, got {text!r}")
    sign, digits = match.groups()
    value = int(digits)
    if value > MAX_COUNT:
        raise ValueError(f"count too large: {text}")
    return Count(-value if sign == "-" else value, relative=bool(sign))
