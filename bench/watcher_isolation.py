"""How long one watcher's scale-down takes while another watcher warms up.

Run: .venv/bin/python bench/watcher_isolation.py [--rounds 5] [--warmup 5]

A real controller and agent on this host. Watcher `a` (priority 10, so the agent
reconciles it first) and watcher `b` (4 workers). Each round measures, from the Scale
call for `b` (4 -> 1, through the admin gRPC service: stackctl's own start-up is left out)
to the moment b's 3 surplus workers have exited:

- baseline: `a` idle;
- warming: just after `a` was scaled 1 -> 3 with `warmup_delay` (its second worker is
  inside its warm-up, the third not started yet).

Before watchers stopped waiting for each other, the second figure was about twice the
warm-up (the agent slept through a's warm-ups inside its one reconcile loop). Prints
medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from stack.v1 import admin_pb2
from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import become_subreaper
from tests.support.workers import watcher_toml


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def scale(cluster: Cluster, watcher: str, count: int) -> None:
    cluster.admin().Scale(admin_pb2.ScaleRequest(watcher=watcher, count=count), timeout=10)


def one_round(root: Path, warmup: float, warming: bool) -> float:
    """Seconds from b's Scale call until its surplus workers are gone."""
    with running_cluster(root) as cluster:
        cluster.apply(
            watcher_toml("a", cluster.tag, numprocesses=1, warmup_delay=warmup, priority=10)
            + watcher_toml("b", cluster.tag, numprocesses=4)
        )
        cluster.wait_running("a", 1, timeout=warmup + 20)
        before = cluster.wait_running("b", 4)
        if warming:
            scale(cluster, "a", 3)
            deadline = time.monotonic() + 10
            while len(cluster.processes("a")) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        surplus = [pid for wid, pid in before.items() if wid != 1]
        asked = time.perf_counter()
        scale(cluster, "b", 1)
        while not all(gone(pid) for pid in surplus):
            if time.perf_counter() - asked > 4 * warmup + 30:
                raise TimeoutError("b's surplus workers never exited")
            time.sleep(0.001)
        return time.perf_counter() - asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    become_subreaper()
    figures: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for warming in (False, True):
                root = Path(tmp) / f"r{round_}-{int(warming)}"
                figures[warming].append(one_round(root, args.warmup, warming))
    for warming, label in (
        (False, "a idle (baseline)"),
        (True, f"a warming up ({args.warmup:g} s)"),
    ):
        took = figures[warming]
        print(
            f"b 4 -> 1, Scale call -> surplus exited, {label}: median "
            f"{statistics.median(took) * 1000:.1f} ms (max {max(took) * 1000:.1f} ms, "
            f"{len(took)} rounds)"
        )


if __name__ == "__main__":
    main()
