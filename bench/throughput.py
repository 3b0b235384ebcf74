"""Does serving through a Stack socket cost requests? gunicorn alone, under Stack, under Circus.

Run: .venv/bin/python bench/throughput.py [--workers 4] [--seconds 30] [--rounds 3]

The same WSGI app (bench/hello_app.py, 334 bytes of text) is served by N gunicorn
sync workers in three setups, each on a fresh kernel-chosen port on 127.0.0.1:

- gunicorn alone: `gunicorn -w N`, which binds the port itself (the anchor);
- Stack: a controller (on its local unix socket) and an agent; the agent binds a
  [sockets] entry and runs a watcher of N `gunicorn -w 1` that inherit it
  through systemd's socket activation variables (LISTEN_FDS), as gunicorn
  supports out of the box;
- Circus 0.19: a [socket:web] and a watcher of N `gunicorn -w 1 --bind
  fd://$(circus.sockets.web)`, Circus's way of lending a socket.

All three listen with the same options (backlog 2048, SO_REUSEADDR, no
SO_REUSEPORT, non-blocking), each tool's default. Each setup is started alone,
warmed up for 2 s, loaded by Debian's `wrk` (--threads, --connections) for
--seconds, and stopped; the three take turns, in a rotating order, --rounds
times. Prints the median requests/s, p99 latency and CPU time per request of
each setup (all its processes, the manager's part apart) and their ratio to
gunicorn alone; asserts nothing. CPU per request holds still on a busy machine,
where requests/s and p99 swing with whatever else runs. Targets (issue 14):
Stack's requests/s at least 0.98 of gunicorn's own, its p99 at most 1.05 of it.
--layouts adds two setups that tell the cost of the layout from the cost of
the manager: N `gunicorn -w 1` on a socket the bench binds itself (the
managers' layout, no manager), and Stack running one `gunicorn -w N` on its
socket (gunicorn's layout, under Stack).

wrk is installed with apt when missing (as root); gunicorn and Circus go into
virtualenvs under bench/.cache/ (see bench/installs.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installs import CIRCUS, GUNICORN, debian_tool, venv
from bench.measure import cpu_seconds, poll
from bench.teardown import interruptible, stop_daemon
from tests.support.cluster import Cluster
from tests.support.ports import reserve_port
from tests.support.processes import Daemon, become_subreaper, kill_descendants

BENCH = Path(__file__).resolve().parent
APP = "hello_app:app"
WARMUP = 2.0
LIBC = ctypes.CDLL(None, use_errno=True)
SYS_PIDFD_GETFD = 438


class Setup(Protocol):
    label: str

    def start(self, root: Path, port: int) -> None:
        """Serve APP on 127.0.0.1:`port`, using `root` for files; return once it is started."""
        ...

    def stop(self) -> None: ...


def gunicorn_argv(gunicorn: Path, workers: int, *options: str) -> list[str]:
    return [str(gunicorn), "--chdir", str(BENCH), "--workers", str(workers), *options, APP]


@dataclass
class GunicornAlone:
    gunicorn: Path
    workers: int
    label: str = "gunicorn alone"
    daemon: Daemon | None = None

    def start(self, root: Path, port: int) -> None:
        argv = gunicorn_argv(self.gunicorn, self.workers, "--bind", f"127.0.0.1:{port}")
        self.daemon = Daemon(argv, root / "gunicorn.log")
        self.daemon.start()

    def stop(self) -> None:
        stop_daemon(self.daemon)


@dataclass
class UnderStack:
    """N `gunicorn -w 1` as Stack's workers; with `one_master`, one `gunicorn -w N` instead."""

    gunicorn: Path
    workers: int
    one_master: bool = False
    label: str = "Stack"
    cluster: Cluster | None = None

    def __post_init__(self) -> None:
        if self.one_master:
            self.label = f"Stack, one gunicorn -w {self.workers}"

    def start(self, root: Path, port: int) -> None:
        self.cluster = Cluster(root / "stack", agent_options=())  # the agent's defaults
        self.cluster.start()
        per_process, processes = (self.workers, 1) if self.one_master else (1, self.workers)
        cmd = shlex.join(gunicorn_argv(self.gunicorn, per_process))
        stack_file = root / "web.toml"
        stack_file.write_text(
            f'[sockets.web]\nhost = "127.0.0.1"\nport = {port}\n'
            f"[watchers.web]\ncmd = {json.dumps(cmd)}\nnumprocesses = {processes}\n"
            "use_sockets = true\n"
        )
        self.cluster.stackctl("apply", str(stack_file), check=True)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.close()


