"""What a chaos run does, decided from its seed: rounds of overlapping faults and admin
writes. Pure: a `random.Random` and the state the last check settled on go in, a `Round`
comes out, so a seed replays the same sequence of decisions.

A round starts one to three faults a few seconds apart (one, now and then two, in a soak),
each lasting up to a few seconds, and issues up to two admin writes while they run; then
everything is healed and the harness waits for the fleet to settle and checks it. A
host's outage is either short (its workers must stay where they are) or, now and then,
long enough for the controller to give its share to the other hosts; nothing lasts in
between, so that which of the two may happen is never in doubt.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.chaoskit.stackfile import LIMITS


class Kind(enum.StrEnum):
    """A kind of fault."""

    agent_kill = "agent kill -9"
    """SIGKILL an agent; start it again later on its data dir (it adopts its workers)."""
    agent_stop = "agent SIGSTOP"
    agent_reload = "agent reload"
    """SIGHUP: the agent re-executes itself in place."""
    controller_kill = "controller kill -9"
    controller_stop = "controller SIGSTOP"
    controller_partition = "controller partition"
    etcd_kill = "etcd kill -9"
    etcd_stop = "etcd SIGSTOP"
    host_partition = "host partition"
    worker_storm = "worker crash storm"
    """SIGKILL a few workers at once, anywhere."""
    disk_full = "disk full"
    """Fill an agent's data dir (a small tmpfs) for a while."""


class Op(enum.StrEnum):
    """An admin write, as the operator issues it with stackctl."""

    scale = "scale"
    apply = "apply"
    """A new version of one watcher: a rolling change."""
    drain = "drain"
    undrain = "undrain"
    rebalance = "rebalance"


INSTANT = frozenset({Kind.agent_reload, Kind.worker_storm})
OUTAGES = frozenset({Kind.agent_kill, Kind.agent_stop, Kind.host_partition})
"""Faults that cut a host off from the controllers: long ones move its workers."""
WEIGHTS: Mapping[Kind, float] = {
    Kind.agent_kill: 2, Kind.agent_stop: 2, Kind.agent_reload: 2,
    Kind.controller_kill: 2, Kind.controller_stop: 2, Kind.controller_partition: 1.5,
    Kind.etcd_kill: 1.5, Kind.etcd_stop: 1.5, Kind.host_partition: 2,
    Kind.worker_storm: 2, Kind.disk_full: 1,
}  # fmt: skip
OP_WEIGHTS: Mapping[Op, float] = {Op.scale: 3.5, Op.apply: 3, Op.drain: 2, Op.rebalance: 1.5}
LEADER = "leader"
"""The target of a controller fault that hits whichever controller leads at that moment."""


@dataclass(frozen=True)
class Fault:
    """One fault of a round."""

    kind: Kind
    target: str
    """A host, controller or member name; LEADER; "" for a storm."""
    at: float
    """Seconds after the round's start."""
    duration: float = 0.0
    """Seconds until it is healed (0: instant)."""
    size: int = 0
    """Workers a storm kills."""
    long: bool = False
    """An outage long enough for the host's workers to be placed elsewhere."""

    def describe(self) -> str:
        what = f"{self.kind}"
        if self.target:
            what += f" {self.target}"
        if self.size:
            what += f" ({self.size} workers)"
        if self.duration:
            what += f" for {self.duration:.1f}s" + (" (long)" if self.long else "")
        return what


@dataclass(frozen=True)
class AdminOp:
    """One admin write of a round."""

    op: Op
    at: float
    watcher: str = ""
    host: str = ""
    count: int = 0

    def describe(self) -> str:
        if self.op is Op.scale:
            return f"stackctl scale {self.watcher} {self.count}"
        if self.op is Op.apply:
            return f"stackctl apply (new version of {self.watcher})"
        if self.op in (Op.drain, Op.undrain):
            return f"stackctl {self.op} {self.host}"
        return f"stackctl rebalance {self.watcher}"


