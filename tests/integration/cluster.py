"""A real single-host Stack for tests: a controller and an agent as subprocesses.

Everything talks real gRPC over the controller's local socket (in its temporary
data dir), as stackctl and an agent on the controller's host do. Tests drive it
through `stackctl` (as a subprocess, the way a user does) and read state through
the AdminService for fast polling.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil

from stack.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from tests.support.hog import hog_pids

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def fetch(port: int, host: str = "127.0.0.1") -> int:
    """Connect to a shared socket of workers/worker.py serves and read the answering pid."""
    with socket.create_connection((host, port), timeout=10) as conn:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                raise ConnectionError("closed without an answer")
            data += chunk
    return int(data)


def channel(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to a controller: its local socket (unix:PATH, no certificate) or a
    plaintext HOST:PORT (a controller started with --insecure)."""
    if address.startswith("unix:"):
        local = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
        return grpc.secure_channel(address, local, options=options)
    return grpc.insecure_channel(address, options=options)


@contextlib.contextmanager
def asking(port: int, limit: int = 100_000) -> Iterator[tuple[list[int], list[Exception]]]:
    """A client that asks workers/worker.py on `port` for its pid again and again while
    the block runs (at most `limit` times): yields (answers, failures), filled as it goes."""
    answers: list[int] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set() and len(answers) < limit:
            try:
                answers.append(fetch(port))
            except OSError as exc:
                failures.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield answers, failures
    finally:
        stop.set()
        thread.join(30)


def controller_answers(controller: Daemon, admin: admin_pb2_grpc.AdminServiceStub) -> bool:
    """The controller serves Status (an AssertionError with its log if it exited)."""
    if not controller.alive():
        raise AssertionError(f"controller exited:\n{controller.output()}")
    try:
        admin.Status(admin_pb2.StatusRequest(), timeout=1)
    except grpc.RpcError:
        return False
    return True


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("STACK_CONTROLLER", None)
    return env


