"""Stack beside Circus 0.19 and Supervisor 4.3 on the same work, in one run.

Run: .venv/bin/python bench/compare.py [--rounds 5] [--respawns 30] [--idle-seconds 60]

Each manager runs one program of `sleep 3600` workers with its shipped defaults
and is driven through its own CLI, as a user would: `stackctl scale sleepers N`;
`circusctl start|stop sleepers` and `supervisorctl start|stop 'sleepers:*'` on a
program of 100 that does not start on its own (Supervisor cannot change a count
at run time, and a stopped Circus watcher ignores a new numprocesses until it is
started). The figures, for the three in one run:

(a) CLI started -> all 100 workers have exec'd `sleep` (seen in /proc as children
    of the manager), beside a bare subprocess.Popen loop starting the same 100
    processes in the same run; median of --rounds, tools in turn;
(b) respawn after SIGKILL of the only worker: median and p95 over --respawns
    kills. Between kills the bench waits 1.2 s (Supervisor counts a start as
    failed below its startsecs of 1 s) plus a random 0-5 s, so that kills do not
    fall at a fixed phase of a manager's polling period (Circus checks its
    watchers every check_delay = 5 s);
(c) RSS and USS of the process that parents the workers, with 100 children;
(d) idle CPU of that process over --idle-seconds, with 100 children.

For Stack, the manager is the agent; the controller beside it is reported in a
note below the table. The three managers run side by side for the whole run,
everything on 127.0.0.1 or unix sockets, and the work of (a) and (b) is done by
one manager at a time while the other two sit idle. Every process the bench
started is stopped when it ends, on Ctrl-C or SIGTERM too.

Circus and Supervisor are installed from PyPI into their own virtualenvs under
bench/.cache/ on first use (the pins are in bench/installs.py). Circus
0.19.0 installs and runs on Python 3.11 with the current pyzmq 27.3.0 and
tornado 6.6.1, so no older release of either is needed; they are pinned so that
figures stay comparable. Prints one table with a ratio to Stack; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installs import CIRCUS, SUPERVISOR, venv
from bench.measure import (
    SLEEP,
    Memory,
    bare_popen_loop,
    idle_cpu_percent,
    memory_of,
    percentile,
    poll,
    python_floor,
    sleepers_of,
)
from bench.teardown import interruptible, stop_daemon
from tests.support.cluster import Cluster
from tests.support.processes import Daemon, become_subreaper, kill_descendants

COUNT = 100
CIRCUS_CHECK_DELAY = 5.0
"""Circus's default seconds between two checks of its watchers (it reaps on this poll)."""
SETTLE = 1.2
"""Seconds a respawned worker runs before the next kill (Supervisor's startsecs, plus a margin)."""
CLI_TIMEOUT = 120.0


class Manager(Protocol):
    """A process manager under test: one program of `sleep` workers."""

    label: str

    @property
    def pid(self) -> int:
        """The process that parents the workers."""
        ...

    def start(self) -> None: ...

    def set_count(self, count: int) -> None:
        """Ask for `count` workers through the manager's CLI; returns when the CLI exits 0."""
        ...

    def read_status(self) -> None:
        """Ask the manager's CLI for the status of the program."""
        ...

    def stop(self) -> None: ...


def run_cli(argv: Sequence[str], what: str, ok: tuple[int, ...] = (0,)) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    if proc.returncode not in ok:
        raise RuntimeError(f"{what}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr}")


def answers(argv: Sequence[str]) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=CLI_TIMEOUT).returncode == 0


