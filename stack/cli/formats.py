"""What stackctl's text is made of: durations, sizes, exits, states and notes.

Pure functions from values (and the `now` they are relative to) to short strings:
`3m12s`, `12.3 MiB`, `exit 1 (crashed)`, `flapping, retry in 5s`, `running` for
PROCESS_STATE_RUNNING. The presentation modules (stack.cli.render with rich, and
stack.cli.status_view without it) show them; nothing here prints or imports rich.
"""

from __future__ import annotations

import math
import re
import signal
import time
from collections.abc import Iterable, Sequence

from google.protobuf.descriptor import EnumDescriptor

from stack.v1 import admin_pb2, types_pb2

PS = types_pb2.ProcessState
ER = types_pb2.ExitReason
WP = types_pb2.WatcherPhase
HL = types_pb2.Health


def format_seconds(seconds: float) -> str:
    """`10` for whole seconds, `0.5` otherwise: how deadlines appear in messages."""
    return f"{seconds:g}"


def format_duration(seconds: float) -> str:
    """A short human duration: `45s`, `3m12s`, `2h05m`, `3d04h`."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_bytes(count: int) -> str:
    """Binary units with one decimal: `512 B`, `12.3 MiB`."""
    if count < 1024:
        return f"{max(count, 0)} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024.0
        if value < 1024.0 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_elapsed(seconds: float) -> str:
    """`0.4s`, `12.3s`, then `3m12s`: how long something took."""
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)


def format_ago(at: float, now: float) -> str:
    """`3s ago` for a unix time in the past; `never` for 0."""
    if at <= 0:
        return "never"
    return f"{format_duration(now - at)} ago"


def format_timestamp(at: float) -> str:
    """`2026-11-29 01:02:03` in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def format_percent(value: float) -> str:
    return f"{value:.1f}%"


def aligned(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Rows of cells in columns two spaces apart, each column as wide as its widest
    cell, those marked in `right` aligned right; trailing spaces dropped."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if is_right else cell.ljust(width)
            for cell, width, is_right in zip(row, widths, right, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def signal_name(number: int) -> str:
    """`SIGKILL` for 9; `signal 99` for a number this system does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_REASON_TEXT = {
    ER.EXIT_REASON_CRASHED: "crashed",
    ER.EXIT_REASON_STOPPED: "stopped by user",
    ER.EXIT_REASON_FLAPPING: "flapping",
    ER.EXIT_REASON_SPAWN_ERROR: "spawn error",
    ER.EXIT_REASON_KILLED: "killed",
    ER.EXIT_REASON_MAX_AGE: "max age",
    ER.EXIT_REASON_RESTARTED: "restarted",
    ER.EXIT_REASON_UNHEALTHY: "unhealthy",
}


def has_last_exit(process: types_pb2.ProcessStatus) -> bool:
    if not process.HasField("last_exit"):
        return False
    last = process.last_exit
    return bool(last.reason or last.code or last.signal or last.at or last.message)


def format_last_exit(last: types_pb2.LastExit | None) -> str:
    """`exit 1 (crashed)`, `SIGTERM (stopped by user)`, `spawn error: ...`; empty for none."""
    if last is None or not (last.reason or last.code or last.signal or last.at or last.message):
        return ""
    if last.reason == ER.EXIT_REASON_SPAWN_ERROR:
        message = last.message.removeprefix("spawn error: ")
        return f"spawn error: {message}" if message else "spawn error"
    head = signal_name(last.signal) if last.signal else f"exit {last.code}"
    if last.code_unknown:
        head = "exit status unknown"
    reason = _REASON_TEXT.get(last.reason, "")
    if last.reason == ER.EXIT_REASON_CRASHED and last.message:
        reason = f"{reason}, {last.message}" if reason else last.message
    if last.reason == ER.EXIT_REASON_UNHEALTHY and last.message:
        reason = f"{reason}: {last.message}"
    return f"{head} ({reason})" if reason else head


def flapping_text(retry_at: float, now: float) -> str:
    """`flapping, retry in 5s` from the unix time of the next retry."""
    remaining = math.ceil(retry_at - now)
    if remaining <= 0:
        return "flapping, retrying now"
    return f"flapping, retry in {format_duration(remaining)}"


_COUNTDOWN = re.compile(r"flapping, retry(?:ing now| in [0-9a-z]+)")


def watcher_note(watcher: admin_pb2.WatcherStatus, now: float) -> str:
    """What is special about a watcher: flapping (with a fresh countdown, and which
    workers when not all of them), fatal, ..."""
    retry_at = float(watcher.retry_at)
    if watcher.phase == WP.WATCHER_PHASE_FLAPPING:
        if retry_at > 0:
            fresh = flapping_text(retry_at, now)
            text, found = _COUNTDOWN.subn(lambda _: fresh, watcher.message, count=1)
            return text if found else fresh
        return watcher.message or "flapping"
    if watcher.phase == WP.WATCHER_PHASE_FATAL:
        if watcher.message.startswith("fatal"):
            return watcher.message
        return f"fatal: {watcher.message}" if watcher.message else "fatal"
    return watcher.message


def process_note(
    process: types_pb2.ProcessStatus, watcher: admin_pb2.WatcherStatus | None, now: float
) -> str:
    """The process's own message, with a fresh flapping countdown when one is known;
    for a process kept because its new version cannot start here, why."""
    if process.blocked:
        return f"kept, its new version cannot start: {process.blocked}"
    retry_at = float(watcher.retry_at) if watcher is not None else 0.0
    flapping = process.state == PS.PROCESS_STATE_BACKOFF or process.message.startswith("flapping")
    if flapping and retry_at > 0:
        return flapping_text(retry_at, now)
    if not process.message and process.health == HL.HEALTH_STARTING:
        return process.health_message  # why it is not healthy yet
    return process.message


# -- enum values as words ------------------------------------------------------------


def _enum_prefix(descriptor: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


def enum_name(descriptor: EnumDescriptor | None, number: int) -> str:
    """`running` for PROCESS_STATE_RUNNING: lowercase, without the type's prefix."""
    if descriptor is None:
        return str(number)
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    name = value.name
    prefix = _enum_prefix(descriptor)
    if name.startswith(prefix):
        name = name[len(prefix) :]
    return name.lower()


def state_name(state: int) -> str:
    return enum_name(PS.DESCRIPTOR, state)


def phase_name(phase: int) -> str:
    return enum_name(WP.DESCRIPTOR, phase)


def health_name(health: int) -> str:
    """`healthy`, `starting`, `unhealthy`; empty for a process without a check."""
    return "" if health == HL.HEALTH_UNSPECIFIED else enum_name(HL.DESCRIPTOR, health)


def live_processes(
    processes: Iterable[types_pb2.ProcessStatus], host: str = ""
) -> list[types_pb2.ProcessStatus]:
    return [p for p in processes if p.pid and (not host or p.host_id == host)]