@dataclass
class Daemon:
    """One daemon subprocess with its stderr kept in a file."""

    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    """Its environment; None: this test's, with this checkout on the path."""

    def start(self) -> None:
        handle = self.log.open("ab")
        env = self.env if self.env is not None else _env()
        self.proc = subprocess.Popen(
            self.argv, stdout=handle, stderr=handle, env=env, cwd=ROOT, start_new_session=True
        )
        handle.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """A controller and one agent (host id `h1`) under `root`."""

    root: Path
    tag: str = field(default_factory=lambda: f"stacktest-{uuid.uuid4().hex[:12]}")
    """Put in workers' command lines (see watcher_toml) so a test finds exactly its own."""
    agent_timeout: float = 2.0
    agent_options: tuple[str, ...] = ("--stats-interval", "0.5", "--heartbeat-interval", "0.5")
    controller: Daemon = field(init=False)
    agent: Daemon = field(init=False)
    more_agents: list[Daemon] = field(default_factory=list)
    """Agents started by `add_agent`, stopped by `close`."""
    _channel: grpc.Channel | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.controller = Daemon(
            [PYTHON, "-m", "stack.controller.main", "--data-dir", str(self.root / "controller"),
             "--agent-timeout", str(self.agent_timeout)],
            self.root / "controller.log",
        )  # fmt: skip
        self.agent = Daemon(
            [PYTHON, "-m", "stack.agent.main", "--controller", self.address,
             "--host-id", "h1", "--data-dir", str(self.root / "agent"), *self.agent_options],
            self.root / "agent.log",
        )  # fmt: skip

    @property
    def address(self) -> str:
        """The controller's local socket (the default one of its data dir)."""
        return f"unix:{self.root / 'controller' / 'controller.sock'}"

    # -- life cycle -------------------------------------------------------

    def start(self) -> Cluster:
        self.start_controller()
        self.start_agent()
        return self

    def start_controller(self) -> None:
        self.controller.start()
        wait_for(self._controller_answers, 15, "the controller to answer")

    def start_agent(self, wait_connected: bool = True) -> None:
        self.agent.start()
        if wait_connected:
            wait_for(lambda: self.agent_state() == "ready", 15, "the agent to connect")

    def add_agent(self, host_id: str, *options: str) -> Daemon:
        """Start one more agent, `host_id` (data dir ROOT/HOST_ID), and wait until it is ready."""
        agent = Daemon(
            [PYTHON, "-m", "stack.agent.main", "--controller", self.address,
             "--host-id", host_id, "--data-dir", str(self.root / host_id),
             *self.agent_options, *options],
            self.root / f"{host_id}.log",
        )  # fmt: skip
        self.more_agents.append(agent)
        agent.start()
        wait_for(lambda: self.agent_state(host_id) == "ready", 15, f"agent {host_id} to connect")
        return agent

    def _controller_answers(self) -> bool:
        return controller_answers(self.controller, self.admin())

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        for agent in self.more_agents:
            with contextlib.suppress(Exception):
                agent.stop()
        with contextlib.suppress(Exception):
            self.agent.stop()
        with contextlib.suppress(Exception):
            self.controller.stop()
        kill_descendants()

    # -- reading state ----------------------------------------------------

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        if self._channel is None:
            self._channel = channel(self.address)
        return admin_pb2_grpc.AdminServiceStub(self._channel)

    def status(self, watcher: str = "") -> admin_pb2.StatusReply:
        reply: admin_pb2.StatusReply = self.admin().Status(
            admin_pb2.StatusRequest(watcher=watcher), timeout=5
        )
        return reply

    def processes(self, watcher: str) -> list[types_pb2.ProcessStatus]:
        return [p for w in self.status().watchers if w.name == watcher for p in w.processes]

    def running_pids(self, watcher: str) -> dict[int, int]:
        """wid -> pid of the RUNNING processes of a watcher, as the controller reports them."""
        return {
            p.wid: p.pid
            for p in self.processes(watcher)
            if p.state == types_pb2.PROCESS_STATE_RUNNING
        }

    def wait_running(self, watcher: str, count: int, timeout: float = 15.0) -> dict[int, int]:
        def done() -> dict[int, int] | None:
            procs = self.processes(watcher)
            pids = self.running_pids(watcher)
            return pids if len(pids) == count and len(procs) == count else None

        if count == 0:
            wait_for(lambda: not self.processes(watcher), timeout, f"{watcher} to have none")
            return {}
        return wait_for(done, timeout, f"{watcher} to have {count} running")

    def agent_state(self, host_id: str = "h1") -> str:
        try:
            reply = self.admin().Agents(admin_pb2.AgentsRequest(), timeout=2)
        except grpc.RpcError:
            return ""
        return next((a.state for a in reply.agents if a.host_id == host_id), "")

    # -- acting like a user -----------------------------------------------

    def stackctl(self, *args: str, timeout: float = 60.0, check: bool = False) -> Result:
        argv = [PYTHON, "-m", "stack.cli.main", "--controller", self.address, *args]
        return run_stackctl(argv, self.root, timeout, check)

    def apply(self, text: str, name: str = "stack.toml") -> Result:
        path = self.root / name
        path.write_text(text)
        return self.stackctl("apply", "--yes", str(path), check=True)


def run_stackctl(argv: list[str], cwd: Path, timeout: float, check: bool) -> Result:
    """Run a stackctl command line as a user would; with `check`, it must exit 0."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=timeout
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check:
        assert result.code == 0, f"{' '.join(argv)} failed: {result}"
    return result


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def worker_processes(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains `marker`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_descendants() -> None:
    """SIGKILL whatever this test process still has below it, and reap it (the hogs of
    `--hog` excepted: they run for the whole session)."""
    spared = hog_pids()
    for child in psutil.Process().children(recursive=True):
        if child.pid in spared:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def become_subreaper() -> None:
    """Orphans of killed agents re-parent to the test process, so teardown finds them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)


@contextlib.contextmanager
def running_cluster(root: Path, **kwargs: Any) -> Iterator[Cluster]:
    cluster = Cluster(root, **kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.close()


WORKER = ROOT / "tests" / "integration" / "programs" / "worker.py"


def watcher_toml(name: str, tag: str, *flags: str, **options: Any) -> str:
    """A [watchers.NAME] table running programs/worker.py with `flags`."""
    cmd = " ".join([PYTHON, str(WORKER), "--tag", tag, *flags])
    lines = [f"[watchers.{name}]", f"cmd = {json.dumps(cmd)}"]
    tables = {k: v for k, v in options.items() if isinstance(v, dict)}
    for key, value in options.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables.items():
        lines.append(f"[watchers.{name}.{key}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def socket_stack(tag: str, port: int, *flags: str, **options: object) -> str:
    """Socket `web` on 127.0.0.1:`port` and watcher `w` (worker.py `flags`) inheriting it."""
    head = f'[sockets.web]\nhost = "127.0.0.1"\nport = {port}\n\n'
    return head + watcher_toml("w", tag, *flags, sockets=["web"], **options)
