"""When a TimedRotatingFileStream's file is rotated: pure, with the time passed in.

Circus's timed stream rotates every `rotate_interval` seconds, minutes, hours or days
counted from when the file was begun, or at midnight, or at the midnight that starts a
weekday (`W0` Monday ... `W6` Sunday). Stack computes the same deadlines in UTC, the zone
of the timestamps on every line of the file, so a daily file holds the lines of one UTC
day. The file rotates at its first line at or after the deadline (a file nothing is
written to is not rotated just for the time), which is how the log files of the standard
library behave too.
"""

from __future__ import annotations

import time

DAY = 86_400.0
UNITS = {"S": 1.0, "M": 60.0, "H": 3_600.0, "D": DAY}
"""Seconds in one unit of `rotate_when` for the units counted from the file's start."""


def next_rotation(start: float, when: str, interval: int) -> float:
    """Unix time at which a file begun at unix time `start` is to be rotated.

    `when` is S, M, H, D (every `interval` of them after `start`), MIDNIGHT (the
    `interval`th UTC midnight after `start`) or W0-W6 (the midnight that starts that
    weekday, the first one after `start`, then every `interval` weeks).
    """
    when = when.upper()
    interval = max(1, interval)
    if when in UNITS:
        return start + interval * UNITS[when]
    today = start // DAY * DAY
    if when == "MIDNIGHT":
        return today + interval * DAY
    if len(when) == 2 and when[0] == "W" and when[1] in "0123456":
        weekday = time.gmtime(start).tm_wday  # Monday is 0, as W0
        days = (int(when[1]) - weekday) % 7 or 7
        return today + days * DAY + (interval - 1) * 7 * DAY
    raise ValueError(f"rotate_when must be S, M, H, D, MIDNIGHT or W0 to W6, got {when!r}")
