"""The chaos run's report: the summary tables, each violation with its context, and the
machine-readable last line."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

from bench.chaoskit.plan import Kind, Op
from bench.chaoskit.run import CHECKS, Run, Usage


def summary(run: Run, load_before: Sequence[float], load_after: Sequence[float]) -> str:
    s = run.settings
    lines = [
        f"chaos: seed {s.seed}, {s.duration:g} s of {'sparse ' if s.soak else ''}faults, "
        f"{len(run.rounds)} rounds; load average {_load(load_before)} at the start, "
        f"{_load(load_after)} at the end ({_cores()})",
        "",
        f"{'fault':<24}{'injected':>9}{'settled after: median':>24}{'max':>9}",
    ]
    for kind in Kind:
        count = run.faults_by_kind.get(kind, 0)
        if not count:
            continue
        times = run.convergence.get(kind, [])
        median = f"{statistics.median(times):.1f} s" if times else "-"
        worst = f"{max(times):.1f} s" if times else "-"
        lines.append(f"{kind.value:<24}{count:>9}{median:>24}{worst:>9}")
    outcomes: dict[Op, Counter[str]] = defaultdict(Counter)
    for record in run.journal.ops:
        outcomes[record.op.op][record.outcome] += 1
    lines += ["", f"{'admin write':<24}{'acknowledged':>13}{'refused':>9}{'unknown':>9}"]
    for op in Op:
        if op in outcomes:
            seen = outcomes[op]
            lines.append(f"{'stackctl ' + op.value:<24}{seen['ok']:>13}{seen['unchanged']:>9}"
                         f"{seen['unknown']:>9}")  # fmt: skip
    lines += ["", f"{'invariant checked':<48}{'passed':>8}{'failed':>8}"]
    for check in CHECKS:
        if run.passed[check] or run.failed[check]:
            lines.append(f"{check:<48}{run.passed[check]:>8}{run.failed[check]:>8}")
    failed = len(run.requests.failures)
    lines += ["", f"client requests: {run.requests.sent:,} sent, {failed:,} failed"]
    allowed = run.allowed
    for why, count in allowed.most_common():
        lines.append(f"  {count:>7,}  allowed: {why}")
    unexplained = failed - sum(allowed.values())
    if failed:
        lines.append(f"  {unexplained:>7,}  within no limit")
    lines += ["", *resources(run.usage)]
    if run.unjudged:
        lines.append(
            "not judged for growth (not seen at the same work in both windows): "
            + ", ".join(run.unjudged)
        )
    return "\n".join(lines)


def resources(usage: Sequence[Usage]) -> list[str]:
    """RSS (MiB), open fds and tasks of every daemon at six moments of the run."""
    if not usage:
        return []
    start = min(u.at for u in usage)
    end = max(u.at for u in usage)
    moments = [start + (end - start) * i / 5 for i in range(6)]
    header = "  ".join(f"{'+' + _minutes(m - start):>14}" for m in moments)
    lines = [f"{'daemon: RSS MiB/fds/tasks':<26}{header}"]
    by_name: dict[str, list[Usage]] = defaultdict(list)
    for u in usage:
        by_name[u.name].append(u)
    for name, points in by_name.items():
        cells = []
        for moment in moments:
            nearest = min(points, key=lambda p, m=moment: abs(p.at - m))  # type: ignore[misc]
            used = nearest.usage
            cells.append(f"{used.rss / 2**20:.0f}/{used.fds}/{used.tasks}".rjust(14))
        restarts = len({p.pid for p in points}) - 1
        label = name + (f" ({restarts} new pid)" if restarts else "")
        lines.append(f"{label:<26}" + "  ".join(cells))
    return lines


def violations(run: Run) -> str:
    parts = []
    for v in run.violations:
        played = [r for r, _, _ in run.rounds if r.number == v.round]
        what = "; ".join(
            [f.describe() for f in played[0].faults] + [o.describe() for o in played[0].ops]
        ) if played else "the end of the run"  # fmt: skip
        parts.append(
            f"VIOLATION (seed {run.settings.seed}, round {v.round}: {what})\n"
            f"  {v.check}:\n    " + v.text.replace("\n", "\n    ")
        )
        if v.logs:
            parts.append("  logs since the round began:\n    " + v.logs.replace("\n", "\n    "))
    return "\n".join(parts)


def sequence(run: Run) -> str:
    """Everything the harness did, with its time into the run."""
    return "\n".join(f"{t - run.started:8.1f}s  {text}" for t, text in run.journal.lines)


def last_line(run: Run) -> str:
    faults = sum(run.faults_by_kind.values())
    checks = sum(run.passed.values()) + sum(run.failed.values())
    return (
        f"chaos: seed {run.settings.seed}, {faults} faults, {checks} checks, "
        f"{len(run.violations)} violations, {len(run.requests.failures)} requests failed"
    )


def _load(load: Sequence[float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def _cores() -> str:
    import os

    return f"{os.cpu_count()} cores"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}m" if seconds >= 120 else f"{seconds:.0f}s"
