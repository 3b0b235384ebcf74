"""Looking at what waits in a worker's output pipe without taking it out.

The agent must not lose a line when it is killed (`kill -9`, OOM) at any instant. A
plain read(2) takes the bytes out of the pipe: between that read and the write of the
lines to their file they exist only in the agent's memory, and a kill there loses them.
So the agent reads a pipe in two steps: `peek` copies its bytes into a scratch pipe with
tee(2), which leaves them in the worker's pipe, and the agent reads the copy; only once
the lines are in their file does `discard` take exactly those bytes out. Until then a
new agent (which takes the pipe back from the worker, see adoption.py) finds them there.

Python has os.splice but no tee: it is called through libc.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os

PIPE_BYTES = 1024 * 1024
"""Capacity of an output pipe when the agent runs as root (the kernel default is 64 KiB):
what a worker may write while no agent reads before it blocks."""
PEEK_BYTES = 256 * 1024
"""At most this much is handled at a time, so that the event loop turns between."""
F_GETPIPE_SZ = 1032
F_SETPIPE_SZ = 1031
SPLICE_F_NONBLOCK = 2
_libc = ctypes.CDLL(None, use_errno=True)
_tee = _libc.tee
_tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
_tee.restype = ctypes.c_ssize_t


def pipe_size(fd: int) -> int:
    """The capacity of pipe `fd` in bytes."""
    return fcntl.fcntl(fd, F_GETPIPE_SZ)


class Peeker:
    """A scratch pipe through which the agent reads the other pipes without consuming them.

    One per agent: `peek` leaves it empty again each time. One peek sees at most
    PEEK_BYTES, and less when the scratch pipe holds less (64 KiB when not root).
    """

    def __init__(self, capacity: int) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if capacity > 0:
            with contextlib.suppress(OSError):  # over the user's pipe budget: the default
                fcntl.fcntl(self._write, F_SETPIPE_SZ, capacity)
        self.size = min(pipe_size(self._write), PEEK_BYTES)
        """How many bytes one peek sees at most."""

    def peek(self, fd: int) -> bytes | None:
        """The bytes waiting in pipe `fd` (up to `size`), left in it; b"" at its end (no
        writer left and nothing in it); None when it is empty for now."""
        copied = _tee(fd, self._write, self.size, SPLICE_F_NONBLOCK)
        if copied < 0:
            code = ctypes.get_errno()
            if code == errno.EAGAIN:
                return None
            raise OSError(code, os.strerror(code))
        if copied == 0:
            return b""
        data = os.read(self._read, copied)
        while len(data) < copied:  # (a pipe gives what it holds at once; to be sure)
            data += os.read(self._read, copied - len(data))
        return data

    def close(self) -> None:
        for fd in (self._read, self._write):
            os.close(fd)


def discard(fd: int, count: int) -> None:
    """Take the first `count` bytes out of pipe `fd` (they were peeked, so they are there)."""
    while count > 0:
        try:
            taken = len(os.read(fd, count))
        except BlockingIOError:  # cannot be: another reader of our pipe took them
            return
        if not taken:
            return
        count -= taken