@dataclass(frozen=True)
class Round:
    """Faults and admin writes that overlap, then a check."""

    number: int
    faults: tuple[Fault, ...]
    ops: tuple[AdminOp, ...]
    quiet: float = 0.0
    """Seconds the fleet runs untouched after the check (a soak's sparse faults)."""

    @property
    def length(self) -> float:
        """Seconds from the round's start until its last fault is healed."""
        ends = [f.at + f.duration for f in self.faults] + [op.at for op in self.ops]
        return max(ends, default=0.0)


@dataclass(frozen=True)
class Settled:
    """What the planner needs from the last check: the hosts drained."""

    drained: frozenset[str] = frozenset()


def plan_round(
    rng: random.Random,
    number: int,
    soak: bool,
    hosts: Sequence[str],
    controllers: Sequence[str],
    members: Sequence[str],
    long_outage: float,
    state: Settled,
) -> Round:
    """The next round. `long_outage` is how long a long outage lasts."""
    more = (0.15, 0.0) if soak else (0.6, 0.3)
    count = 1 + sum(rng.random() < p for p in more)
    kinds = list(WEIGHTS)
    faults = []
    for index in range(count):
        kind = rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        at = 0.0 if index == 0 else round(rng.uniform(0.0, 4.0), 2)
        faults.append(_fault(rng, kind, at, hosts, controllers, members, long_outage))
    ops = []
    for _ in range(_op_count(rng, soak)):
        ops.append(_op(rng, round(rng.uniform(0.3, 5.0), 2), hosts, state))
    ops.sort(key=lambda op: op.at)
    quiet = round(rng.uniform(20.0, 40.0), 1) if soak else 0.0
    return Round(number, tuple(sorted(faults, key=lambda f: f.at)), tuple(ops), quiet)


def _op_count(rng: random.Random, soak: bool) -> int:
    if soak:
        return int(rng.random() < 0.5)
    return int(rng.random() < 0.7) + int(rng.random() < 0.3)


def _fault(
    rng: random.Random,
    kind: Kind,
    at: float,
    hosts: Sequence[str],
    controllers: Sequence[str],
    members: Sequence[str],
    long_outage: float,
) -> Fault:
    if kind is Kind.worker_storm:
        return Fault(kind, "", at, size=rng.randint(1, 4))
    if kind is Kind.agent_reload:
        return Fault(kind, rng.choice(hosts), at)
    duration = round(rng.uniform(0.5, 5.0), 2)
    if kind in (Kind.controller_kill, Kind.controller_stop, Kind.controller_partition):
        target = LEADER if rng.random() < 0.7 else rng.choice(controllers)
        return Fault(kind, target, at, duration)
    if kind in (Kind.etcd_kill, Kind.etcd_stop):
        return Fault(kind, rng.choice(members), at, duration)
    target = rng.choice(hosts)
    if kind in OUTAGES and rng.random() < 0.12:
        return Fault(kind, target, at, round(long_outage + rng.uniform(0.0, 3.0), 2), long=True)
    return Fault(kind, target, at, duration)


def _op(rng: random.Random, at: float, hosts: Sequence[str], state: Settled) -> AdminOp:
    ops = list(OP_WEIGHTS)
    op = rng.choices(ops, [OP_WEIGHTS[o] for o in ops])[0]
    watchers = sorted(LIMITS)
    if op is Op.drain:
        if state.drained:
            return AdminOp(Op.undrain, at, host=sorted(state.drained)[0])
        return AdminOp(Op.drain, at, host=rng.choice(hosts))
    if op is Op.scale:
        watcher = rng.choice(watchers)
        low, high = LIMITS[watcher]
        return AdminOp(op, at, watcher=watcher, count=rng.randint(low, high))
    if op is Op.apply:
        return AdminOp(op, at, watcher=rng.choice(watchers))
    return AdminOp(op, at, watcher=rng.choice(["webapp", "capped"]))
