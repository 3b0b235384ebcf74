"""Capture of workers' stdout/stderr: timestamped lines to files and a ship buffer; tails.

Pipes are read non-blocking from the event loop (an edge-triggered epoll of their own,
whose fd the loop watches), so a worker never blocks on a full pipe however fast it
writes. A pipe's bytes are taken out of it only once their lines are in their file: they
are peeked (pipe_peek), written, then taken out, with the write's intent recorded around
it (output_intents), so that a kill -9 of the agent at any instant neither loses nor
repeats a line in the files; a partial last line waits in the pipe for its newline, and
the edge trigger wakes the agent only when more comes. When the agent re-executes
itself, the read ends stay open across the exec (partial lines in them) and `hand_over`
gives the new image the lines not yet shipped. Every peek is split into lines (a line is
capped at 64 KiB, or what a full pipe holds) stamped with the time it was read. The
lines go to two places: the watcher's rotating file (everything) and a
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
import math
import os
import re
import select
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from stack.agent.console import Console, color_of
from stack.agent.log_files import RotatingFile, newest_lines
from stack.agent.output_intents import Intent, Intents, checksum
from stack.agent.pipe_peek import PIPE_BYTES, Peeker, discard, pipe_size
from stack.security.limits import MAX_MESSAGE_BYTES
from stack.spec.model import StreamSpec

MAX_TAIL_LINES = 10_000
"""A tail never returns more lines than this, whatever was asked."""
MAX_TAIL_BYTES = 32 * 1024 * 1024
"""Nor reads more than this many bytes of one stream's files."""
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES // 4
"""Text in one shipped batch or one tail reply at most (the newest lines are kept):
a quarter of the message cap leaves room for each line's fields and for growth."""
TURN_SECONDS = 0.02
"""About how long one read of a pipe holds the event loop: lines are written in batches
of TURN_LINES until this much time has passed, and the rest wait in the pipe for the
next turn. A peek of tiny lines to a file that rotates every few of them took seconds."""
TURN_LINES = 256


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


def complete_lines(
    data: bytes, cut: int, final: bool = False
) -> tuple[list[bytes], int, list[int] | None]:
    """The complete lines at the start of `data`, without their newlines: (lines, where
    the last one ends in `data`, where each ends or None when each is followed by its
    newline). A line longer than `cut` bytes is cut into pieces of `cut` bytes; a partial
    line at the end is left out unless it is `cut` bytes long, or `final` (the pipe's end).
    """
    last = data.rfind(b"\n")
    lines = data[:last].split(b"\n") if last >= 0 else []
    end = last + 1
    if len(data) - end < cut and (not lines or max(map(len, lines)) <= cut):
        if final and end < len(data):
            lines.append(data[end:])
            end = len(data)
        return lines, end, None
    lines, ends, pos = [], [], 0
    while pos < len(data):
        newline = data.find(b"\n", pos, pos + cut + 1)
        if newline >= 0:
            lines.append(data[pos:newline])
            pos = newline + 1
        elif len(data) - pos >= cut:
            lines.append(data[pos : pos + cut])
            pos += cut
        elif final:
            lines.append(data[pos:])
            pos = len(data)
        else:
            break
        ends.append(pos)
    return lines, pos, ends


class _Reader:
    """One pipe being read: whose it is, and the slot of its write intents."""

    __slots__ = (
        "carried", "cut", "ended", "fd", "pipe", "queued", "slot", "stream", "watcher", "wid",
    )  # fmt: skip

    def __init__(
        self, watcher: str, wid: int, stream: str, fd: int, carried: bytes, cut: int
    ) -> None:
        self.watcher = watcher
        self.wid = wid
        self.stream = stream
        self.fd = fd
        self.carried = carried
        """A partial line an older image of the agent handed over from its memory."""
        self.cut = cut
        """Longer lines are cut: the line cap, or less when a full pipe holds less."""
        self.pipe = (0, 0)
        self.slot = -1
        self.ended = False
        """No writer is left (its last partial line is a line)."""
        self.queued = False
        """A read of it waits for the next turn of the loop."""

    def last_words(self) -> list[bytes]:
        """What it carried, as the last line of a pipe that ends."""
        carried, self.carried = self.carried, b""
        return [carried] if carried else []


