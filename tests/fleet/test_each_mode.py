"""Watchers that run on every host (`mode = "each"`) across a controller restart and a drain.

Their worker ids are unique in the fleet, not 1..N on each host: with one worker per
host, h1 runs worker 1, h2 worker 2, h3 worker 3. Both tests replay what bench/chaos.py
found (seed 2): a controller that took over ignored h2's and h3's reports (a worker id
above numprocesses looked like no worker of theirs) and had those workers stopped and
started again; and a drained host kept its `each` worker forever, since no replacement
would ever run elsewhere.
"""

from __future__ import annotations

import time

from tests.fleet.conftest import MakeFleet
from tests.support.fleet import Fleet
from tests.support.harness import RUNNING
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def each_stack(tag: str) -> str:
    return watcher_toml(
        "sidecar", tag, numprocesses=1, graceful_timeout=2, placement={"mode": "each"}
    ) + watcher_toml(
        "capped", tag, numprocesses=6, graceful_timeout=2, placement={"max_per_host": 2}
    )  # fmt: skip


def on_hosts(fleet: Fleet) -> dict[str, set[int]]:
    """host -> the worker pids inside its namespace (the kernel's word)."""
    return {host: fleet.workers_in(host) for host in fleet.host_ids}


def all_running(fleet: Fleet, watcher: str, count: int) -> dict[int, tuple[str, int]] | None:
    procs = fleet.processes(watcher)
    if len(procs) != count or any(p.state != RUNNING for p in procs):
        return None
    return {p.wid: (p.host_id, p.pid) for p in procs}


def test_a_controller_restart_keeps_every_hosts_each_worker(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(hosts=3, agent_timeout=1.0, reschedule_after=30.0)
    fleet.apply(each_stack(fleet.tag))
    placed = fleet.wait(lambda: all_running(fleet, "sidecar", 3), 20, "a sidecar per host",
                        "sidecar")  # fmt: skip
    assert sorted(host for host, _ in placed.values()) == ["h1", "h2", "h3"], placed
    assert max(placed) > 1, "the ids of an each watcher are unique in the fleet"
    fleet.wait(lambda: all_running(fleet, "capped", 6), 20, "capped's six", "capped")
    before = on_hosts(fleet)

    fleet.controller.kill9()
    fleet.controller.start()
    fleet.wait(lambda: fleet.ready_hosts() == set(fleet.host_ids), 30, "the agents back",
               "sidecar")  # fmt: skip
    # The new controller's warm-up (the agent timeout) and a few placements after it.
    watch_until = time.monotonic() + 4.0
    while time.monotonic() < watch_until:
        now = on_hosts(fleet)
        assert now == before, f"workers changed across the controller restart: {before} -> {now}"
        time.sleep(0.2)
    assert fleet.wait(lambda: all_running(fleet, "sidecar", 3), 10, "status", "sidecar") == placed


def test_drain_stops_the_workers_that_have_nowhere_else_to_go(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(hosts=3, agent_timeout=5.0)
    fleet.apply(each_stack(fleet.tag))
    fleet.wait(lambda: all_running(fleet, "sidecar", 3), 20, "a sidecar per host", "sidecar")
    fleet.wait(lambda: all_running(fleet, "capped", 6), 20, "capped's six", "capped")
    before = on_hosts(fleet)

    drained = fleet.stackctl("drain", "h2", "--wait", "--timeout", "20")
    assert drained.code == 0, drained
    wait_for(lambda: not fleet.workers_in("h2"), 10, "h2 to run nothing")
    for host in ("h1", "h3"):
        assert on_hosts(fleet)[host] == before[host], f"the drain of h2 disturbed {host}"
    sidecars = fleet.wait(lambda: all_running(fleet, "sidecar", 2), 10, "two sidecars", "sidecar")
    assert sorted(host for host, _ in sidecars.values()) == ["h1", "h3"]
    status = next(w for w in fleet.status("capped").watchers if w.name == "capped")
    assert status.pending == 2 and "max_per_host 2" in status.pending_reason, status
