"""One chaos run: the fleet up, the load on, rounds of faults, a check after each, a report.

The shape follows what randomized fault testing of distributed stores taught (etcd's
functional tester, Jepsen): a seeded generator of faults and client operations, a
history that records every operation with its outcome (acknowledged, refused, unknown),
a bounded wait for recovery after each round, and checkers that compare what the system
holds with what the history allows. What Stack must hold is checked against the kernel
(processes by namespace, their environment, listening sockets), never against Stack's own
report: the controllers are read only for the desired state, which the history judges.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import subprocess
import threading
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.chaoskit import checks, kernel, load
from bench.chaoskit.checks import Desired, History, Licences
from bench.chaoskit.faults import Journal, Player
from bench.chaoskit.plan import OUTAGES, Op, Round, Settled, plan_round
from bench.chaoskit.stackfile import EACH, RULES, WEB, render
from bench.chaoskit.topology import (
    CONTROLLERS,
    HOSTS,
    MEMBERS,
    Fleet,
    Timing,
    address_of,
)  # fmt: skip
from stack.v1 import admin_pb2
from tests.support.processes import PYTHON, stack_env


@dataclass(frozen=True)
class Settings:
    seed: int
    duration: float
    soak: bool
    root: Path
    settle_timeout: float = 90.0
    timing: Timing = field(default_factory=Timing)

    @property
    def sample_every(self) -> float:
        return 5.0 if self.soak else 2.0


@dataclass
class Violation:
    round: int
    check: str
    text: str
    logs: str = ""


CHECKS = (
    "settles to the desired count and placement",
    "acknowledged writes are in the state",
    "no worker restarted by the control plane",
    "no orphan, stray or zombie process",
    "every daemon up or restarted by the harness",
    "failed requests only within the limits",
    "no daemon grows after warm-up",
)
SETTLED, WRITES, RESTARTS, HYGIENE, DAEMONS, REQUESTS, GROWTH = CHECKS


@dataclass
class Usage:
    at: float
    name: str
    pid: int
    usage: kernel.Usage
    work: str = ""
    """What the daemon was doing: a controller "leader" or "follower" (what its sockets
    and memory follow); growth is judged like for like."""


class Run:
    """A chaos run from set-up to report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tag = f"stackchaos-{settings.seed}"
        self.fleet = Fleet(settings.root, self.tag, settings.timing)
        counts = {name: rule.initial for name, rule in RULES.items()}
        self.history = History.start(counts, dict.fromkeys(RULES, 1), HOSTS)
        self.journal = Journal()
        self.player = Player(self.fleet, self.history, self.journal, settings.seed)
        self.rng = random.Random(settings.seed)
        self.passed: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.violations: list[Violation] = []
        self.rounds: list[tuple[Round, float, float]] = []
        """(round, started, checked) of every round played."""
        self.faults_by_kind: Counter[str] = Counter()
        self.convergence: dict[str, list[float]] = defaultdict(list)
        self.samples: list[load.Sample] = []
        self.usage: list[Usage] = []
        self.desired: Desired | None = None
        self.identities: dict[tuple[str, int], checks.Identity] = {}
        self.last_check = 0.0
        self.client: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._log_marks: dict[str, int] = {}
        self._exits: list[str] = []
        """Daemons found exited on their own since the last check."""
        self.requests = load.Results(0, (), False)
        self.allowed: Counter[str] = Counter()
        """Failed requests by the limit that allows them."""
        self.unjudged: list[str] = []
        """Daemons a soak could not judge: no work in common between its two windows."""

    @property
    def client_out(self) -> Path:
        return self.settings.root / "client.jsonl"

    # -- set-up -----------------------------------------------------------

    def set_up(self) -> None:
        fleet = self.fleet.start()
        path = self.settings.root / "stack-v4.toml"
        path.write_text(render(self.tag, self.history.latest_counts, self.history.latest_versions))
        result = fleet.stackctl("apply", "--yes", str(path))
        if result.code != 0:
            raise RuntimeError(f"the first apply failed: {result}")
        self._mark_logs()
        problems = self._settle(time.monotonic() + 120)
        if problems:
            raise RuntimeError("the stack never came up:\n" + "\n".join(problems))
        assert self.desired is not None
        self.history.resolve(self.desired)
        self.identities = checks.identities(self._snapshot(), HOSTS)
        self.last_check = time.monotonic()
        targets = [f"{h}={address_of(h)}" for h in HOSTS]
        self.client = fleet.children.popen(
            fleet.nodes["client"].argv([PYTHON, "-m", "bench.chaoskit.load",
                                        "--out", str(self.client_out), *targets]),
            env=stack_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for target in (self._monitor, self._sample):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self.client is not None and self.client.poll() is None:
            self.client.kill()
            self.client.wait(10)
        self.fleet.close()

    # -- the rounds -------------------------------------------------------

    def play(self) -> None:
        self.started = time.monotonic()
        end = self.started + self.settings.duration
        number = 0
        while time.monotonic() < end:
            number += 1
            drained = self.desired.drained if self.desired is not None else frozenset()
            round_ = plan_round(
                self.rng, number, self.settings.soak, HOSTS, CONTROLLERS, MEMBERS,
                self.settings.timing.reschedule_after + self.settings.timing.agent_timeout + 3,
                Settled(drained),
            )  # fmt: skip
            self._round(round_)
            if round_.quiet:
                self._stop.wait(max(0.0, min(round_.quiet, end - time.monotonic())))

    def _round(self, round_: Round) -> None:
        started = time.monotonic()
        self._mark_logs()
        plan = "; ".join([f.describe() for f in round_.faults] + [o.describe() for o in round_.ops])
        self.journal.say(f"round {round_.number}: {plan}")
        for fault in round_.faults:
            self.faults_by_kind[fault.kind] += 1
        healed = self.player.play(round_)
        self.check(round_.number, healed, since=started)
        settled = self.last_check
        for kind in {f.kind for f in round_.faults}:
            self.convergence[kind].append(settled - healed)
        self.rounds.append((round_, started, settled))

    def finish(self) -> None:
        """The end: the load stopped, one more check, the requests judged."""
        assert self.client is not None
        self.client.terminate()
        try:
            self.client.wait(20)
        except subprocess.TimeoutExpired:
            self.client.kill()
            self.client.wait(10)
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        # One more look at the sockets, now that no request is on its way: it brackets the
        # client's last requests, which the monitor's last look (on a loaded machine,
        # seconds before) may not (chaos seed 5492: a drained host's last refusals).
        self._sample_sockets()
        self.check(len(self.rounds) + 1, time.monotonic(), since=self.last_check, final=True)
        self.requests = load.read(str(self.client_out))
        self._judge_requests()
        if self.settings.soak:
            self._judge_growth()

    # -- checking ---------------------------------------------------------

    def check(self, number: int, healed: float, since: float, final: bool = False) -> None:
        """Wait (bounded) for the fleet to settle, then check every invariant once."""
        self._exits = []
        problems = self._settle(healed + self.settings.settle_timeout)
        now = time.monotonic()
        snap = self._snapshot()
        desired = self.desired
        self._verdict(number, SETTLED, [p for p in problems if not p.startswith("hygiene: ")])
        self._verdict(number, HYGIENE, checks.hygiene(snap, self._daemon_pids()))
        self._verdict(number, DAEMONS, self._exits)
        if desired is not None:
            self._verdict(number, WRITES, self.history.resolve(desired))
        after = checks.identities(snap, HOSTS)
        self._verdict(number, RESTARTS, checks.restarts(self.identities, after,
                                                         self._licences(since)))  # fmt: skip
        self.identities = after
        self.last_check = now

    def _settle(self, deadline: float) -> list[str]:
        """Poll until nothing is wrong or `deadline` passed; the problems left."""
        while True:
            self._daemons()
            problems = self._problems()
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.5)

    def _problems(self) -> list[str]:
        desired = self._read_desired()
        if desired is None:
            return ["no controller leads, or the leader does not answer"]
        self.desired = desired
        states = self.fleet.agent_states()
        problems = []
        for host in HOSTS:
            want = "draining" if host in desired.drained else "ready"
            if states.get(host) != want:
                problems.append(f"agent {host} is {states.get(host, 'unknown')}, not {want}")
        snap = self._snapshot()
        problems += checks.placement(desired, snap, HOSTS)
        problems += [f"hygiene: {p}" for p in checks.hygiene(snap, self._daemon_pids())]
        return problems

    def _read_desired(self) -> Desired | None:
        admin = self.fleet.leader_admin()
        if admin is None:
            return None
        try:
            export = admin.Export(admin_pb2.ExportRequest(), timeout=3)
            agents = admin.Agents(admin_pb2.AgentsRequest(), timeout=3)
        except grpc.RpcError:
            return None
        stack = tomllib.loads(export.toml)
        watchers = stack.get("watchers", {})
        counts = {name: int(w.get("numprocesses", 1)) for name, w in watchers.items()}
        versions = {name: int(w.get("env", {}).get("CHAOS_VERSION", 0))
                    for name, w in watchers.items()}  # fmt: skip
        drained = frozenset(a.host_id for a in agents.agents if a.state == "draining")
        return Desired(counts, versions, drained)

    def _daemons(self) -> None:
        """Every daemon runs, or was killed by the harness (which starts it again); one
        that exited on its own is noted, and started again so that the run goes on."""
        killed = self.player.killed()
        for name, code in self.fleet.exited().items():
            if name in killed:
                continue
            self._exits.append(f"{name} exited on its own (exit code {code})")
            self.fleet.start_daemon(name)

    def _verdict(self, number: int, check: str, problems: list[str]) -> None:
        if not problems:
            self.passed[check] += 1
            return
        self.failed[check] += 1
        self.violations.append(Violation(number, check, "\n".join(problems), self._logs()))

    def _licences(self, since: float) -> Licences:
        journal = self.journal
        ops = [r for r in journal.ops if r.start >= since and r.outcome != "unchanged"]
        scaled: dict[str, int] = {}
        for record in ops:
            if record.op.op is Op.scale:
                counts = {record.op.watcher: record.op.count}
            elif record.op.op is Op.apply:
                counts = dict(self.history.latest_counts)
            else:
                continue
            for name, count in counts.items():
                low = 0 if RULES[name].placement == EACH else count
                scaled[name] = min(scaled.get(name, low), low)
        moved = {r.op.host for r in ops if r.op.op in (Op.drain, Op.undrain)}
        moved |= self._long_outages(since)
        rolled = {r.op.watcher for r in ops if r.op.op is Op.apply}
        return Licences(
            killed=frozenset(p.ident for t, _, p in journal.kills if t >= since),
            rolled=frozenset(rolled),
            moved_from=frozenset(moved),
            scaled_below=scaled,
            rebalanced=frozenset(r.op.watcher for r in ops if r.op.op is Op.rebalance),
        )

    def _long_outages(self, since: float) -> set[str]:
        """Hosts cut off from the controllers long enough for their share to move."""
        threshold = self.settings.timing.reschedule_after - 1.0
        long = set()
        for host in HOSTS:
            spans = sorted(
                (r.start, r.end or time.monotonic()) for r in self.journal.faults
                if r.target == host and r.fault.kind in OUTAGES and (r.end or 1e18) >= since
            )  # fmt: skip
            current: list[float] = []
            for start, end in spans:
                if current and start <= current[1]:
                    current[1] = max(current[1], end)
                else:
                    current = [start, end]
                if current[1] - current[0] >= threshold:
                    long.add(host)
        return long

    def _judge_requests(self) -> None:
        kills = [(h, t) for t, h, p in self.journal.kills if p.watcher == WEB]
        cuts = [(str(c[0]), float(c[1]), float(c[2])) for c in self.journal.cuts]  # type: ignore[arg-type]
        unexplained: dict[int, list[str]] = defaultdict(list)
        samples = load.Samples(self.samples)
        for failure in self.requests.failures:
            why = load.explain(failure, cuts, samples, kills)
            if why:
                self.allowed[why] += 1
                continue
            number = self._round_at(failure.start)
            unexplained[number].append(
                f"{failure.host}: {failure.error} ({failure.start - self.started:.1f}s "
                f"to {failure.end - self.started:.1f}s into the run)"
            )
        for number in range(1, len(self.rounds) + 2):
            self._verdict(number, REQUESTS, unexplained.get(number, []))
        if not self.requests.final:
            self._verdict(0, REQUESTS, ["the client load did not end as it should"])

    def _round_at(self, when: float) -> int:
        number = len(self.rounds) + 1
        for round_, started, _ in reversed(self.rounds):
            if when >= started:
                return round_.number
        return number

    def _judge_growth(self) -> None:
        grown, self.unjudged = growth(self.usage, JUDGED)
        self._verdict(0, GROWTH, [
            f"{name} ({work or 'idle'}): {what} grew from {before:g} to {after:g} "
            f"({(after / before - 1) * 100:.0f} %)"
            for name, work, what, before, after in grown
        ])  # fmt: skip

    # -- reading the kernel -----------------------------------------------

    def _inodes(self) -> dict[int, str]:
        return {node.inode: name for name, node in self.fleet.nodes.items()}

    def _snapshot(self) -> kernel.Snapshot:
        return kernel.snapshot(self._inodes(), time.monotonic())

    def _daemon_pids(self) -> dict[str, int | None]:
        return {name: self.fleet.pid(name) for name in self.fleet.names()}

    def _monitor(self) -> None:
        """Every half second: does each host's web socket listen, and how many webapp
        workers can answer behind it."""
        while not self._stop.wait(0.5):
            self._sample_sockets()

    def _log_files(self, name: str, snap: kernel.Snapshot) -> dict[str, int]:
        """The fds agent `name` holds for the watchers that run on its host: each one's
        out and err files, and the directory each file was opened in."""
        if name not in HOSTS:
            return {}
        logs = self.settings.root / name / "logs"
        watchers = {p.watcher for p in snap.workers(name)}
        files = {str(logs / f"{w}.{stream}.log"): 1 for w in watchers for stream in ("out", "err")}
        return {**files, str(logs): 2 * len(watchers)}

    def _sample_sockets(self) -> None:
        inodes = {self.fleet.nodes[h].inode: h for h in HOSTS}
        snap = kernel.snapshot(inodes, time.monotonic())
        for host in HOSTS:
            procs = [p for p in snap.by_node.get(host, ()) if p.state != "Z"]
            web = [p for p in procs if p.watcher == WEB and p.state != "T"]
            listens = any(kernel.listening(p.pid, load.PORT) for p in procs[:1])
            self.samples.append(load.Sample(snap.at, host, listens, len(web)))

    def _sample(self) -> None:
        while not self._stop.wait(self.settings.sample_every):
            now = time.monotonic()
            snap = self._snapshot()
            leader = self.fleet.last_leader  # as the last check found it: asking costs
            for name in self.fleet.names():
                pid = self.fleet.pid(name)
                beside = [p.pid for p in snap.by_node.get(name, ()) if p.state != "Z"]
                files = self._log_files(name, snap)
                used = kernel.usage(pid, beside, files) if pid is not None else None
                if pid is not None and used is not None:
                    work = _work(name, leader)
                    self.usage.append(Usage(now, name, pid, used, work))
                    record = {
                        "at": round(now - self.started, 1), "daemon": name, "pid": pid,
                        "work": work, "rss": used.rss, "fds": dict(used.fd_kinds),
                        "tasks": used.tasks,
                    }  # fmt: skip
                    with (self.settings.root / "usage.jsonl").open("a") as out:
                        out.write(json.dumps(record) + "\n")

    # -- logs around a violation ------------------------------------------

    def _mark_logs(self) -> None:
        for name in self.fleet.names():
            with contextlib.suppress(OSError):
                self._log_marks[name] = self.fleet.log(name).stat().st_size

    def _logs(self, lines: int = 25) -> str:
        """What each daemon logged since the round began (its last lines)."""
        parts = []
        for name in self.fleet.names():
            path = self.fleet.log(name)
            try:
                with path.open("rb") as handle:
                    handle.seek(self._log_marks.get(name, 0))
                    text = handle.read().decode(errors="replace")
            except OSError:
                continue
            if text.strip():
                tail = text.splitlines()[-lines:]
                parts.append(f"--- {name} ({path})\n" + "\n".join(tail))
        return "\n".join(parts)


