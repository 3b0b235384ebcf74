"""The invariants, as pure functions over what the kernel showed and what was written.

Every function returns the problems it found, one line each; none reads a clock or /proc.
The harness calls `placement` and `hygiene` until they find nothing (the fleet settled)
or its bounded wait runs out, then every check once more.

Admin writes are judged as a history is in a Jepsen test: a write that stackctl
acknowledged must be in the state, one that failed with "nothing was changed" must not,
and one whose outcome is unknown (a timeout, a lost connection) may be either; the value
the controller holds at the next check must be one of those allowed, and then it is the
only one allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bench.chaoskit.kernel import Proc, Snapshot
from bench.chaoskit.stackfile import CAPPED, EACH, MAX_PER_HOST, RULES, SINGLETON, SPREAD

UNCHANGED_MARKERS = ("nothing was changed", "cannot reach any controller", "changed nothing")
"""stackctl's words for a write that never reached a leader (README: safe to send again)."""


@dataclass(frozen=True)
class Desired:
    """The desired state as the leader holds it."""

    counts: Mapping[str, int]
    versions: Mapping[str, int]
    drained: frozenset[str]


@dataclass
class History:
    """For each value the operator writes, the values the controller may hold now."""

    counts: dict[str, set[int]]
    versions: dict[str, set[int]]
    drained: dict[str, set[bool]]
    latest_counts: dict[str, int] = field(default_factory=dict)
    latest_versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, counts: Mapping[str, int], versions: Mapping[str, int],
              hosts: Iterable[str]) -> History:  # fmt: skip
        return cls(
            {w: {n} for w, n in counts.items()},
            {w: {v} for w, v in versions.items()},
            {h: {False} for h in hosts},
            dict(counts),
            dict(versions),
        )

    def write(self, register: dict[str, set], key: str, value: object, outcome: str) -> None:  # type: ignore[type-arg]
        """Record a write's outcome: "ok", "unchanged" (refused before any leader had it)
        or "unknown"."""
        if outcome == "ok":
            register[key] = {value}
        elif outcome == "unknown":
            register[key].add(value)

    def resolve(self, desired: Desired) -> list[str]:
        """Check the controller's values against the history, then take them as known."""
        problems = []
        for name, allowed in self.counts.items():
            value = desired.counts.get(name)
            if value not in allowed:
                problems.append(f"{name}: the controller wants {value} processes; the "
                                f"acknowledged writes allow only {sorted(allowed)}")  # fmt: skip
            self.counts[name] = {value} if value is not None else allowed
        for name, allowed_versions in self.versions.items():
            version = desired.versions.get(name)
            if version not in allowed_versions:
                allowed_text = sorted(allowed_versions)
                problems.append(f"{name}: the controller has version {version}; the "
                                f"acknowledged applies allow only {allowed_text}")  # fmt: skip
            self.versions[name] = {version} if version is not None else allowed_versions
        for host, allowed_drained in self.drained.items():
            drained = host in desired.drained
            if drained not in allowed_drained:
                problems.append(f"{host}: {'drained' if drained else 'not drained'}, but the "
                                f"acknowledged drains say {sorted(allowed_drained)}")  # fmt: skip
            self.drained[host] = {drained}
        return problems


def outcome_of(code: int, err: str) -> str:
    """ "ok", "unchanged" or "unknown" for a stackctl write that exited `code`."""
    if code == 0:
        return "ok"
    if any(marker in err for marker in UNCHANGED_MARKERS):
        return "unchanged"
    return "unknown"