class _Take:
    """The journal of the lines of one peek of a pipe: before each write, the intent is
    recorded (see output_intents); after it, the lines' bytes are taken out of the pipe
    and the intent cleared."""

    __slots__ = (
        "buffer", "carried", "done", "end", "ends", "intents", "lines", "reader", "sums", "taken",
    )  # fmt: skip

    def __init__(
        self,
        intents: Intents,
        reader: _Reader,
        buffer: bytes,
        lines: list[bytes],
        end: int,
        ends: list[int] | None,
        carried: int,
    ) -> None:
        self.intents = intents
        self.reader = reader
        self.buffer = buffer
        """What was carried, then what the peek saw: `end` and `ends` index into it."""
        self.lines = lines
        self.end = end
        self.ends = ends
        self.sums: list[int] = []
        """Where each of the first lines ends, when `ends` is None (as far as asked)."""
        self.carried = carried
        self.done = 0
        """Lines written so far."""
        self.taken = 0
        """Bytes taken out of the pipe so far."""

    def _bytes(self, count: int) -> int:
        """How many bytes of the pipe the first `count` lines are."""
        if count <= 0:
            return 0
        if count >= len(self.lines):
            end = self.end
        elif self.ends is not None:
            end = self.ends[count - 1]
        else:  # each line is followed by its newline: summed on as far as asked
            sums, known = self.sums, len(self.sums)
            if known < count:
                lengths = (len(line) + 1 for line in self.lines[known:count])
                sums += itertools.accumulate(lengths, initial=sums[-1] if sums else 0)
                del sums[known]  # (the initial sum, already there)
            end = sums[count - 1]
        return max(0, end - self.carried)

    def before(self, lines: int, inode: tuple[int, int], size: int, size_after: int) -> None:
        upto = self._bytes(self.done + lines)
        start = self.carried + self.taken
        crc = checksum(memoryview(self.buffer)[start : self.carried + upto])
        intent = Intent(self.reader.pipe, inode, size, size_after, upto - self.taken, crc)
        self.intents.record(self.reader.slot, intent)

    def after(self, lines: int) -> None:
        self.done += lines
        self.rest(self.done)
        self.intents.clear(self.reader.slot)

    def rest(self, count: int = -1) -> None:
        """Take the bytes of the first `count` lines (all by default) out of the pipe:
        those not written to a file (it has none, or it cannot be used) too."""
        upto = self._bytes(len(self.lines) if count < 0 else count)
        discard(self.reader.fd, upto - self.taken)
        self.taken = upto


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
        self._readers: dict[int, _Reader] = {}
        self._poll: select.epoll | None = None
        """The pipes being read, edge-triggered; the event loop watches this one fd."""
        self._peeker: Peeker | None = None
        self._intents: Intents | None = None
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
    def keep_intents(self, folder: Path | None) -> None:
        """Record each write's intent in `folder` (the agent's data dir), where a new agent
        finds what a killed one was writing (see output_intents); read what it left."""
        if self._intents is not None:
            self._intents.close()
        self._intents = Intents(folder)

    def forget_left_intents(self) -> None:
        """Once every pipe that could be taken back was: what is left is of workers gone."""
        if self._intents is not None:
            self._intents.forget_left()

    def attach(self, watcher: str, wid: int, stream: str, fd: int, partial: bytes = b"") -> None:
        """Read pipe `fd` until EOF, then close it; `partial` is a line begun before an
        exec of an agent that kept it in memory (this one leaves it in the pipe)."""
        os.set_blocking(fd, False)
        if self._intents is None:
            self._intents = Intents(None)
        if self._peeker is None:
            self._peeker = Peeker(PIPE_BYTES if os.geteuid() == 0 else 0)
        cut = min(self.max_line, self._peeker.size, pipe_size(fd))
        reader = _Reader(watcher, wid, stream, fd, partial, cut)
        info = os.fstat(fd)
        reader.pipe = (info.st_dev, info.st_ino)
        left = self._intents.claim(reader.pipe)
        if left is not None:
            reader.slot = left[0]
            self._settle(reader, left[1])
        else:
            reader.slot = self._intents.take_slot()
        self._readers[fd] = reader
        if self._poll is None:
            self._poll = select.epoll()
            asyncio.get_running_loop().add_reader(self._poll.fileno(), self._ready)
        # Edge-triggered: a pipe that holds only a partial line wakes the agent again
        # when more comes, not while it waits. Already readable, it wakes it now.
        self._poll.register(fd, select.EPOLLIN | select.EPOLLET)

    def _settle(self, reader: _Reader, intent: Intent) -> None:
        """A killed agent was writing lines of this pipe: take them out if they are in
        their file (a file of this watcher), else leave them to be read again."""
        entry = self._files.get((reader.watcher, reader.stream))
        rotating = entry[2] if entry is not None else None
        written = rotating is None or rotating.was_written(
            intent.file, intent.size_before, intent.size_after
        )
        if written and intent.still_in(self._peek_head(reader.fd)):
            discard(reader.fd, intent.pipe_bytes)
        assert self._intents is not None
        self._intents.clear(reader.slot)

    def _peek_head(self, fd: int) -> bytes:
        """What the front of pipe `fd` holds now, left in it (b"": nothing, or unknown)."""
        assert self._peeker is not None
        try:
            return self._peeker.peek(fd) or b""
        except OSError:
            return b""

    def _ready(self) -> None:
        assert self._poll is not None
        for fd, events in self._poll.poll(0):
            reader = self._readers.get(fd)
            if reader is not None:
                reader.ended |= bool(events & (select.EPOLLHUP | select.EPOLLERR))
                if not reader.queued:  # (else that read sees what woke the agent now)
                    self._read_on(reader)

    def _read_on(self, reader: _Reader) -> None:
        """One peek of the pipe; when it may hold more, another at the next turn of the
        loop: a worker that writes without pause must not keep the loop to itself, and
        edge-triggered, the pipe would not wake it again for what it holds already.

        One read at a time per pipe: each write of a busy worker wakes the agent again,
        and a read started at each wake piled up turns that took longer and longer."""
        reader.queued = False
        if self._readers.get(reader.fd) is reader and self._drain(reader):
            reader.queued = True
            asyncio.get_running_loop().call_soon(self._read_on, reader)

    def _drain(self, reader: _Reader, seconds: float = TURN_SECONDS) -> bool:
        """Write the complete lines of one peek of the pipe (those that `seconds` allow,
        see TURN_SECONDS), then take them out of it (once it has ended, its last partial
        line too; at its end, close it). True when it may hold more."""
        assert self._peeker is not None and self._intents is not None
        try:
            data = self._peeker.peek(reader.fd)
        except OSError:
            data = b""
        if data is None:
            return False
        if not data:
            self._emit(reader.watcher, reader.wid, reader.stream, reader.last_words())
            self._close(reader)
            return False
        carried = reader.carried
        buffer = carried + data if carried else data
        whole = len(data) < self._peeker.size  # the peek saw all the pipe holds
        lines, end, ends = complete_lines(buffer, reader.cut, reader.ended and whole)
        if not lines:
            return False  # a partial line: the pipe wakes the agent when more comes
        reader.carried = b""
        take = _Take(self._intents, reader, buffer, lines, end, ends, len(carried))
        done, began = 0, time.monotonic()
        while done < len(lines) and (not done or time.monotonic() - began < seconds):
            batch = lines[done : done + TURN_LINES]
            self._emit(reader.watcher, reader.wid, reader.stream, batch, take)
            done += len(batch)
        take.rest(done)
        # Left: the lines not written in this turn; when the peek saw all it could, maybe
        # more (a partial line at its end may go on past it); else a partial line, which
        # waits, or what came after the peek, which woke the agent again.
        return done < len(lines) or reader.ended or not whole

    def _close(self, reader: _Reader) -> None:
        assert self._poll is not None and self._intents is not None
        self._poll.unregister(reader.fd)
        del self._readers[reader.fd]
        os.close(reader.fd)
        self._intents.give_back(reader.slot)

    def detach_all(self) -> None:
        """Stop reading every pipe: what they hold is written, partial lines included."""
        for reader in list(self._readers.values()):
            reader.ended = True
            for _ in range(64):  # (bounded: a worker left running may write on)
                if not self._drain(reader, math.inf):  # each peek whole: no turns to share
                    break
            if reader.fd in self._readers:  # a writer is still there: stop anyway
                self._emit(reader.watcher, reader.wid, reader.stream, reader.last_words())
                self._close(reader)
        self._stop_polling()

    def _stop_polling(self) -> None:
        if self._poll is not None:
            asyncio.get_running_loop().remove_reader(self._poll.fileno())
            self._poll.close()
            self._poll = None

    def hand_over(self) -> tuple[dict[int, bytes], list[Line], int]:
        """Stop reading without closing the pipes, for an exec of the agent: the partial
        line of each pipe fd (in the pipe itself: only one an older image handed this
        one, and that no newline completed yet), the lines not shipped yet and the count
        of dropped ones."""
        partials = {}
        for fd, reader in self._readers.items():
            if reader.carried:
                partials[fd] = reader.carried
            if self._intents is not None:
                self._intents.give_back(reader.slot)
        self._readers.clear()
        self._stop_polling()
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

    def _emit(
        self, watcher: str, wid: int, stream: str, raw: list[bytes], journal: _Take | None = None
    ) -> None:
        if not raw:
            return
        for event in self.on_output:
            event.set()
        at = time.time()
        entry = self._files.get((watcher, stream))
        if entry is not None:
            start = prefix(at, wid)
            entry[2].write_lines([start + line + b"\n" for line in raw], at, journal)
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
        if self._peeker is not None:
            self._peeker.close()
            self._peeker = None
        if self._intents is not None:
            self._intents.close()
            self._intents = None