JUDGED = frozenset({*HOSTS, *CONTROLLERS})
"""The daemons whose growth fails a soak: Stack's agents and controllers. The etcd members'
figures are reported beside them but not judged: etcd keeps every revision until it is
compacted (after the hour of history deploy/ha keeps) and its raft log in memory until
its next snapshot, so it grows through a 30-minute run by design."""


def _work(name: str, leader: str) -> str:
    """What daemon `name` was doing at `snap` (see Usage.work)."""
    if name in CONTROLLERS:
        return "leader" if name == leader else "follower"
    return ""


Grown = tuple[str, str, str, float, float]
"""(daemon, its work, "rss" | "fds" | "tasks", level then, level at the end)."""


def growth(usage: list[Usage], judged: Collection[str]) -> tuple[list[Grown], list[str]]:
    """Daemons of `judged` whose RSS, fds or tasks grew more than 10 % between the end of
    the warm-up and the end of the run, and those that could not be judged.

    Warm-up is the first sixth of the run (5 minutes of 30); each window is the next
    sixth, compared with the last sixth. A daemon the harness restarted is judged from
    its new process on, when that process lived through both windows. Like is compared
    with like: the samples of each window are grouped by the daemon's work (a controller
    leads or follows) and each work seen in both windows is compared; a daemon with none
    in common is not judged (and said so). An agent's work is always the same: the fds
    of its watchers' workers and log files are not counted (see kernel.usage). RSS is
    compared by its median; fds and tasks by their floor, the least seen: those come and
    go with the work of the moment (gRPC's event engine adds threads under load and ends
    them when idle, a connection is open while a request lasts), and a leak raises the
    level they come back to."""
    if not usage:
        return [], []
    start = min(u.at for u in usage)
    end = max(u.at for u in usage)
    sixth = (end - start) / 6
    found: list[Grown] = []
    unjudged: list[str] = []
    series: dict[tuple[str, int], list[Usage]] = defaultdict(list)
    for u in usage:
        series[(u.name, u.pid)].append(u)
    for (name, pid), points in series.items():
        if name not in judged:
            continue
        first = points[0].at
        warm = max(start + sixth, first + sixth)
        if warm + sixth > end - sixth:
            continue
        early = [p for p in points if warm <= p.at < warm + sixth]
        late = [p for p in points if p.at >= end - sixth]
        common = sorted({p.work for p in early} & {p.work for p in late})
        if not common:
            unjudged.append(f"{name} (pid {pid})")
            continue
        for what, level in (("rss", statistics.median), ("fds", min), ("tasks", min)):
            for work in common:
                before = level(getattr(p.usage, what) for p in early if p.work == work)
                after = level(getattr(p.usage, what) for p in late if p.work == work)
                if before and after > before * 1.10:
                    found.append((name, work, what, float(before), float(after)))
                    break
    return found, unjudged