@dataclass
class SharedWithoutManager:
    """The managers' layout with no manager: N `gunicorn -w 1` on one socket this bench binds.

    Tells a cost of the layout (N single-worker gunicorns instead of one with N
    workers) from a cost of the manager around it. The N run in one session, as
    Stack's workers do in the agent's (see serving_sessions).
    """

    gunicorn: Path
    workers: int
    label: str = "no manager, N gunicorn -w 1"
    group: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None

    def start(self, root: Path, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(2048)  # the managers' default backlog, and gunicorn's
        self.sock.setblocking(False)
        fd = self.sock.fileno()
        argv = gunicorn_argv(self.gunicorn, 1, "--bind", f"fd://{fd}")
        script = f'for _ in $(seq {self.workers}); do "$@" & done; wait'
        with (root / "gunicorn.log").open("ab") as log:
            self.group = subprocess.Popen(
                ["bash", "-c", script, "bash", *argv],
                stdout=log, stderr=log, pass_fds=(fd,), start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        if self.group is not None and self.group.poll() is None:
            os.killpg(self.group.pid, signal.SIGTERM)  # bash and its gunicorns: one group
            try:
                self.group.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.group.pid, signal.SIGKILL)
                self.group.wait(5)
        if self.sock is not None:
            self.sock.close()


@dataclass
class UnderCircus:
    gunicorn: Path
    circus: Path
    workers: int
    label: str = "Circus 0.19"
    daemon: Daemon | None = None

    def start(self, root: Path, port: int) -> None:
        cmd = shlex.join(gunicorn_argv(self.gunicorn, 1, "--bind", "fd://$(circus.sockets.web)"))
        config = root / "circus.ini"
        config.write_text(
            f"[circus]\nendpoint = ipc://{root}/circus-control\n"
            f"pubsub_endpoint = ipc://{root}/circus-pubsub\n"
            f"[socket:web]\nhost = 127.0.0.1\nport = {port}\n"
            f"[watcher:web]\ncmd = {cmd}\nnumprocesses = {self.workers}\nuse_sockets = true\n"
        )
        self.daemon = Daemon([str(self.circus / "circusd"), str(config)], root / "circusd.log")
        self.daemon.start()

    def stop(self) -> None:
        stop_daemon(self.daemon)


@dataclass(frozen=True)
class Load:
    requests: int
    requests_per_second: float
    p99_ms: float
    errors: str
    """wrk's socket errors and non-2xx count when there were any, else empty."""


@dataclass(frozen=True)
class Turn:
    """One setup under load for one round."""

    load: Load
    cpu_us: float
    """CPU time of all the setup's processes per request, in microseconds."""
    manager_cpu_us: float
    """The part of cpu_us spent outside gunicorn (Stack's daemons, circusd)."""


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(out: str) -> Load:
    """Requests/s, p99 and errors from `wrk --latency` output."""
    total = re.search(r"^\s+(\d+) requests in ", out, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if not total or not rps or not p99:
        raise RuntimeError(f"wrk printed no request count, requests/s or p99:\n{out}")
    errors = [line.strip() for line in out.splitlines() if "errors" in line or "Non-2xx" in line]
    p99_ms = float(p99[1]) * UNITS_MS[p99[2]]
    return Load(int(total[1]), float(rps[1]), p99_ms, "; ".join(errors))


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def load(wrk: str, url: str, seconds: float, ns: argparse.Namespace) -> Load:
    argv = [wrk, "--threads", str(ns.threads), "--connections", str(ns.connections),
            "--duration", f"{seconds:g}s", "--latency", url]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(proc.stdout)


def listening_inode(port: int) -> int:
    """The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        for row in table.read().splitlines()[1:]:
            fields = row.split()
            if fields[1] == local and fields[3] == "0A":  # TCP_LISTEN
                return int(fields[9])
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def socket_setup(port: int) -> str:
    """How the listening socket on `port` is set up, read from a copy of a worker's fd.

    The copy comes through pidfd_getfd(2) (as root), so the options are those of
    the very socket the workers accept on, whoever bound it.
    """
    inode = listening_inode(port)
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            for entry in os.scandir(f"/proc/{proc.pid}/fd"):
                if os.readlink(entry.path) == f"socket:[{inode}]":
                    return _describe(proc.pid, int(entry.name), port)
    return f"socket inode {inode} not found in this bench's processes"


def _describe(pid: int, target_fd: int, port: int) -> str:
    pidfd = os.pidfd_open(pid)
    try:
        fd = LIBC.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)
        if fd < 0:
            return f"pidfd_getfd failed: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(pidfd)
    with socket.socket(fileno=fd) as sock:
        reuseaddr = sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        reuseport = sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        defer = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)
        nonblocking = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    ss = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    fields = ss.stdout.split()
    backlog = fields[2] if len(fields) > 2 else "?"
    return (
        f"backlog {backlog}, SO_REUSEADDR {'on' if reuseaddr else 'off'}, "
        f"SO_REUSEPORT {'on' if reuseport else 'off'}, "
        f"{'non-blocking' if nonblocking else 'blocking'}, TCP_DEFER_ACCEPT {defer}"
    )


def cpu_by_kind(procs: list[psutil.Process]) -> tuple[float, float]:
    """(CPU seconds of the gunicorn processes, of the others) among `procs` still alive."""
    serving = other = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            spent = cpu_seconds(proc.pid)
            if any("gunicorn" in part for part in proc.cmdline()[:2]):
                serving += spent
            else:
                other += spent
    return serving, other


def serving_sessions() -> int:
    """In how many sessions the gunicorn processes run.

    With the kernel's autogroup scheduling (kernel.sched_autogroup_enabled, on in
    Debian), each session is one scheduling group: on a busy machine a setup whose
    workers lead sessions of their own gets a CPU share per worker, and one whose
    workers share a session gets one share for all of them.
    """
    sessions = set()
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            if any("gunicorn" in part for part in proc.cmdline()[:2]):
                sessions.add(os.getsid(proc.pid))
    return len(sessions)


def one_turn(setup: Setup, root: Path, wrk: str, ns: argparse.Namespace) -> tuple[Turn, str]:
    """Start `setup` alone, warm it up, load it for ns.seconds, stop it; and its socket setup."""
    reserved = reserve_port()  # each setup is told its port
    port = reserved.port
    url = f"http://127.0.0.1:{port}/"
    root.mkdir()
    try:
        setup.start(root, port)
        poll(lambda: answers(url), timeout=60, interval=0.1, what=f"{setup.label} to serve")
        load(wrk, url, WARMUP, ns)
        procs = psutil.Process().children(recursive=True)  # the setup's, wrk is not running
        serving, other = cpu_by_kind(procs)
        got = load(wrk, url, ns.seconds, ns)
        serving_after, other_after = cpu_by_kind(procs)
        per_request = 1e6 / max(got.requests, 1)
        manager = (other_after - other) * per_request
        turn = Turn(got, (serving_after - serving) * per_request + manager, manager)
        return turn, f"{socket_setup(port)}; gunicorn in {serving_sessions()} session(s)"
    finally:
        try:
            setup.stop()
        finally:
            kill_descendants()  # whatever a setup left: the next one runs alone
            reserved.close()


def report(results: dict[str, list[Turn]], sockets: dict[str, str], ns: argparse.Namespace) -> str:
    med = statistics.median
    anchor = results["gunicorn alone"]
    anchor_rps = med(t.load.requests_per_second for t in anchor)
    anchor_p99 = med(t.load.p99_ms for t in anchor)
    anchor_cpu = med(t.cpu_us for t in anchor)
    lines = [
        f"| setup ({ns.workers} sync workers) | requests/s | p99 latency | "
        "CPU per request (of which the manager) | vs gunicorn alone: requests/s, p99, CPU |",
        "|---|---|---|---|---|",
    ]
    for label, turns in results.items():
        rps = med(t.load.requests_per_second for t in turns)
        p99 = med(t.load.p99_ms for t in turns)
        cpu = med(t.cpu_us for t in turns)
        manager = med(t.manager_cpu_us for t in turns)
        lines.append(
            f"| {label} | {rps:,.0f} | {p99:.2f} ms | {cpu:,.0f} µs ({manager:,.1f} µs) | "
            f"{rps / anchor_rps:.3f}x, {p99 / anchor_p99:.3f}x, {cpu / anchor_cpu:.3f}x |"
        )
    lines.append("")
    lines.append(
        f"Medians of {ns.rounds} rounds of {ns.seconds:g} s, wrk --threads {ns.threads} "
        f"--connections {ns.connections}, each setup alone on the machine in turn. CPU per "
        "request: user + system time of every process of the setup (wrk aside) over the load, "
        "divided by the requests served."
    )
    stack = results["Stack"]
    rps_ratio = med(t.load.requests_per_second for t in stack) / anchor_rps
    p99_ratio = med(t.load.p99_ms for t in stack) / anchor_p99
    verdict = "met" if rps_ratio >= 0.98 and p99_ratio <= 1.05 else "MISSED"
    lines.append(
        f"Target (Stack >= 0.98x requests/s and <= 1.05x p99 of gunicorn alone): {verdict} "
        f"({rps_ratio:.3f}x, {p99_ratio:.3f}x)."
    )
    for label, setup in sockets.items():
        lines.append(f"{label}: listening socket {setup}.")
    for label, turns in results.items():
        for number, turn in enumerate(turns, 1):
            if turn.load.errors:
                lines.append(f"{label}, round {number}: {turn.load.errors}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (N)")
    parser.add_argument("--seconds", type=float, default=30.0, help="load per turn")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each setup")
    parser.add_argument("--threads", type=int, default=2, help="wrk's threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="also N gunicorn -w 1 without a manager, and one gunicorn -w N under Stack",
    )
    ns = parser.parse_args()
    wrk = debian_tool("wrk", "wrk")
    gunicorn = venv("gunicorn-27", GUNICORN) / "gunicorn"
    circus = venv("circus-0.19", CIRCUS)
    setups: list[Setup] = [
        GunicornAlone(gunicorn, ns.workers),
        UnderStack(gunicorn, ns.workers),
        UnderCircus(gunicorn, circus, ns.workers),
    ]
    if ns.layouts:
        setups.append(SharedWithoutManager(gunicorn, ns.workers))
        setups.append(UnderStack(gunicorn, ns.workers, one_master=True))
    results: dict[str, list[Turn]] = {setup.label: [] for setup in setups}
    sockets: dict[str, str] = {}
    become_subreaper()  # orphans of a setup re-parent here, so nothing outlives its turn
    with tempfile.TemporaryDirectory(prefix="stack-throughput-") as tmp, interruptible():
        try:
            for round_no in range(ns.rounds):
                shift = round_no % len(setups)
                for number, setup in enumerate(setups[shift:] + setups[:shift]):
                    turn, sockets[setup.label] = one_turn(
                        setup, Path(tmp) / f"r{round_no}-{number}", wrk, ns
                    )
                    results[setup.label].append(turn)
                    print(f"bench: round {round_no + 1}/{ns.rounds} {setup.label}: "
                          f"{turn.load.requests_per_second:,.0f} requests/s, "
                          f"p99 {turn.load.p99_ms:.2f} ms, CPU {turn.cpu_us:,.0f} µs/request",
                          file=sys.stderr)  # fmt: skip
        except KeyboardInterrupt:
            sys.exit("bench: interrupted; every process it started is stopped")
    print(report(results, sockets, ns))


if __name__ == "__main__":
    main()
