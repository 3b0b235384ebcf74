"""A controller alone, as a real subprocess on the local socket of a temporary data dir.

For the controller's own tests: its agents are FakeAgents (tests/support/fake_agent.py),
so each message it sends can be checked exactly. Every start writes a log of its own
(controller.1.log, controller.2.log, ...), so a restarted controller's output is its own.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from tests.support.harness import AdminStub, Harness, admin_stub, channel, new_tag, stackctl_to
from tests.support.processes import CONTROLLER, Daemon
from tests.support.wait import wait_for


@dataclass
class ControllerProcess(Harness):
    """`stack-controller --data-dir ROOT/data --agent-timeout T OPTIONS...`"""

    root: Path
    agent_timeout: float = 10.0
    options: tuple[str, ...] = ()
    tag: str = field(default_factory=new_tag)
    daemon: Daemon | None = None
    _starts: int = 0
    _channel: grpc.Channel | None = None

    def start(self) -> ControllerProcess:
        self._starts += 1
        argv = [*CONTROLLER, "--data-dir", str(self.root / "data"),
                "--agent-timeout", str(self.agent_timeout), *self.options]  # fmt: skip
        daemon = Daemon(argv, self.root / f"controller.{self._starts}.log").start()
        self.daemon = daemon
        serving = f"serving on {self.address} "
        wait_for(
            lambda: serving in daemon.output() or not daemon.alive(), 30, "the controller to serve"
        )
        assert daemon.alive(), f"the controller exited:\n{daemon.output()}"
        return self

    @property
    def address(self) -> str:
        return f"unix:{self.root / 'data' / 'controller.sock'}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.daemon.proc if self.daemon is not None else None

    def output(self) -> str:
        return self.daemon.output() if self.daemon is not None else ""

    def stackctl_argv(self) -> list[str]:
        return stackctl_to(self.address)

    def daemons(self) -> dict[str, Daemon]:
        return {"controller": self.daemon} if self.daemon is not None else {}

    def admin(self) -> AdminStub:
        if self._channel is None:
            self._channel = channel(self.address)
        return admin_stub(self._channel)

    def release(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def kill9(self) -> None:
        assert self.daemon is not None
        self.daemon.kill9()
        self.release()

    def terminate(self) -> int | None:
        """SIGTERM; its exit code."""
        assert self.daemon is not None
        code = self.daemon.stop(timeout=10)
        self.release()
        return code
