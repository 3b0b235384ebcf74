"""`stackctl top`: a live full-screen view of the stack, refreshed from the controller.

The loop reads the controller (Status and the latest events) every `--interval`,
draws the frame stack.cli.top_view makes of it, and waits for a key meanwhile; a key
redraws at once. The terminal is put in cbreak mode on the alternate screen with the
cursor hidden, and given back as it was on every way out: `q`, Ctrl-C, SIGTERM, SIGHUP,
or an error. When stdin or stdout is not a terminal (a pipe, a log, `ssh host stackctl
top` without `-t`) there is nothing to be live on: it prints one frame as plain text,
80 columns wide, and exits.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TextIO

from stack.cli.client import StackClient
from stack.cli.errors import CommandError
from stack.cli.options import GlobalOptions
from stack.cli.top_view import EVENT_LINES, Choices, Line, Snapshot, frame, key, plain
from stack.v1 import admin_pb2

PLAIN_WIDTH = 80
CALL_TIMEOUT = 2.0
"""Seconds one refresh may wait for the controller before the screen says it failed."""

_KEYS = {
    "\x1b[A": "up",
    "\x1bOA": "up",
    "\x1b[B": "down",
    "\x1bOB": "down",
    "\r": "enter",
    "\n": "enter",
    "\x7f": "backspace",
    "\x08": "backspace",
    "\x1b": "esc",
}


def parse_keys(data: str) -> list[str]:
    """The keys in what the terminal sent: arrows, enter, esc, backspace, characters.
    An unknown escape sequence is skipped whole."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        for sequence in ("\x1b[A", "\x1bOA", "\x1b[B", "\x1bOB"):
            if data.startswith(sequence, i):
                keys.append(_KEYS[sequence])
                i += len(sequence)
                break
        else:
            char = data[i]
            if char == "\x1b" and i + 1 < len(data) and data[i + 1] in "[O":
                i += 2  # another sequence (right, left, F-keys...): up to its final byte
                while i < len(data) and not ("@" <= data[i] <= "~"):
                    i += 1
                i += 1
                continue
            keys.append(_KEYS.get(char, char))
            i += 1
    return keys


def refresh(client: StackClient, previous: Snapshot) -> Snapshot:
    """The controller's answers now; the previous ones with the error when it fails."""
    try:
        status = client.status(timeout=CALL_TIMEOUT)
        events = list(client.events(False, "", EVENT_LINES))
    except CommandError as exc:
        return Snapshot(previous.status, previous.events, client.address, str(exc))
    return Snapshot(status, events, client.address)


def styled(lines: Sequence[Line]) -> str:
    """A frame for the terminal: from the top left, each line cleared to its end."""
    out = ["\x1b[H"]
    for number, line in enumerate(lines):
        if number:
            out.append("\r\n")
        out.append(f"\x1b[{line.style}m{line.text}\x1b[0m" if line.style else line.text)
        out.append("\x1b[K")
    out.append("\x1b[J")
    return "".join(out)


class _Leave(Exception):
    """SIGTERM or SIGHUP: leave the screen the way `q` does."""


@contextlib.contextmanager
def full_screen(fd: int, out: TextIO) -> Iterator[None]:
    """cbreak mode, the alternate screen and no cursor for the block; everything back as
    it was after it, however it ends."""
    saved = termios.tcgetattr(fd)

    def leave(signum: int, frame: FrameType | None) -> None:
        raise _Leave

    handlers = {s: signal.signal(s, leave) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        out.write("\x1b[?1049h\x1b[?25l")
        out.flush()
        yield
    except _Leave:
        pass
    finally:
        out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
        out.flush()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def top(options: GlobalOptions, interval: float = 1.0) -> None:
    """Watch the watchers, their processes and the latest events, live."""
    with options.connect() as client:
        empty = Snapshot(admin_pb2.StatusReply(), (), client.address)
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            snapshot = refresh(client, empty)
            if snapshot.error:
                raise CommandError(snapshot.error)
            lines = frame(snapshot, Choices(), PLAIN_WIDTH, 0, time.time(), screen=False)
            sys.stdout.write(plain(lines))
            return
        fd = sys.stdin.fileno()
        with full_screen(fd, sys.stdout), contextlib.suppress(KeyboardInterrupt):
            _run(client, empty, fd, interval)


def _run(client: StackClient, snapshot: Snapshot, fd: int, interval: float) -> None:
    choices: Choices | None = Choices()
    due = 0.0
    while choices is not None:
        if time.monotonic() >= due:
            snapshot = refresh(client, snapshot)
            due = time.monotonic() + interval
        width, height = os.get_terminal_size(sys.stdout.fileno())
        sys.stdout.write(styled(frame(snapshot, choices, width, height, time.time())))
        sys.stdout.flush()
        ready, _, _ = select.select([fd], [], [], max(0.0, due - time.monotonic()))
        if not ready:
            continue
        data = os.read(fd, 1024).decode(errors="replace")
        if not data:
            return  # the terminal went away
        for pressed in parse_keys(data):
            choices = key(snapshot, choices, pressed)
            if choices is None:
                return
