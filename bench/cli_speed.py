"""How quick the CLIs are: stackctl beside circusctl and supervisorctl, in one run.

Run: .venv/bin/python bench/cli_speed.py [--rounds 31] [--workers 4]

Each tool's daemon runs the same program of `sleep 3600` workers (Stack: a controller and
an agent on a unix socket; Circus 0.19 and Supervisor 4.3 from their own virtualenvs under
bench/.cache/, installed on first use by bench/installs.py). Then, in every round and in
turn, each tool's CLI is run as a user runs it (the installed console script, a fresh
process each time):

- `--help`, which stackctl answers from its command table without loading typer;
- `status` of the running daemon (stackctl: grpc, no typer, no rich);
- `stackctl status` straight to gRPC's own socket (`.controller.sock.grpc/grpc.sock`,
  which only the controller's user may reach), beside the same call through the
  public socket, where the controller checks the peer's credentials and relays the
  bytes: what the check and the relay cost;
- for reference, `stackctl --version`, `stackctl scale sleepers N` (a command that
  changes something, run directly like status), `stackctl stauts` (a typo: typer loads
  to say so) and the interpreter alone (`python -c pass`).

Every command runs once first, uncounted, and the CLIs run without PYTHONDONTWRITEBYTECODE
(which some CI and sandbox environments set): Python then caches the byte code of a
checkout's modules in __pycache__ on first use, as it does for any user, and pip compiled
Circus's and Supervisor's at install time.

Prints the median wall time and the median CPU time (user + system, from wait4) of each,
and each tool's ratio to stackctl. The targets: `stackctl --help` within 120 ms, and
`stackctl status` no slower than `circusctl status`. Asserts nothing; medians of many
interleaved rounds make the figures comparable on a busy machine, the CPU times even more.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare import (
    CircusManager,
    Manager,
    StackManager,
    SupervisorManager,
    stopped_on_exit,
)
from bench.installs import CIRCUS, SUPERVISOR, venv
from tests.support.processes import become_subreaper

HELP_TARGET_MS = 120.0
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
"""The CLIs' environment: byte code is cached, as on a user's machine."""


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, argv: Sequence[str], ok: tuple[int, ...] = (0,)) -> None:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode()}")

    def text(self) -> str:
        return f"{median_ms(self.wall):,.1f} ms (cpu {median_ms(self.cpu):,.1f})"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


@contextlib.contextmanager
def daemons(root: Path, workers: int) -> Iterator[list[Manager]]:
    """The three daemons, each running `workers` sleepers; stopped however the run ends."""
    circus_bin = venv("circus-0.19", CIRCUS)
    supervisor_bin = venv("supervisor-4.3", SUPERVISOR)
    for name in ("circus", "supervisor"):
        (root / name).mkdir()
    managers: list[Manager] = [
        StackManager(root),
        CircusManager(root / "circus", circus_bin),
        SupervisorManager(root / "supervisor", supervisor_bin),
    ]
    started: list[Manager] = []
    with stopped_on_exit(started):
        for manager in managers:
            started.append(manager)
            manager.start()
            manager.set_count(workers)
        yield managers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=31, help="rounds of every command")
    parser.add_argument("--workers", type=int, default=4, help="workers each daemon runs")
    ns = parser.parse_args()
    stackctl = str(Path(sys.executable).with_name("stackctl"))
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="stack-cli-speed-") as tmp:
        root = Path(tmp)
        try:
            with daemons(root, ns.workers) as (stack, circus, supervisor):
                assert isinstance(stack, StackManager)
                assert isinstance(circus, CircusManager)
                assert isinstance(supervisor, SupervisorManager)
                address = stack.cluster.address
                direct = address.replace("controller.sock", ".controller.sock.grpc/grpc.sock")
                commands: dict[str, tuple[list[str], tuple[int, ...]]] = {
                    "python -c pass": ([sys.executable, "-c", "pass"], (0,)),
                    "stackctl --help": ([stackctl, "--help"], (0,)),
                    "circusctl --help": ([str(circus.bin / "circusctl"), "--help"], (0,)),
                    "supervisorctl --help": (supervisor.ctl("--help"), (0,)),
                    "stackctl status": ([stackctl, "--controller", address, "status"], (0,)),
                    "stackctl status direct": (
                        [stackctl, "--controller", direct, "status"],
                        (0,),
                    ),
                    "circusctl status": (circus.ctl("status"), (0,)),
                    "supervisorctl status": (supervisor.ctl("status"), (0, 3)),
                    "stackctl --version": ([stackctl, "--version"], (0,)),
                    "stackctl scale": (
                        [stackctl, "--controller", address, "scale", "sleepers", str(ns.workers)],
                        (0,),
                    ),
                    "stackctl stauts": ([stackctl, "--controller", address, "stauts"], (2,)),
                }
                for argv, ok in commands.values():  # warm-up: caches filled, not counted
                    Timing().add(argv, ok)
                timings = {name: Timing() for name in commands}
                for round_no in range(ns.rounds):
                    for name, (argv, ok) in commands.items():
                        timings[name].add(argv, ok)
                    if (round_no + 1) % 10 == 0:
                        print(f"bench: {round_no + 1}/{ns.rounds} rounds", file=sys.stderr)
        except KeyboardInterrupt:
            sys.exit("bench: interrupted; every process it started is stopped")
    print(report(timings, ns))


def report(timings: dict[str, Timing], ns: argparse.Namespace) -> str:
    def ratio(name: str, stack: str) -> str:
        mine, theirs = median_ms(timings[stack].wall), median_ms(timings[name].wall)
        return f"{theirs / mine:.2f}x" if mine else "n/a"

    floor = timings["python -c pass"].text()
    rows = [
        "| command | stackctl | circusctl 0.19 | supervisorctl 4.3 | baseline in the same run |",
        "|---|---|---|---|---|",
        f"| `--help` | {timings['stackctl --help'].text()} | "
        f"{timings['circusctl --help'].text()} ({ratio('circusctl --help', 'stackctl --help')}) | "
        f"{timings['supervisorctl --help'].text()} "
        f"({ratio('supervisorctl --help', 'stackctl --help')}) | "
        f"`python -c pass` {floor} |",
        f"| `status` ({ns.workers} workers) | {timings['stackctl status'].text()} | "
        f"{timings['circusctl status'].text()} ({ratio('circusctl status', 'stackctl status')})"
        f" | {timings['supervisorctl status'].text()} "
        f"({ratio('supervisorctl status', 'stackctl status')}) | |",
        f"| `stackctl status` straight to gRPC's socket, no peer check or relay | "
        f"{timings['stackctl status direct'].text()} | | | `stackctl status` above |",
        f"| `stackctl --version` | {timings['stackctl --version'].text()} | | | |",
        f"| `stackctl scale sleepers {ns.workers}` | {timings['stackctl scale'].text()} | | | |",
        f"| `stackctl stauts` (a typo: typer says so) | {timings['stackctl stauts'].text()} "
        "| | | |",
    ]
    help_ms = median_ms(timings["stackctl --help"].wall)
    status_ms = median_ms(timings["stackctl status"].wall)
    circus_ms = median_ms(timings["circusctl status"].wall)
    verdicts = [
        f"stackctl --help: {help_ms:.1f} ms, target {HELP_TARGET_MS:.0f} ms: "
        + ("met" if help_ms <= HELP_TARGET_MS else "MISSED"),
        f"stackctl status: {status_ms:.1f} ms against circusctl status {circus_ms:.1f} ms: "
        + ("met" if status_ms <= circus_ms else "MISSED"),
    ]
    relayed = median_ms(timings["stackctl status"].wall) - median_ms(
        timings["stackctl status direct"].wall
    )
    relayed_cpu = median_ms(timings["stackctl status"].cpu) - median_ms(
        timings["stackctl status direct"].cpu
    )
    verdicts.append(
        f"the local socket's peer check and relay: {relayed:+.1f} ms on stackctl status "
        f"(cpu {relayed_cpu:+.1f} ms), medians of the same run"
    )
    medians = f"Medians of {ns.rounds} interleaved rounds; ratios are each tool's over stackctl's."
    return "\n".join([*rows, "", medians, *verdicts])


if __name__ == "__main__":
    main()