@dataclass
class StackManager:
    root: Path
    label: str = "Stack"
    cluster: Cluster = field(init=False)

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.root / "stack", agent_options=())  # the agent's defaults

    @property
    def pid(self) -> int:
        return self.cluster.agent.pid

    @property
    def controller_pid(self) -> int:
        return self.cluster.controller.pid

    def start(self) -> None:
        self.cluster.start()
        stack_file = self.root / "sleepers.toml"
        stack_file.write_text(f'[watchers.sleepers]\ncmd = "{SLEEP} 3600"\nnumprocesses = 0\n')
        self.cluster.stackctl("apply", str(stack_file), check=True)

    def set_count(self, count: int) -> None:
        self.cluster.stackctl("scale", "sleepers", str(count), timeout=CLI_TIMEOUT, check=True)

    def read_status(self) -> None:
        self.cluster.stackctl("status", "sleepers", timeout=CLI_TIMEOUT, check=True)

    def stop(self) -> None:
        self.cluster.close()


class PythonManager:
    """Circus or Supervisor: one daemon from its virtualenv, driven by its ctl command."""

    label: str
    daemon: Daemon
    probe: tuple[str, ...]
    """A ctl command that succeeds once the daemon answers."""

    def ctl(self, *args: str) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def start(self) -> None:
        self.daemon.start()

        def up() -> bool:
            if not self.daemon.alive():
                raise RuntimeError(f"{self.label} exited:\n{self.daemon.output()}")
            return answers(self.ctl(*self.probe))

        poll(up, timeout=30, interval=0.2, what=f"{self.label} to answer")

    def stop(self) -> None:
        stop_daemon(self.daemon, grace=15)


class CircusManager(PythonManager):
    label = "Circus 0.19"
    probe = ("list",)

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.endpoint = f"ipc://{root}/circus-control"
        config = root / "circus.ini"
        config.write_text(
            "[circus]\n"
            f"endpoint = {self.endpoint}\n"
            f"pubsub_endpoint = ipc://{root}/circus-pubsub\n"
            "[watcher:sleepers]\n"
            f"cmd = {SLEEP} 3600\n"
            f"numprocesses = {COUNT}\nautostart = false\n"
        )
        self.numprocesses = COUNT
        self.daemon = Daemon([str(bin_dir / "circusd"), str(config)], root / "circusd.log")

    def ctl(self, *args: str) -> list[str]:
        return [str(self.bin / "circusctl"), "--endpoint", self.endpoint, "--timeout", "30", *args]

    def set_count(self, count: int) -> None:
        """`stop` for none; otherwise `start` (a stopped watcher ignores a new numprocesses)."""
        if count == 0:
            run_cli(self.ctl("stop", "sleepers"), self.label)
            return
        if count != self.numprocesses:
            run_cli(self.ctl("set", "sleepers", "numprocesses", str(count)), self.label)
            self.numprocesses = count
        run_cli(self.ctl("start", "sleepers"), self.label)

    def read_status(self) -> None:
        run_cli(self.ctl("status", "sleepers"), self.label)


class SupervisorManager(PythonManager):
    label = "Supervisor 4.3"
    probe = ("pid",)

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.config = root / "supervisord.conf"
        sock = root / "supervisor.sock"
        (root / "supervisor-logs").mkdir()
        self.config.write_text(
            f"[unix_http_server]\nfile = {sock}\n"
            "[supervisord]\n"
            f"logfile = {root}/supervisord.log\npidfile = {root}/supervisord.pid\n"
            f"childlogdir = {root}/supervisor-logs\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl = unix://{sock}\n"
            "[program:sleepers]\n"
            f"command = {SLEEP} 3600\nnumprocs = {COUNT}\n"
            "process_name = %(program_name)s_%(process_num)03d\nautostart = false\n"
        )
        self.daemon = Daemon(
            [str(bin_dir / "supervisord"), "--nodaemon", "-c", str(self.config)],
            root / "supervisord.out",
        )

    def ctl(self, *args: str) -> list[str]:
        return [str(self.bin / "supervisorctl"), "-c", str(self.config), *args]

    def set_count(self, count: int) -> None:
        if count == 0:
            run_cli(self.ctl("stop", "sleepers:*"), self.label)
        elif count == COUNT:
            run_cli(self.ctl("start", "sleepers:*"), self.label)
        else:
            names = [f"sleepers:sleepers_{i:03d}" for i in range(count)]
            run_cli(self.ctl("start", *names), self.label)

    def read_status(self) -> None:
        # exit status 3 says that some process of the group is not running, as asked
        run_cli(self.ctl("status", "sleepers:*"), self.label, ok=(0, 3))


