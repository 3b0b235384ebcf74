"""Capture of workers' stdout/stderr: timestamped lines to files and a ship buffer; tails.

Pipes are read non-blocking from the event loop (`add_reader`), so a worker never
blocks on a full pipe however fast it writes. When the agent re-executes itself, the
read ends stay open across the exec and `hand_over` gives the new image each pipe's
partial last line and the lines not yet shipped. Every read is split into lines (a partial
line waits for its newline, a line is capped at 64 KiB) stamped with the time it was
read. The lines go to two places: the watcher's rotating file (everything) and a
bounded shipping buffer for the controller, which drops its OLDEST lines when full and
counts them. A `logs` tail is read back from the files, rotated backups included, so it
reaches as far back as the files do. Files are opened, rotated and read with the care of
`log_files` (no symlinks, no one else's files); a file that cannot be used safely is
reported through `on_problem` and its lines still ship. A watcher's stream class
says how its file rotates (see log_files); StdoutStream and FancyStdoutStream also
print the lines on the agent's stdout (see console).

What reaches the shipping buffer is also capped in lines per second for the whole
agent (`ShipRate`): a worker printing as fast as it can must not flood the controller,
which serves every agent and every `logs -f`. Lines over the rate are dropped from
shipping and counted with the buffer's drops; the files still get every line. Batches
taken for shipping and tail replies stay well below the gRPC message cap.
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import heapq
import itertools
import os
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from stack.agent.console import Console, color_of
from stack.agent.log_files import RotatingFile, newest_lines
from stack.security.limits import MAX_MESSAGE_BYTES
from stack.spec.model import StreamSpec

MAX_TAIL_LINES = 10_000
"""A tail never returns more lines than this, whatever was asked."""
MAX_TAIL_BYTES = 32 * 1024 * 1024
"""Nor reads more than this many bytes of one stream's files."""
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES // 4
"""Text in one shipped batch or one tail reply at most (the newest lines are kept):
a quarter of the message cap leaves room for each line's fields and for growth."""


class Line(NamedTuple):
    at: float
    watcher: str
    wid: int
    stream: str
    text: str


