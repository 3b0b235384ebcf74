"""Playing a round's faults and admin writes against the fleet, and keeping the record.

One thread plays the faults on their schedule; another, the operator, issues the admin
writes one after the other at their times (a write may take seconds while the control
plane is broken). Faults on the same target nest: a node cut twice is plugged back when
the last of the two ends, a daemon stopped twice is continued then. A killed daemon is
started again when its fault ends, unless it runs already.

Everything done is journaled with its time, and kept in a form the checks use: when each
host was cut off and how long it was out, which workers the harness killed, and each
write's outcome.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.chaoskit import kernel
from bench.chaoskit.checks import History, outcome_of
from bench.chaoskit.plan import LEADER, AdminOp, Fault, Kind, Op, Round
from bench.chaoskit.stackfile import RULES, render
from bench.chaoskit.topology import CONTROLLERS, HOSTS, Fleet


@dataclass
class FaultRecord:
    fault: Fault
    target: str
    """The host, controller or member it hit (a LEADER target resolved)."""
    start: float
    end: float = 0.0
    note: str = ""


@dataclass
class OpRecord:
    op: AdminOp
    start: float
    end: float = 0.0
    outcome: str = ""
    """"ok", "unchanged" or "unknown" (see checks.outcome_of)."""
    message: str = ""


@dataclass
class Journal:
    """What the harness did, when (time.monotonic())."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    ops: list[OpRecord] = field(default_factory=list)
    kills: list[tuple[float, str, kernel.Proc]] = field(default_factory=list)
    """(when, host, worker) of every worker a storm killed."""
    cuts: list[list[object]] = field(default_factory=list)
    """[host, from, to] of every partition of a host (to = 0 while cut)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        with self._lock:
            self.lines.append((time.monotonic(), text))


class Player:
    """Plays rounds against one fleet."""

    def __init__(self, fleet: Fleet, history: History, journal: Journal, seed: int) -> None:
        self.fleet = fleet
        self.history = history
        self.journal = journal
        self.seed = seed
        self._stopped: Counter[str] = Counter()
        self._cut: Counter[str] = Counter()
        self._full: Counter[str] = Counter()
        self._killed: set[str] = set()
        self._lock = threading.Lock()
        self._rolling: set[str] = set()
        """Watchers that may be in a rolling change: from an apply of a new version until
        the leader's status, read after that apply ended, shows none for them."""
        self._applying: Counter[str] = Counter()
        self._applied_at: dict[str, float] = {}

    # -- a round ----------------------------------------------------------

    def play(self, round_: Round) -> float:
        """Play the round; returns the time its last fault was healed."""
        t0 = time.monotonic()
        rng = random.Random(f"{self.seed}/{round_.number}")
        events: list[tuple[float, int, Callable[[], None]]] = []
        for index, fault in enumerate(round_.faults):
            record = FaultRecord(fault, "", 0.0)
            events.append((fault.at, index, functools.partial(self._begin, fault, record, rng)))
            if fault.duration:
                end = functools.partial(self._end, fault, record)
                events.append((fault.at + fault.duration, index, end))
        operator = threading.Thread(target=self._operate, args=(round_.ops, t0), name="operator")
        operator.start()
        for at, _, action in sorted(events, key=lambda e: (e[0], e[1])):
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
        healed = time.monotonic()
        operator.join()
        self.heal_all()
        return healed

    def killed(self) -> set[str]:
        """Daemons the harness killed and has not started again yet."""
        return set(self._killed)

    def heal_all(self) -> None:
        """Whatever is still broken, mend it (a safety net: every fault ends on its own)."""
        fleet = self.fleet
        for name in list(fleet.paused):
            fleet.cont(name)
        for node in list(fleet.cut):
            self._plug(node)
        for host in HOSTS:
            fleet.free_disk(host)
        for name in sorted(self._killed):
            if fleet.pid(name) is None:
                fleet.start_daemon(name)
        self._stopped.clear()
        self._cut.clear()
        self._full.clear()
        self._killed.clear()

    # -- faults -----------------------------------------------------------

    def _target(self, fault: Fault) -> str:
        if fault.target != LEADER:
            return fault.target
        return self.fleet.leader() or next(c for c in CONTROLLERS if self.fleet.pid(c))

    def _begin(self, fault: Fault, record: FaultRecord, rng: random.Random) -> None:
        fleet = self.fleet
        target = self._target(fault) if fault.target else ""
        record.target, record.start = target, time.monotonic()
        self.journal.faults.append(record)
        kind = fault.kind
        if kind in (Kind.agent_kill, Kind.controller_kill, Kind.etcd_kill):
            fleet.kill9(target)
            self._killed.add(target)
        elif kind in (Kind.agent_stop, Kind.controller_stop, Kind.etcd_stop):
            self._stopped[target] += 1
            fleet.stop(target)
        elif kind is Kind.agent_reload:
            fleet.reload(target)
        elif kind in (Kind.host_partition, Kind.controller_partition):
            self._cut[target] += 1
            fleet.partition(target)
            if target in HOSTS:
                self.journal.cuts.append([target, time.monotonic(), 0.0])
        elif kind is Kind.disk_full:
            self._full[target] += 1
            record.note = f"{fleet.fill_disk(target) >> 20} MiB written"
        elif kind is Kind.worker_storm:
            record.note = self._storm(fault.size, rng)
        self.journal.say(f"begin {fault.describe()}" + (f" -> {target}" if target != fault.target
                                                          else "") + f" {record.note}")  # fmt: skip

    def _end(self, fault: Fault, record: FaultRecord) -> None:
        fleet, target = self.fleet, record.target
        kind = fault.kind
        if kind in (Kind.agent_kill, Kind.controller_kill, Kind.etcd_kill):
            if fleet.pid(target) is None:
                fleet.start_daemon(target)
            self._killed.discard(target)
        elif kind in (Kind.agent_stop, Kind.controller_stop, Kind.etcd_stop):
            self._stopped[target] -= 1
            if self._stopped[target] <= 0:
                fleet.cont(target)
        elif kind in (Kind.host_partition, Kind.controller_partition):
            self._cut[target] -= 1
            if self._cut[target] <= 0:
                self._plug(target)
        elif kind is Kind.disk_full:
            self._full[target] -= 1
            if self._full[target] <= 0:
                fleet.free_disk(target)
        record.end = time.monotonic()
        self.journal.say(f"end {fault.describe()} ({target})")

    def _plug(self, node: str) -> None:
        self.fleet.heal(node)
        for cut in self.journal.cuts:
            if cut[0] == node and cut[2] == 0.0:
                cut[2] = time.monotonic()

    def _storm(self, size: int, rng: random.Random) -> str:
        """SIGKILL `size` workers, none of a watcher in the middle of a rolling change (a
        new worker killed then halts the rollout, as documented, and that is not chaos's
        business). The kernel shows a rollout while versions are mixed, but not its last
        batch's wait (`min_uptime`, or its health checks) once every worker runs the new
        version; so a watcher also counts as rolling from the apply of a new version until
        the leader's status, asked after that apply ended, shows no rollout for it."""
        fleet = self.fleet
        self._note_rollouts()
        snap = kernel.snapshot({fleet.nodes[h].inode: h for h in HOSTS}, time.monotonic())
        workers = snap.all_workers(HOSTS)
        mixed = {
            w for w in RULES
            if len({p.version for _, p in workers if p.watcher == w}) > 1
        }  # fmt: skip
        spared = mixed | self.rolling()
        candidates = sorted(
            ((h, p) for h, p in workers if p.watcher not in spared),
            key=lambda hp: (hp[0], hp[1].watcher, hp[1].wid),
        )
        chosen = rng.sample(candidates, min(size, len(candidates)))
        for host, proc in chosen:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.journal.kills.append((time.monotonic(), host, proc))
        return ", ".join(f"{p.watcher}[{p.wid}]@{h}" for h, p in chosen)

    def rolling(self) -> set[str]:
        """The watchers a crash storm spares besides those the kernel shows mixed."""
        with self._lock:
            return set(self._rolling)

    def _note_rollouts(self) -> None:
        """Forget the watchers the leader shows with no rollout, where no apply of theirs
        was in flight or ended after the question was asked (no leader: forget none)."""
        asked = time.monotonic()
        status = self.fleet.status()
        if status is None:
            return
        with self._lock:
            for watcher in status.watchers:
                if watcher.rollout:
                    self._rolling.add(watcher.name)
                elif (
                    not self._applying[watcher.name]
                    and self._applied_at.get(watcher.name, 0.0) < asked
                ):
                    self._rolling.discard(watcher.name)

    # -- the operator -----------------------------------------------------

    def _operate(self, ops: tuple[AdminOp, ...], t0: float) -> None:
        for op in ops:
            delay = t0 + op.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.write(op)

    def write(self, op: AdminOp) -> OpRecord:
        """Issue one admin write with stackctl and record its outcome in the history."""
        history = self.history
        record = OpRecord(op, time.monotonic())
        self.journal.ops.append(record)
        if op.op is Op.scale:
            result = self.fleet.stackctl("scale", op.watcher, str(op.count))
        elif op.op is Op.apply:
            versions = dict(history.latest_versions)
            versions[op.watcher] += 1
            path = self.fleet.root / f"stack-v{sum(versions.values())}.toml"
            path.write_text(render(self.fleet.tag, history.latest_counts, versions))
            with self._lock:
                self._rolling.add(op.watcher)
                self._applying[op.watcher] += 1
            try:
                result = self.fleet.stackctl("apply", "--yes", str(path))
            finally:
                with self._lock:
                    self._applying[op.watcher] -= 1
                    self._applied_at[op.watcher] = time.monotonic()
        elif op.op in (Op.drain, Op.undrain):
            result = self.fleet.stackctl(op.op.value, op.host)
        else:
            result = self.fleet.stackctl("rebalance", op.watcher)
        record.end = time.monotonic()
        record.outcome = outcome_of(result.code, result.err)
        said = (result.err or result.out).strip().splitlines()
        record.message = said[-1] if said else ""
        if op.op is Op.scale:
            history.write(history.counts, op.watcher, op.count, record.outcome)
            if record.outcome != "unchanged":
                history.latest_counts[op.watcher] = op.count
        elif op.op is Op.apply:
            for name in RULES:
                history.write(history.counts, name, history.latest_counts[name], record.outcome)
            history.write(history.versions, op.watcher, versions[op.watcher], record.outcome)
            if record.outcome != "unchanged":
                history.latest_versions[op.watcher] = versions[op.watcher]
        elif op.op in (Op.drain, Op.undrain):
            history.write(history.drained, op.host, op.op is Op.drain, record.outcome)
        self.journal.say(f"{op.describe()}: {record.outcome} {record.message}")
        return record