# -- the measurements ----------------------------------------------------------


def exactly(manager: Manager, count: int, timeout: float = 60.0) -> None:
    poll(
        lambda: len(sleepers_of(manager.pid)) == count,
        timeout=timeout,
        interval=0.01,
        what=f"{manager.label} to have {count} workers",
    )


def time_up(manager: Manager) -> float:
    """Seconds from starting the CLI to COUNT sleepers under the manager; back to 0 after."""
    failure: list[BaseException] = []

    def cli() -> None:
        try:
            manager.set_count(COUNT)
        except BaseException as exc:  # re-raised below, in the measuring thread
            failure.append(exc)

    start = time.perf_counter()
    thread = threading.Thread(target=cli, daemon=True)
    thread.start()
    poll(
        lambda: len(sleepers_of(manager.pid)) >= COUNT or bool(failure),
        timeout=CLI_TIMEOUT,
        what=f"{manager.label} to run {COUNT} workers",
    )
    took = time.perf_counter() - start
    thread.join(CLI_TIMEOUT)
    if failure:
        raise failure[0]
    manager.set_count(0)
    exactly(manager, 0)
    return took


def respawn_once(manager: Manager, timeout: float = 30.0) -> float:
    """Seconds from SIGKILL of the manager's only worker to its replacement having exec'd."""
    (old,) = sleepers_of(manager.pid)
    start = time.perf_counter()
    os.kill(old, signal.SIGKILL)

    def replaced() -> bool:
        now = sleepers_of(manager.pid)
        return len(now) == 1 and now[0] != old

    poll(replaced, timeout=timeout, interval=0.0002, what=f"{manager.label} to respawn")
    return time.perf_counter() - start


@dataclass
class Figures:
    up: dict[str, list[float]] = field(default_factory=dict)
    status: dict[str, list[float]] = field(default_factory=dict)
    bare: list[float] = field(default_factory=list)
    respawn: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    controller_memory: Memory | None = None
    controller_cpu: float = 0.0


def measure(managers: list[Manager], stack: StackManager, ns: argparse.Namespace) -> Figures:
    figures = Figures()
    for round_no in range(ns.rounds):
        figures.bare.append(bare_popen_loop(COUNT))
        turn = managers[round_no % len(managers) :] + managers[: round_no % len(managers)]
        for manager in turn:
            figures.up.setdefault(manager.label, []).append(time_up(manager))
            start = time.perf_counter()
            manager.read_status()
            figures.status.setdefault(manager.label, []).append(time.perf_counter() - start)
        print(f"bench: up round {round_no + 1}/{ns.rounds} done", file=sys.stderr)

    for manager in managers:
        manager.set_count(1)
        exactly(manager, 1)
    for kill_no in range(ns.respawns):
        time.sleep(SETTLE + random.uniform(0, CIRCUS_CHECK_DELAY))  # see the docstring
        for manager in managers:
            figures.respawn.setdefault(manager.label, []).append(respawn_once(manager))
        if (kill_no + 1) % 10 == 0:
            print(f"bench: {kill_no + 1}/{ns.respawns} kills done", file=sys.stderr)

    for manager in managers:
        manager.set_count(0)  # Supervisor refuses to start a worker already running
        exactly(manager, 0)
        manager.set_count(COUNT)
        exactly(manager, COUNT)
    time.sleep(5)  # let start-up work and the first stats samples pass
    pids = [m.pid for m in managers] + [stack.controller_pid]
    print(f"bench: measuring idle CPU over {ns.idle_seconds:g} s", file=sys.stderr)
    *cpu, figures.controller_cpu = idle_cpu_percent(pids, ns.idle_seconds)
    for manager, percent in zip(managers, cpu, strict=True):
        figures.cpu[manager.label] = percent
        figures.memory[manager.label] = memory_of(manager.pid)
    figures.controller_memory = memory_of(stack.controller_pid)
    return figures