def placement(desired: Desired, snap: Snapshot, hosts: Iterable[str]) -> list[str]:
    """Every watcher runs exactly its desired count and placement, its desired version,
    and no worker id runs twice anywhere."""
    hosts = list(hosts)
    eligible = [h for h in hosts if h not in desired.drained]
    problems = []
    for name, rule in RULES.items():
        count = desired.counts.get(name, 0)
        version = str(desired.versions.get(name, ""))
        where = {h: snap.workers(h, name) for h in hosts}
        everywhere = [(h, p) for h, procs in where.items() for p in procs]
        seen: dict[int, str] = {}
        for host, proc in everywhere:
            if proc.wid in seen:
                problems.append(f"{name}: worker {proc.wid} runs twice "
                                f"(on {seen[proc.wid]} and {host}, pid {proc.pid})")  # fmt: skip
            seen[proc.wid] = host
            if host in desired.drained:
                problems.append(f"{name}: worker {proc.wid} (pid {proc.pid}) runs on "
                                f"drained {host}")  # fmt: skip
            if proc.version != version:
                problems.append(f"{name}: worker {proc.wid} on {host} (pid {proc.pid}) runs "
                                f"version {proc.version}, not {version}")  # fmt: skip
        total = len(everywhere)
        wids = sorted(p.wid for _, p in everywhere)
        if rule.placement == SPREAD and wids != list(range(1, count + 1)):
            problems.append(f"{name}: runs worker ids {wids}, wants 1..{count}")
        elif rule.placement == SINGLETON and wids != list(range(1, min(count, 1) + 1)):
            problems.append(f"{name}: runs worker ids {wids}, wants {min(count, 1)} in the fleet")
        elif rule.placement == EACH:
            for host in eligible:
                if len(where[host]) != count:
                    problems.append(f"{name}: {len(where[host])} on {host}, wants {count}")
        elif rule.placement == CAPPED:
            wanted = min(count, MAX_PER_HOST * len(eligible))
            if total != wanted or any(w > count for w in wids):
                problems.append(f"{name}: runs worker ids {wids}, wants {wanted} of 1..{count}")
            for host in hosts:
                if len(where[host]) > MAX_PER_HOST:
                    problems.append(f"{name}: {len(where[host])} on {host}, at most "
                                    f"{MAX_PER_HOST} per host")  # fmt: skip
    return problems


def hygiene(snap: Snapshot, daemons: Mapping[str, int | None]) -> list[str]:
    """Each node runs its daemon and, on hosts, the workers; nothing else, no zombie."""
    problems = []
    for node, procs in snap.by_node.items():
        if node == "client":
            continue
        daemon = daemons.get(node)
        for proc in procs:
            if proc.state == "Z":
                problems.append(f"{node}: zombie pid {proc.pid} ({proc.comm}), parent {proc.ppid}")
            elif proc.pid != daemon and not proc.worker:
                problems.append(f"{node}: stray process pid {proc.pid} ({proc.comm}), "
                                f"parent {proc.ppid}")  # fmt: skip
            elif proc.worker and proc.state == "T":
                problems.append(f"{node}: worker pid {proc.pid} is stopped")
    return problems


Identity = tuple[str, tuple[int, int]]
"""(host, (pid, start ticks)) of a worker."""


def identities(snap: Snapshot, hosts: Iterable[str]) -> dict[tuple[str, int], Identity]:
    """(watcher, wid) -> where and which process runs it."""
    found: dict[tuple[str, int], Identity] = {}
    for host, proc in snap.all_workers(hosts):
        found[(proc.watcher, proc.wid)] = (host, proc.ident)
    return found


@dataclass(frozen=True)
class Licences:
    """What may replace a worker between two checks, besides a control-plane fault (which
    may not)."""

    killed: frozenset[tuple[int, int]] = frozenset()
    """Processes the harness SIGKILLed (storms)."""
    rolled: frozenset[str] = frozenset()
    """Watchers whose version changed."""
    moved_from: frozenset[str] = frozenset()
    """Hosts drained, or cut off long enough for their share to be placed elsewhere."""
    scaled_below: Mapping[str, int] = field(default_factory=dict)
    """watcher -> the lowest count it was scaled to (ids above it may be new processes)."""
    rebalanced: frozenset[str] = frozenset()


def restarts(
    before: Mapping[tuple[str, int], Identity],
    after: Mapping[tuple[str, int], Identity],
    licences: Licences,
) -> list[str]:
    """Workers that run as another process than at the last check, with no licence for it:
    restarted by a control-plane fault (or by nothing the harness did)."""
    problems = []
    for key, (host, ident) in sorted(after.items()):
        old = before.get(key)
        if old is None or old == (host, ident):
            continue
        watcher, wid = key
        old_host, old_ident = old
        if (
            old_ident in licences.killed
            or watcher in licences.rolled
            or watcher in licences.rebalanced
            or old_host in licences.moved_from
            or wid > licences.scaled_below.get(watcher, wid)
        ):
            continue
        problems.append(f"{watcher}: worker {wid} was pid {old_ident[0]} on {old_host}, now "
                        f"pid {ident[0]} on {host}: restarted, and nothing the harness did "
                        f"may restart it")  # fmt: skip
    return problems


def workers_of(procs: Iterable[Proc], watcher: str) -> list[Proc]:
    return [p for p in procs if p.watcher == watcher]
