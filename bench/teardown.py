"""How a bench run ends: the same way on completion, Ctrl-C or SIGTERM.

Bench scripts start daemons and hundreds of workers; each script stops them in
a `finally`. These helpers make every way of ending the run go through it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from types import FrameType

from tests.support.processes import Daemon


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt inside (SIGINT even where `&` ignored it)."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, terminate),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_daemon(daemon: Daemon | None, grace: float = 30.0) -> None:
    """SIGTERM (every daemon here stops its workers on it); SIGKILL after `grace` seconds."""
    if daemon is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.stop(timeout=grace)
