"""HUP, TERM and INT reach the agent through a signalfd, never through a handler.

Why: a signal sent to a process goes to any one of its threads that does not block it,
and the agent runs gRPC's threads. Blocking the signals in the main thread alone does
not keep them: one of those threads takes the signal, Python's handler notes it for an
event loop, and if that loop is being wound down for a re-execution the signal is gone
(or, once the loop has reset the handlers, the default action kills the agent).

So the agent blocks the three signals in its main thread before any other thread
exists (`hold`): every thread started later inherits the mask, so no thread ever takes
them and they stay pending in the kernel until the agent reads them from a signalfd
(`SignalFd`), in its event loop, when it is ready to act on them. A signal is consumed
only by that read. What the agent has not read when it execs its next image stays
pending across execve (which keeps the mask and the pending signals), and the next
image reads it from its own signalfd: a TERM or INT sent at any moment of a
re-execution is honoured exactly once, by one of the two images.

A child inherits the mask of the thread that forks it: every child the agent starts
(workers, exec health checks, the check of a new program) is spawned inside
`unblocked_for_child`, so that it starts with these signals unblocked, as it would
from a shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
from collections.abc import Iterator

CONTROL = frozenset({signal.SIGHUP, signal.SIGTERM, signal.SIGINT})
"""The signals that change the agent's course: reload (HUP), stop (TERM, INT)."""

_SIGINFO_SIZE = 128
"""sizeof(struct signalfd_siginfo); ssi_signo is its first field (u32)."""
_SIGSET_WORDS = 1024 // (8 * ctypes.sizeof(ctypes.c_ulong))
"""glibc's sigset_t: 1024 bits."""
_libc = ctypes.CDLL(None, use_errno=True)


def hold() -> None:
    """Keep HUP, TERM and INT pending for the signalfd, in this thread and in every
    thread started from it later. Call first thing, before any other thread exists.

    An inherited SIG_IGN (`nohup`, a background job) is undone: an ignored signal is
    discarded when sent, so the signalfd would never see it. While the signals are
    blocked, their default action never runs.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL)
    for signum in CONTROL:
        signal.signal(signum, signal.SIG_DFL)


class SignalFd:
    """A non-blocking, close-on-exec signalfd for CONTROL (held with `hold`)."""

    def __init__(self) -> None:
        mask = (ctypes.c_ulong * _SIGSET_WORDS)()
        _libc.sigemptyset(ctypes.byref(mask))
        for signum in CONTROL:
            _libc.sigaddset(ctypes.byref(mask), int(signum))
        fd = _libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"signalfd: {os.strerror(code)}")
        self.fd: int = fd

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[int]:
        """The signals pending now, in the order read (each consumed); [] when none."""
        found: list[int] = []
        while True:
            try:
                data = os.read(self.fd, _SIGINFO_SIZE * 16)
            except BlockingIOError:
                return found
            except InterruptedError:
                continue
            if not data:
                return found
            found.extend(
                struct.unpack_from("=I", data, offset)[0]
                for offset in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE)
            )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


@contextlib.contextmanager
def unblocked_for_child() -> Iterator[None]:
    """Spawn a child inside this block: it starts with CONTROL unblocked.

    The calling thread unblocks CONTROL for the duration of the block. A signal that
    arrives meanwhile (or was pending) is caught by a handler that keeps it, and sent
    again once the mask is back, to wait for the signalfd as if nothing happened.
    Outside the agent (CONTROL not blocked), nothing changes.
    """
    blocked = CONTROL & signal.pthread_sigmask(signal.SIG_BLOCK, ())
    if not blocked:
        yield
        return
    caught: list[int] = []

    def keep(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {signum: signal.signal(signum, keep) for signum in blocked}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    try:
        yield
    finally:
        # Handlers of what arrived run before pthread_sigmask returns.
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for number in caught:
            pend(number)


def pend(signum: int) -> None:
    """Leave `signum` pending (CONTROL being held) for whoever reads a signalfd next:
    this image of the agent, or the next one."""
    os.kill(os.getpid(), signum)
