"""Scaling across three hosts: Scale 0 -> 60 over a controller and 3 agents in namespaces.

Run (as root): .venv/bin/python bench/fleet_scale.py [--rounds 5]

The hosts are Linux network namespaces on one bridge (tests/support/netns.py),
addresses from 198.18.0.0/15: the controller at 198.18.0.1, agents h1..h3.
A watcher `sleep 3600` in placement mode "spread" is scaled 0 -> 60; measured
from the Scale call to all 60 exec'd as children of the three agents (read
from /proc every millisecond) and to all 60 RUNNING in the controller's Status
(polled every 5 ms), beside 60 bare subprocess.Popen calls of the same command
in the same run. Then scaled back to 0. Prints medians; asserts nothing. The
namespaces and every process in them are removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import bare_popen_loop, poll, sleepers_of
from stack.v1 import admin_pb2, types_pb2
from tests.support import netns
from tests.support.fleet import Fleet
from tests.support.processes import become_subreaper

SLEEP = shutil.which("sleep") or "/bin/sleep"
COUNT = 60
STACK_FILE = f"""[watchers.sleepers]
cmd = "{SLEEP} 3600"
numprocesses = 0
graceful_timeout = 5

[watchers.sleepers.flapping]
attempts = 100000
window = 1

[watchers.sleepers.placement]
mode = "spread"
"""


def on_agents(fleet: Fleet) -> dict[str, int]:
    """host id -> sleep children its agent has exec'd."""
    return {host: len(sleepers_of(agent.pid)) for host, agent in fleet.agents.items()}


def running_in_status(fleet: Fleet) -> int:
    procs = fleet.processes("sleepers")
    return sum(p.state == types_pb2.PROCESS_STATE_RUNNING for p in procs)


def fleet_scale(fleet: Fleet) -> tuple[float, float, dict[str, int]]:
    """(to 60 exec'd on the agents, to 60 RUNNING in Status, the split over hosts)."""
    admin = fleet.admin()
    start = time.perf_counter()
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=COUNT), timeout=10)
    poll(lambda: sum(on_agents(fleet).values()) >= COUNT)
    exec_done = time.perf_counter() - start
    poll(lambda: running_in_status(fleet) == COUNT, interval=0.005)
    status_done = time.perf_counter() - start
    split = on_agents(fleet)
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=0), timeout=10)
    poll(lambda: not any(on_agents(fleet).values()), interval=0.01)
    poll(lambda: not fleet.processes("sleepers"), interval=0.01)
    return exec_done, status_done, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    why = netns.unavailable()
    if why is not None:
        print(f"fleet_scale skipped: {why}")
        return
    become_subreaper()

    bare, on_hosts, in_status = [], [], []
    splits = []
    with tempfile.TemporaryDirectory(prefix="stack-fleet-scale-") as tmp:
        # The daemons' shipped defaults for timing, not the fast ones the tests use.
        fleet = Fleet(Path(tmp), hosts=3, agent_timeout=10, reschedule_after=30,
                      heartbeat_interval=2.0)  # fmt: skip
        try:
            fleet.start()
            fleet.apply(STACK_FILE)
            for _ in range(ns.rounds):
                bare.append(bare_popen_loop(COUNT))
                exec_done, status_done, split = fleet_scale(fleet)
                on_hosts.append(exec_done)
                in_status.append(status_done)
                splits.append(split)
        finally:
            fleet.close()

    med = statistics.median
    print(f"{COUNT} x `sleep 3600` over 3 namespace hosts (spread), median of {ns.rounds} rounds")
    print(f"    bare Popen loop                       {med(bare) * 1000:8.1f} ms")
    print(f"    Scale 0 -> {COUNT} exec'd on the agents      {med(on_hosts) * 1000:8.1f} ms "
          f"({med(on_hosts) / med(bare):.2f}x the bare loop)")  # fmt: skip
    print(f"    Scale 0 -> {COUNT} RUNNING in Status         {med(in_status) * 1000:8.1f} ms")
    print(f"    split over hosts: {', '.join(f'{h}={n}' for h, n in sorted(splits[0].items()))}")


if __name__ == "__main__":
    main()
