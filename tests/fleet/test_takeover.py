"""A host that is down while a controller takes over keeps its share as long as it would
have with the old controller: --reschedule-after, not just the new one's warm-up.

Replays what bench/chaos.py found (seed 3): the leader and one agent were killed
together; the new leader waited the agent timeout for reports, then placed the silent
host's workers elsewhere, and when that agent came back four seconds later (adopting its
workers) they were stopped there: workers restarted by a control-plane fault.
"""

from __future__ import annotations

import time

from tests.fleet.conftest import MakeFleet
from tests.support.fleet import spread_webapp


def test_a_host_down_across_a_controller_restart_keeps_its_workers(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(hosts=3, agent_timeout=1.0, reschedule_after=30.0)
    placed = spread_webapp(fleet, 6)
    assert placed.get("h2"), placed
    before = {host: fleet.workers_in(host) for host in fleet.host_ids}

    fleet.controller.kill9()
    fleet.kill_agent("h2")
    fleet.controller.start()
    fleet.wait(lambda: fleet.ready_hosts() == {"h1", "h3"}, 30, "h1 and h3 back", "webapp")
    # Well past the new controller's warm-up (the 1 s agent timeout), still far from 30 s:
    # nothing may start elsewhere in h2's stead.
    watch_until = time.monotonic() + 4.0
    while time.monotonic() < watch_until:
        for host in ("h1", "h3"):
            now = fleet.workers_in(host)
            assert now == before[host], f"{host} runs {now}, ran {before[host]}"
        time.sleep(0.2)

    fleet.restart_agent("h2")
    fleet.wait(lambda: fleet.running("webapp") == placed, 20, "the same workers", "webapp")
    assert {host: fleet.workers_in(host) for host in fleet.host_ids} == before


def test_a_rebalance_right_after_a_takeover_leaves_a_silent_hosts_share_alone(
    make_fleet: MakeFleet,
) -> None:
    """Replays bench/chaos.py seed 62: a rebalance issued while the new controller waited
    for its agents placed a silent host's workers elsewhere at once."""
    fleet = make_fleet(hosts=3, agent_timeout=1.0, reschedule_after=30.0)
    placed = spread_webapp(fleet, 6)
    assert placed.get("h3"), placed
    before = {host: fleet.workers_in(host) for host in fleet.host_ids}

    fleet.controller.kill9()
    fleet.kill_agent("h3")
    fleet.controller.start()
    fleet.wait(lambda: fleet.ready_hosts() == {"h1", "h2"}, 30, "h1 and h2 back", "webapp")
    rebalanced = fleet.stackctl("rebalance", "webapp", check=True)
    assert "webapp: 0 processes moved" in rebalanced.out, rebalanced
    watch_until = time.monotonic() + 3.0
    while time.monotonic() < watch_until:
        for host in ("h1", "h2"):
            now = fleet.workers_in(host)
            assert now == before[host], f"{host} runs {now}, ran {before[host]}"
        time.sleep(0.2)

    fleet.restart_agent("h3")
    fleet.wait(lambda: fleet.running("webapp") == placed, 20, "the same workers", "webapp")
    assert {host: fleet.workers_in(host) for host in fleet.host_ids} == before
