"""What every Stack under test shares, whatever it is made of: running stackctl, applying
a stack file, and reading state (processes, pids, agents, events) through the AdminService.

Each harness (one host on a local socket, mutual TLS, several controllers on etcd, a
fleet of network namespaces) says only how its controller is reached: the stackctl
command line (`stackctl_argv`) and an AdminService stub (`admin`). Tests drive a stack
through `stackctl`, as a user does, and poll its state through the stub, which is fast.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import grpc

from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from tests.support.processes import ROOT, STACKCTL, Daemon, Result, kill_descendants, run_stackctl
from tests.support.wait import wait_for

AdminStub = admin_pb2_grpc.AdminServiceStub
RUNNING = types_pb2.PROCESS_STATE_RUNNING
UNKNOWN = types_pb2.PROCESS_STATE_UNKNOWN


def new_tag(prefix: str = "stacktest") -> str:
    """A word to put in workers' command lines, so a test finds exactly its own."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin_stub(channel: grpc.Channel) -> AdminStub:
    """An AdminService stub on `channel` (the generated constructor has no annotations)."""
    return AdminStub(channel)  # type: ignore[no-untyped-call]


def channel(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to a controller: its local socket (unix:PATH, no certificate) or a
    plaintext HOST:PORT (a controller started with --insecure)."""
    if address.startswith("unix:"):
        local = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
        return grpc.secure_channel(address, local, options=options)
    return grpc.insecure_channel(address, options=options)


def answers(controller: Daemon, admin: AdminStub) -> bool:
    """The controller serves Status (an AssertionError with its log if it exited)."""
    if not controller.alive():
        raise AssertionError(f"controller exited:\n{controller.output()}")
    try:
        admin.Status(admin_pb2.StatusRequest(), timeout=2)
    except grpc.RpcError:
        return False
    return True


_SERVING = re.compile(r"serving on (\S+:\d+) ")


def served_address(controller: Daemon, timeout: float = 30.0) -> str:
    """HOST:PORT of the TCP port a controller serves, as it printed it: how a test learns
    the port the kernel gave a controller started with `--listen HOST:0`."""

    def printed() -> str:
        if not controller.alive():
            raise AssertionError(f"controller exited:\n{controller.output()}")
        found = [m for m in _SERVING.findall(controller.output()) if not m.startswith("unix:")]
        return found[-1] if found else ""

    return wait_for(printed, timeout, "the controller to print its TCP address")


class Harness:
    """A running Stack: its daemons, how to reach its controller, and how to use it."""

    root: Path
    tag: str
    _open: ClassVar[list[Harness]] = []
    """Harnesses made and not closed yet (a module's harness outlives its tests')."""

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        Harness._open.append(self)

    # -- what each harness says ------------------------------------------

    def stackctl_argv(self) -> list[str]:
        """`stackctl` and the options that reach this stack's controller."""
        raise NotImplementedError

    def admin(self) -> AdminStub:
        """An AdminService stub on the controller that leads (with an admin's rights)."""
        raise NotImplementedError

    def daemons(self) -> dict[str, Daemon]:
        """Every daemon started, by name, agents before controllers (the order `close`
        stops them in)."""
        raise NotImplementedError

    def release(self) -> None:
        """Close what the harness holds besides its daemons (channels, relays, ports)."""

    # -- acting like a user -----------------------------------------------

    def stackctl(self, *args: str, timeout: float = 60.0, check: bool = False) -> Result:
        """`stackctl ARGS` as a subprocess; with `check`, it must exit 0."""
        return run_stackctl([*self.stackctl_argv(), *args], self.cwd(), timeout, check)

    def cwd(self) -> Path:
        return ROOT

    def apply(self, text: str, name: str = "stack.toml") -> Result:
        """Write `text` to ROOT/NAME and `stackctl apply --yes` it (which must succeed)."""
        path = self.root / name
        path.write_text(text)
        return self.stackctl("apply", "--yes", str(path), check=True)

    # -- reading state ----------------------------------------------------

    def status(self, watcher: str = "") -> admin_pb2.StatusReply:
        reply: admin_pb2.StatusReply = self.admin().Status(
            admin_pb2.StatusRequest(watcher=watcher), timeout=5
        )
        return reply

    def processes(self, watcher: str) -> list[types_pb2.ProcessStatus]:
        return [p for w in self.status().watchers if w.name == watcher for p in w.processes]

    def running_pids(self, watcher: str) -> dict[int, int]:
        """wid -> pid of the RUNNING processes of a watcher, as the controller reports them."""
        return {p.wid: p.pid for p in self.processes(watcher) if p.state == RUNNING}

    def wait_running(self, watcher: str, count: int, timeout: float = 30.0) -> dict[int, int]:
        """Once `watcher` has exactly `count` processes, all RUNNING: wid -> pid."""

        def done() -> dict[int, int]:
            procs = self.processes(watcher)
            pids = {p.wid: p.pid for p in procs if p.state == RUNNING}
            return pids if len(pids) == count and len(procs) == count else {}

        if count == 0:
            wait_for(lambda: not self.processes(watcher), timeout, f"{watcher} to have none")
            return {}
        return wait_for(done, timeout, f"{watcher} to have {count} running")

    def agent_states(self) -> dict[str, str]:
        """host id -> state ("ready", "down", ...); {} while the controller does not answer."""
        try:
            reply = self.admin().Agents(admin_pb2.AgentsRequest(), timeout=5)
        except grpc.RpcError:
            return {}
        return {a.host_id: a.state for a in reply.agents}

    def agent_state(self, host_id: str = "h1") -> str:
        return self.agent_states().get(host_id, "")

    def agent_info(self, host_id: str = "h1") -> admin_pb2.AgentInfo:
        """What the controller says of agent `host_id` (`stackctl agents`)."""
        reply: admin_pb2.AgentsReply = self.admin().Agents(admin_pb2.AgentsRequest(), timeout=5)
        found = [a for a in reply.agents if a.host_id == host_id]
        assert found, f"the controller knows no agent {host_id}"
        return found[0]

    def events(self, kind: str = "") -> list[types_pb2.Event]:
        """The controller's recent events (of `kind`: "agent_lost", "apply", ...)."""
        stream = self.admin().Events(admin_pb2.EventsRequest(), timeout=5)
        return [event for event in stream if kind in ("", event.kind)]

    def logs(self, lines: int = 60) -> str:
        """The last lines of every daemon's log, for a failing test's report."""
        parts = []
        for name, daemon in self.daemons().items():
            tail = daemon.output().splitlines()[-lines:]
            parts.append(f"--- {name} ({daemon.log})\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- life cycle -------------------------------------------------------

    def close(self) -> None:
        """Stop every daemon (agents first), whatever state it is in, and kill what is left
        below this test process."""
        with contextlib.suppress(ValueError):
            Harness._open.remove(self)
        with contextlib.suppress(Exception):
            self.release()
        for daemon in self.daemons().values():
            with contextlib.suppress(Exception):
                daemon.stop(timeout=15)
        others = [d for h in Harness._open for d in h.daemons().values() if d.alive()]
        kill_descendants(spare=[d.pid for d in others])

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stackctl_to(controller: str) -> list[str]:
    """The stackctl command line for a controller address (or a comma-separated list)."""
    return [*STACKCTL, "--controller", controller]
