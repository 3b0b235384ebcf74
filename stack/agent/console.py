"""Workers' lines on the agent's own stdout: Circus's StdoutStream and FancyStdoutStream.

Circus users see a watcher's output inline by giving it `class = StdoutStream`; Stack
prints those lines, each prefixed with its watcher and worker id (`web.2 | hello`), on
the agent's stdout: the terminal of `stackctl up`, or the journal of an agent run as a
service. FancyStdoutStream colours the prefix, one colour per watcher (its `color`, or
one picked from the watcher's name). The lines are still written to the watcher's file
and shipped, so `stackctl logs` shows them as for any other stream.

Printing must never stall the agent: a terminal paused with Ctrl-S, or a pipe nobody
reads, blocks its writer. So the event loop only queues the text, and one thread of
the printer's own writes it; when the queue is full, lines are dropped and counted,
and the count is printed once output flows again. Worker text is printed with its
control characters escaped (`safe_text.safe`), so a worker cannot command the
operator's terminal.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import zlib

from stack.safe_text import safe
from stack.spec.model import COLORS

MAX_PENDING = 10_000
"""Chunks of lines waiting for the writer at most; beyond, lines are dropped."""
_CODES = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "white": 37}


def color_of(watcher: str, color: str) -> str:
    """The colour a FancyStdoutStream gives `watcher`: `color`, or one of COLORS chosen
    by its name (the same on every agent and at every start)."""
    if color:
        return color
    return COLORS[zlib.crc32(watcher.encode()) % len(COLORS)]


def render(watcher: str, wid: int, lines: list[bytes], color: str = "") -> bytes:
    """`web.2 | hello\\n` per line, the prefix in ANSI `color` when one is given."""
    head = f"{watcher}.{wid} | "
    if color:
        head = f"\x1b[{_CODES[color]}m{head}\x1b[0m"
    text = "".join(head + safe(line.decode("utf-8", "replace")) + "\n" for line in lines)
    return text.encode()


class Console:
    """Writes rendered lines to file descriptor `fd` from a thread of its own."""

    def __init__(self, fd: int = 1, max_pending: int = MAX_PENDING) -> None:
        self.fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_pending)
        self._dropped = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def print(self, watcher: str, wid: int, lines: list[bytes], color: str = "") -> None:
        """Queue `lines` of worker `wid` of `watcher`; never blocks."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_all, name="console", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(render(watcher, wid, lines, color))
        except queue.Full:
            with self._lock:
                self._dropped += len(lines)

    def _write_all(self) -> None:
        while (blob := self._queue.get()) is not None:
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                blob = f"({dropped} lines not printed: the output was not read)\n".encode() + blob
            view = memoryview(blob)
            try:
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError:
                return  # stdout is gone (a closed terminal): nothing more is printed

    def close(self, timeout: float = 1.0) -> None:
        """Let the writer print what is queued, for at most `timeout` seconds."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None
