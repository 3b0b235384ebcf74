"""Chaos and soak: overlapping faults against a whole Stack, checked against the kernel.

Run (as root): .venv/bin/python bench/chaos.py [--seed S] [--duration 90s|30m] [--soak]
                                               [--keep DIR]

Three hosts, three controllers on a three-member etcd, mutual TLS everywhere, each daemon
in a network namespace of its own (bench/chaoskit/topology.py), running a stack of four
watchers (bench/chaoskit/stackfile.py) while a client requests the web app through every
host's address. Rounds of faults chosen from the seed overlap with admin writes
(bench/chaoskit/plan.py): kill -9 and SIGSTOP of agents, controllers (the leader more
often) and etcd members, partitions of a host and of a controller, agent reloads, worker
crash storms, a full disk on an agent's data dir, with scale, rolling applies, drains
and undrains issued meanwhile. After each round, once the fleet settles (a bounded wait),
and at the end, the invariants are checked against /proc (bench/chaoskit/checks.py).
`--soak` plays sparse faults and fails any daemon whose RSS, open fds or tasks grow by
more than 10 % after the warm-up.

Prints the summary table, every violation with the seed, the round's faults and the
daemons' logs around it, and last a line `chaos: seed S, N faults, N checks, N
violations, N requests failed`. Exits 0 only with no violation. The run's directory
(logs, the client's record, the journal) is removed unless --keep names where to put it,
or a violation was found (then it is kept and named).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chaoskit import report
from bench.chaoskit.run import Run, Settings
from bench.teardown import interruptible
from tests.support import netns

UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m` or `1h`."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s or 30m)")
    return float(found.group(1)) * UNITS[found.group(2) or "s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--duration", type=duration, default=90.0,
                        help="how long faults are injected: 90s, 30m (default 90s)")  # fmt: skip
    parser.add_argument("--soak", action="store_true", help="sparse faults; daemons must not grow")
    parser.add_argument("--settle-timeout", type=duration, default=90.0,
                        help="how long the fleet may take to settle after a round")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="keep the run's files here")
    args = parser.parse_args(argv)
    why = netns.unavailable()
    if why is not None:
        print(f"chaos: cannot run: {why}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(10**9)
    print(f"chaos: seed {seed} (replay with --seed {seed})", flush=True)
    root = Path(tempfile.mkdtemp(prefix=f"stack-chaos-{seed}-"))
    run = Run(Settings(seed, args.duration, args.soak, root, args.settle_timeout))
    load_before = os.getloadavg()
    try:
        with interruptible():
            run.set_up()
            run.play()
            run.finish()
    finally:
        run.close()
        (root / "journal.txt").write_text(report.sequence(run) + "\n")
    text = report.summary(run, load_before, os.getloadavg())
    if run.violations:
        text += "\n\nfault sequence:\n" + report.sequence(run) + "\n" + report.violations(run)
    print(text)
    (root / "report.txt").write_text(text + "\n" + report.last_line(run) + "\n")
    keep = args.keep or (root if run.violations else None)
    if keep is not None and keep != root:
        shutil.copytree(root, keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.etcd"))
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"chaos: the run's files are in {keep}")
    print(report.last_line(run), flush=True)
    return 0 if not run.violations else 1


if __name__ == "__main__":
    sys.exit(main())
