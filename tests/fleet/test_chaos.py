"""A minute of bench/chaos.py in the suite: overlapping faults with a fixed seed must end
with no violation, so that a change that breaks what chaos checks fails here first.

Seed 5492 plays every kind of fault within its first five rounds (a long host outage
among them) and every kind of admin write by its sixth, all within the minute on a machine
that is not overloaded; the harness itself bounds how long the fleet may take to settle
after each round.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import netns
from tests.support.etcd import requires_etcd
from tests.support.processes import ROOT, stack_env

SEED = 5492
LAST_LINE = re.compile(
    r"chaos: seed (\d+), (\d+) faults, (\d+) checks, (\d+) violations, (\d+) requests failed"
)


@requires_etcd
@pytest.mark.timeout(900)
def test_a_minute_of_chaos_finds_no_violation() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--seed", str(SEED),
         "--duration", "60s", "--settle-timeout", "60s"],
        capture_output=True, text=True, env=stack_env(), cwd=ROOT, timeout=840,
    )  # fmt: skip
    report = proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    found = LAST_LINE.fullmatch(lines[-1]) if lines else None
    assert found is not None, f"no summary line:\n{report}"
    seed, faults, checks, violations, _ = (int(group) for group in found.groups())
    assert seed == SEED and faults > 0 and checks > 0, report
    assert violations == 0 and proc.returncode == 0, report
