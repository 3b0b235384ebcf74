"""A controller and an agent as child processes of `stackctl up`.

`up` is the one-machine demo: it runs `stack.controller.main` (on its local
socket only, where stackctl finds it without options) and `stack.agent.main`
with the same Python, each in its own process group (so a
Ctrl-C in the terminal reaches only stackctl, which then stops them in order:
the agent first, so it stops its workers gracefully, then the controller).
Each child's log goes to a file under the data dir (`--log-level` sets how much);
when a child dies its last line says why. The agent's stdout is up's own: the
lines of watchers with a StdoutStream are printed there (see agent/console.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from stack.cli.errors import CommandError
from stack.cli.formats import signal_name
from stack.security.local import answers, is_unix, unix_path
from stack.security.safe_files import private_dir

TAIL_BYTES = 8192


@dataclass(frozen=True)
class LocalStackSettings:
    """Where and how `stackctl up` runs its children."""

    controller: str
    """The controller's local socket, unix:PATH, which the agent dials too."""
    data_dir: Path
    """The controller and the agent keep their state in subfolders of this one."""
    python: str = field(default_factory=lambda: sys.executable)
    """The interpreter that runs the children (the one running stackctl)."""
    log_level: str = "info"
    """What the children log: debug, info, warning or error."""


def split_address(address: str) -> tuple[str, int]:
    """`127.0.0.1:7450` -> ("127.0.0.1", 7450); `[::1]:7450` -> ("::1", 7450)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_listening(address: str, timeout: float = 0.5) -> bool:
    """Whether something already accepts connections at unix:PATH or HOST:PORT."""
    if is_unix(address):
        return answers(address)
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def last_line(path: Path) -> str:
    """The last non-empty line of a file, or an empty string."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Child:
    """One daemon run by `up`: its process and the file that keeps its output."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, own_stdout: bool = False
    ) -> None:
        """`own_stdout`: the child writes its stdout to ours, and only its stderr (its
        log) to `log_path`."""
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=None if own_stdout else self._log,
                stderr=self._log if own_stdout else subprocess.STDOUT,
                env=env,
                process_group=0,
            )
        except OSError as error:
            self._log.close()
            raise CommandError(f"cannot start the {name}: {error.strerror}") from None

    def exited(self) -> bool:
        return self.process.poll() is not None

    def describe_exit(self) -> str:
        """`the agent exited with code 1: <its last line> (see .stack/agent.log)`."""
        code = self.process.returncode
        if code is not None and code < 0:
            return f"the {self.name} was killed by {signal_name(-code)}"
        line = last_line(self.log_path)
        said = f": {line}" if line else ""
        return f"the {self.name} exited with code {code}{said} (see {self.log_path})"

    def stop(self, forced: threading.Event, poll: float = 0.2) -> None:
        """SIGTERM and wait until it exits; SIGKILL once `forced` is set."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        killed = False
        while True:
            try:
                self.process.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                if forced.is_set() and not killed:
                    self.process.kill()
                    killed = True
        self._log.close()


class LocalStack:
    """The controller and agent children of one `stackctl up`."""

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.children: list[Child] = []

    def log_path(self, name: str) -> Path:
        """The file that keeps the log of child `name`."""
        return self.settings.data_dir / f"{name}.log"

    def _start(self, name: str, module: str, *args: str, own_stdout: bool = False) -> Child:
        try:  # 0700: the daemons' logs there tell of workers and their errors
            private_dir(self.settings.data_dir)
        except OSError as exc:
            raise CommandError(f"cannot use {self.settings.data_dir}: {exc}") from None
        folder = self.settings.data_dir / name
        argv = [self.settings.python, "-m", module, *args, "--data-dir", str(folder)]
        argv += ["--log-level", self.settings.log_level]
        child = Child(name, argv, self.log_path(name), own_stdout)
        self.children.append(child)
        return child

    def start_controller(self) -> Child:
        socket = unix_path(self.settings.controller)
        return self._start("controller", "stack.controller.main", "--socket", socket)

    def start_agent(self) -> Child:
        return self._start(
            "agent", "stack.agent.main", "--controller", self.settings.controller, own_stdout=True
        )

    def check_alive(self) -> None:
        """CommandError naming the first child that has exited."""
        for child in self.children:
            if child.exited():
                raise CommandError(child.describe_exit())

    def stop(self, forced: threading.Event, say: bool = True) -> None:
        """Stop the agent first (its workers stop gracefully), then the controller."""
        for child in reversed(self.children):
            if say and not child.exited():
                print(f"stopping the {child.name}", file=sys.stderr, flush=True)
            child.stop(forced)
