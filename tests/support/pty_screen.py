"""A program run in a pseudo-terminal as on a user's terminal: its controlling tty, a
window size, keys typed into it, and the screen it drew read back as text."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
from collections.abc import Sequence

from tests.support.processes import ROOT, stack_env
from tests.support.wait import wait_for

_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class PtyProgram:
    """`argv` on a new pty of `rows` x `columns` whose session it leads (so that Ctrl-C
    typed there is its SIGINT). util-linux's `setsid --ctty` makes the pty its controlling
    terminal: a preexec_fn would run gRPC's fork handlers in the test's forked child."""

    def __init__(self, argv: Sequence[str], rows: int = 24, columns: int = 80) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.modes_before = termios.tcgetattr(self.master)
        self.proc = subprocess.Popen(
            ["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave,
            env=stack_env(TERM="xterm"), cwd=ROOT, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self.output = b""

    def read(self) -> str:
        """Everything written so far (reads what is waiting, without blocking)."""
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program closed its side
                break
            if not chunk:
                break
            self.output += chunk
        return self.output.decode(errors="replace")

    def screen(self) -> list[str]:
        """The last frame drawn (from its last cursor-home), as plain lines."""
        text = self.read()
        last = text.rfind("\x1b[H")
        frame = text[last + 3 :] if last >= 0 else text
        return [_CSI.sub("", line) for line in frame.replace("\r", "").split("\n")]

    def wait_screen(self, *wanted: str, timeout: float = 20.0) -> list[str]:
        """The screen once every string of `wanted` is on it."""

        def shown() -> list[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.read()}")
            lines = self.screen()
            text = "\n".join(lines)
            return lines if all(w in text for w in wanted) else None

        return wait_for(shown, timeout, f"{wanted} on the screen", interval=0.1)

    def wait_line(self, *words: str, timeout: float = 20.0) -> str:
        """The first line of the screen that has every one of `words`, once there is one."""

        def shown() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.read()}")
            return next((ln for ln in self.screen() if all(w in ln for w in words)), None)

        return wait_for(shown, timeout, f"a line with {words} on the screen", interval=0.1)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_exit(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout)
        self.read()
        return code

    def modes(self) -> list[object]:
        """The terminal's modes now (the pty's two sides share them)."""
        return termios.tcgetattr(self.master)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