def timestamp(at: float) -> str:
    """`2026-11-29T01:02:03.123Z`"""
    millis = int(at * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{millis:03d}Z"


_PREFIX = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z \[(\d+)\] ")


def prefix(at: float, wid: int) -> bytes:
    """What starts every line in a file: `2026-11-29T01:02:03.123Z [3] `."""
    return f"{timestamp(at)} [{wid}] ".encode()


def parse_line(raw: bytes, watcher: str, stream: str) -> Line | None:
    """A line of a file back into a Line (`at` to the millisecond); None if not ours."""
    match = _PREFIX.match(raw)
    if match is None:
        return None
    seconds, millis, wid = match.groups()
    try:
        at = _epoch(seconds) + int(millis) / 1000
    except ValueError:  # digits in the right places, but no date (month 13, ...)
        return None
    return Line(at, watcher, int(wid), stream, raw[match.end() :].decode("utf-8", "replace"))


def _newest_within(lines: list[Line], max_bytes: int) -> list[Line]:
    """The newest of `lines` whose text adds up to at most `max_bytes` (at least one)."""
    size = 0
    for index in range(len(lines) - 1, -1, -1):
        size += len(lines[index].text)
        if size > max_bytes and index < len(lines) - 1:
            return lines[index + 1 :]
    return lines


@functools.lru_cache(maxsize=1024)
def _epoch(seconds: bytes) -> int:
    """`2026-11-29T01:02:03` (UTC) in seconds since the epoch; lines share their second."""
    return calendar.timegm(time.strptime(seconds.decode(), "%Y-%m-%dT%H:%M:%S"))


class LineSplitter:
    """Bytes in, complete lines out; keeps the partial last line; caps line length."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        data = self._partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            lines: list[bytes] = []
            rest = data
        else:
            lines = data[:cut].split(b"\n")
            rest = data[cut + 1 :]
        while len(rest) >= self.max_line:
            lines.append(rest[: self.max_line])
            rest = rest[self.max_line :]
        if any(len(line) > self.max_line for line in lines):
            lines = [piece for line in lines for piece in self._cut(line)]
        self._partial = rest
        return lines

    def _cut(self, line: bytes) -> list[bytes]:
        if len(line) <= self.max_line:
            return [line]
        return [line[i : i + self.max_line] for i in range(0, len(line), self.max_line)]

    def rest(self) -> list[bytes]:
        rest, self._partial = self._partial, b""
        return [rest] if rest else []


class ShipRate:
    """A token bucket: at most `per_second` lines on average, bursts of one second's worth.

    `per_second` 0 means no cap. Time is passed in (a monotonic clock), so tests
    can step it.
    """

    def __init__(self, per_second: int, now: float) -> None:
        self.per_second = per_second
        self._tokens = float(per_second)
        self._at = now

    def allow(self, count: int, now: float) -> int:
        """How many of `count` lines may ship at `now` (the rest are over the rate)."""
        if self.per_second <= 0:
            return count
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(float(self.per_second), self._tokens + elapsed * self.per_second)
        allowed = min(count, int(self._tokens))
        self._tokens -= allowed
        return allowed


class LogHub:
    """Every watcher's output: its files and the shipping buffer of the whole agent."""

    def __init__(
        self,
        logs_dir: Path,
        ship_lines: int,
        max_line: int,
        ship_rate: int = 0,
        clock: Callable[[], float] = time.monotonic,
        file_mode: int = 0o600,
        file_group: int | None = None,
        console: Console | None = None,
    ) -> None:
        self.logs_dir = logs_dir
        self.console = console or Console()
        """Where StdoutStream lines are printed (the agent's stdout)."""
        self.max_line = max_line
        self.file_mode = file_mode
        self.file_group = file_group
        self.on_problem: Callable[[str, str], None] | None = None
        """Called with (watcher, one line) when one of its files stops being written."""
        self._files: dict[tuple[str, str], tuple[StreamSpec, int | None, RotatingFile]] = {}
        self._reported: dict[tuple[str, str], str] = {}
        self._ship: deque[Line] = deque(maxlen=ship_lines)
        self._rate = ShipRate(ship_rate, clock())
        self._clock = clock
        self._dropped = 0
        self._readers: dict[int, tuple[LineSplitter, str, int, str]] = {}
        self.on_lines: list[asyncio.Event] = []
        """Set when there are new lines to ship."""
        self.on_output: list[asyncio.Event] = []
        """Set when lines were written or dropped: the files want a flush (see flush)."""

    # ---- configuration ----
    def configure(
        self, watcher: str, stdout: StreamSpec, stderr: StreamSpec, owner: int | None = None
    ) -> None:
        """(Re)open the files of a watcher when their settings changed, or when a file
        could not be used last time. `owner` is the uid its workers run as: a file of
        theirs may be appended to (the agent's own always may)."""
        for stream, spec in (("out", stdout), ("err", stderr)):
            key = (watcher, stream)
            current = self._files.get(key)
            if current is not None:
                if current[:2] == (spec, owner) and not current[2].problem:
                    continue
                current[2].close()
            path = Path(spec.filename) if spec.filename else self._default_path(watcher, stream)
            by_size = spec.class_ not in ("WatchedFileStream", "TimedRotatingFileStream")
            rotating = RotatingFile(
                path,
                spec.max_bytes if by_size else 0,
                spec.backup_count,
                owners=() if owner is None else (owner,),
                mode=self.file_mode,
                group=self.file_group,
                report=functools.partial(self._report, key),
                rotate_when=spec.rotate_when if spec.class_ == "TimedRotatingFileStream" else "",
                rotate_interval=spec.rotate_interval,
                watched=spec.class_ == "WatchedFileStream",
            )
            if not rotating.problem:
                self._reported.pop(key, None)
            self._files[key] = (spec, owner, rotating)

    def _report(self, key: tuple[str, str], problem: str) -> None:
        """Tell about a file that is not written, once per distinct reason."""
        if self._reported.get(key) != problem and self.on_problem is not None:
            self.on_problem(key[0], f"{problem}; its output still ships")
        self._reported[key] = problem

    def forget(self, watcher: str) -> None:
        for stream in ("out", "err"):
            entry = self._files.pop((watcher, stream), None)
            self._reported.pop((watcher, stream), None)
            if entry is not None:
                entry[2].close()

    def _default_path(self, watcher: str, stream: str) -> Path:
        return self.logs_dir / f"{watcher}.{stream}.log"

    # ---- capture ----
    def attach(self, watcher: str, wid: int, stream: str, fd: int, partial: bytes = b"") -> None:
        """Read pipe `fd` from the event loop until EOF, then close it; `partial` is a
        line begun before an exec of the agent."""
        os.set_blocking(fd, False)
        splitter = LineSplitter(self.max_line)
        splitter.feed(partial)
        self._readers[fd] = (splitter, watcher, wid, stream)
        asyncio.get_running_loop().add_reader(fd, self._readable, fd)

    def _readable(self, fd: int) -> None:
        splitter, watcher, wid, stream = self._readers[fd]
        try:
            data = os.read(fd, 256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._emit(watcher, wid, stream, splitter.feed(data))
            return
        self._emit(watcher, wid, stream, splitter.rest())
        asyncio.get_running_loop().remove_reader(fd)
        del self._readers[fd]
        os.close(fd)

    def detach_all(self) -> None:
        loop = asyncio.get_running_loop()
        for fd, (splitter, watcher, wid, stream) in list(self._readers.items()):
            loop.remove_reader(fd)
            self._emit(watcher, wid, stream, splitter.rest())
            os.close(fd)
        self._readers.clear()

    def hand_over(self) -> tuple[dict[int, bytes], list[Line], int]:
        """Stop reading without closing the pipes, for an exec of the agent: the partial
        line of each pipe fd, the lines not shipped yet and the count of dropped ones."""
        loop = asyncio.get_running_loop()
        partials = {}
        for fd, (splitter, *_) in self._readers.items():
            loop.remove_reader(fd)
            partials[fd] = b"".join(splitter.rest())
        self._readers.clear()
        self.flush()
        lines = list(self._ship)
        self._ship.clear()
        return partials, lines, self.take_dropped()

    def take_over(self, lines: list[Line], dropped: int) -> None:
        """The lines a previous image of the agent had not shipped yet (see hand_over)."""
        self._ship.extend(lines)
        self._dropped += dropped
        for event in self.on_output:
            event.set()
        if lines:
            for event in self.on_lines:
                event.set()

    def _emit(self, watcher: str, wid: int, stream: str, raw: list[bytes]) -> None:
        if not raw:
            return
        for event in self.on_output:
            event.set()
        at = time.time()
        entry = self._files.get((watcher, stream))
        if entry is not None:
            start = prefix(at, wid)
            entry[2].write_lines([start + line + b"\n" for line in raw], at)
            kind = entry[0].class_
            if kind == "StdoutStream":
                self.console.print(watcher, wid, raw)
            elif kind == "FancyStdoutStream":
                self.console.print(watcher, wid, raw, color_of(watcher, entry[0].color))
        allowed = self._rate.allow(len(raw), self._clock())
        self._dropped += len(raw) - allowed
        if not allowed:
            return
        lines = [
            Line(at, watcher, wid, stream, r.decode("utf-8", "replace")) for r in raw[:allowed]
        ]
        ship = self._ship
        overflow = len(ship) + len(lines) - (ship.maxlen or 0)
        if overflow > 0:
            self._dropped += overflow
        ship.extend(lines)
        for event in self.on_lines:
            event.set()

    # ---- consumers ----
    def tail(self, watcher: str, stream: str, count: int) -> list[Line]:
        """The last `count` lines from the files (both streams merged by time when stream
        is ""), oldest first. `count` is capped at MAX_TAIL_LINES; 0 or less means that cap.
        Any other stream than "out", "err" or "" has no lines (and names no file).
        """
        count = MAX_TAIL_LINES if count <= 0 else min(count, MAX_TAIL_LINES)
        streams = (stream,) if stream else ("out", "err")
        if not set(streams) <= {"out", "err"}:
            return []
        per_stream = [self._tail_stream(watcher, name, count) for name in streams]
        merged = list(heapq.merge(*per_stream, key=lambda line: line.at))
        return _newest_within(merged[-count:], MAX_REPLY_BYTES)

    def _tail_stream(self, watcher: str, stream: str, count: int) -> list[Line]:
        entry = self._files.get((watcher, stream))
        if entry is None:  # not running here any more: its files at the default place
            default = self._default_path(watcher, stream)
            raw_lines = newest_lines(default, None, count, MAX_TAIL_BYTES)
        else:
            spec, owner, rotating = entry
            rotating.flush()  # the write buffer too, so the tail ends at the newest line
            raw_lines = newest_lines(
                rotating.path,
                max(spec.backup_count, 0),
                count,
                MAX_TAIL_BYTES,
                () if owner is None else (owner,),
            )
        lines = (parse_line(raw, watcher, stream) for raw in reversed(raw_lines))
        return [line for line in lines if line is not None]

    def take_shipping(self, limit: int, max_bytes: int = MAX_REPLY_BYTES) -> list[Line]:
        """Up to `limit` lines, oldest first, with at most `max_bytes` of text (at least
        one line), so that a batch fits in one gRPC message."""
        ship = self._ship
        taken: list[Line] = []
        size = 0
        for _ in itertools.repeat(None, min(limit, len(ship))):
            size += len(ship[0].text)
            if taken and size > max_bytes:
                break
            taken.append(ship.popleft())
        return taken

    def pending_shipping(self) -> int:
        return len(self._ship)

    def take_dropped(self) -> int:
        dropped, self._dropped = self._dropped, 0
        return dropped

    def flush(self) -> None:
        for _, _, rotating in self._files.values():
            rotating.flush()

    def close(self) -> None:
        for _, _, rotating in self._files.values():
            rotating.close()
        self._files.clear()
        self.console.close()