# -- the table ------------------------------------------------------------------


def report(figures: Figures, labels: list[str], ns: argparse.Namespace) -> str:
    med = statistics.median
    rows: list[tuple[str, Callable[[str], float], str, str]] = [
        (f"CLI -> {COUNT} workers running (median of {ns.rounds})",
         lambda t: med(figures.up[t]) * 1000, "ms",
         f"bare Popen loop {med(figures.bare) * 1000:,.1f} ms"),
        (f"of which the CLI's own cost: a status read (median of {ns.rounds})",
         lambda t: med(figures.status[t]) * 1000, "ms", ""),
        (f"respawn after SIGKILL, median of {ns.respawns}",
         lambda t: med(figures.respawn[t]) * 1000, "ms", ""),
        (f"respawn after SIGKILL, p95 of {ns.respawns}",
         lambda t: percentile(figures.respawn[t], 0.95) * 1000, "ms", ""),
        (f"manager RSS with {COUNT} children", lambda t: figures.memory[t].rss, "MiB",
         f"python3 alone {python_floor():.1f} MiB, importing grpc "
         f"{python_floor('import grpc'):.1f} MiB"),
        (f"manager USS with {COUNT} children", lambda t: figures.memory[t].uss, "MiB", ""),
        (f"manager idle CPU with {COUNT} children ({ns.idle_seconds:g} s)",
         lambda t: figures.cpu[t], "%", ""),
    ]  # fmt: skip
    head = ["figure", *labels, "baseline in the same run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, value_of, unit, baseline in rows:
        stack = value_of(labels[0])
        cells = [f"{number(stack, unit)}"]
        cells += [f"{number(value_of(t), unit)} ({ratio(value_of(t), stack)})" for t in labels[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {baseline} |")
    controller = figures.controller_memory
    assert controller is not None
    lines.append("")
    lines.append(
        f"Stack's manager is its agent; the controller beside it had RSS {controller.rss:.1f} MiB "
        f"(USS {controller.uss:.1f} MiB) and idle CPU {figures.controller_cpu:.2f} %. "
        "Ratios are each tool's figure over Stack's."
    )
    return "\n".join(lines)


def number(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.2f} %"
    return f"{value:,.1f} {unit}"


def ratio(value: float, stack: float) -> str:
    return f"{value / stack:,.2f}x" if stack > 0 else "n/a"


# -- running it -------------------------------------------------------------------


@contextlib.contextmanager
def stopped_on_exit(managers: list[Manager]) -> Iterator[None]:
    """Stop every manager (and whatever is left below this process) however the run ends."""
    with interruptible():
        try:
            yield
        finally:
            for manager in reversed(managers):
                with contextlib.suppress(Exception):
                    manager.stop()
            kill_descendants()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (a)")
    parser.add_argument("--respawns", type=int, default=30, help="kills of (b)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="window of (d)")
    ns = parser.parse_args()
    circus_bin = venv("circus-0.19", CIRCUS)
    supervisor_bin = venv("supervisor-4.3", SUPERVISOR)
    become_subreaper()  # orphans of a manager re-parent here, so nothing outlives the run

    with tempfile.TemporaryDirectory(prefix="stack-compare-") as tmp:
        root = Path(tmp)
        for name in ("circus", "supervisor"):
            (root / name).mkdir()
        stack = StackManager(root)
        managers: list[Manager] = [
            stack,
            CircusManager(root / "circus", circus_bin),
            SupervisorManager(root / "supervisor", supervisor_bin),
        ]
        started: list[Manager] = []
        try:
            with stopped_on_exit(started):
                for manager in managers:
                    started.append(manager)
                    manager.start()
                figures = measure(managers, stack, ns)
        except KeyboardInterrupt:
            sys.exit("bench: interrupted; every process it started is stopped")
    print(report(figures, [m.label for m in managers], ns))


if __name__ == "__main__":
    main()
