"""A host that is down while a controller takes over keeps its share as long as it would
have with the old controller: --reschedule-after, not just the new one's warm-up.

Replays what bench/chaos.py found: the leader and one agent were killed together; the new
leader waited the agent timeout for reports, then placed the silent host's workers
elsewhere (seed 3), or did so at once for a rebalance issued meanwhile (seed 62), and when
that agent came back seconds later (adopting its workers) they were stopped there: workers
restarted by a control-plane fault.
"""

from __future__ import annotations

import time

from tests.fleet.conftest import MakeFleet
from tests.support.fleet import Fleet, spread_webapp


def lose_controller_and(fleet: Fleet, silent: str) -> dict[str, set[int]]:
    """Kill the controller and `silent`'s agent, start the controller again and wait for
    the other agents: host -> its worker pids before."""
    before = {host: fleet.workers_in(host) for host in fleet.host_ids}
    fleet.controller.kill9()
    fleet.kill_agent(silent)
    fleet.controller.start()
    others = set(fleet.host_ids) - {silent}
    fleet.wait(lambda: fleet.ready_hosts() == others, 30, f"{sorted(others)} back", "webapp")
    return before


def nothing_starts_elsewhere(fleet: Fleet, silent: str, before: dict[str, set[int]]) -> None:
    """For a few seconds, past the new controller's warm-up (the 1 s agent timeout) and far
    from its 30 s reschedule delay, no host runs anything new in `silent`'s stead."""
    watch_until = time.monotonic() + 3.0
    while time.monotonic() < watch_until:
        for host in set(fleet.host_ids) - {silent}:
            now = fleet.workers_in(host)
            assert now == before[host], f"{host} runs {now}, ran {before[host]}"
        time.sleep(0.2)


def comes_back_to_the_same(
    fleet: Fleet, silent: str, placed: dict[str, dict[int, int]], before: dict[str, set[int]]
) -> None:
    fleet.restart_agent(silent)
    fleet.wait(lambda: fleet.running("webapp") == placed, 20, "the same workers", "webapp")
    assert {host: fleet.workers_in(host) for host in fleet.host_ids} == before


def test_a_host_down_across_a_controller_restart_keeps_its_workers(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(hosts=3, agent_timeout=1.0, reschedule_after=30.0)
    placed = spread_webapp(fleet, 6)
    assert placed.get("h2"), placed
    before = lose_controller_and(fleet, "h2")
    nothing_starts_elsewhere(fleet, "h2", before)
    comes_back_to_the_same(fleet, "h2", placed, before)


def test_a_rebalance_right_after_a_takeover_leaves_a_silent_hosts_share_alone(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(hosts=3, agent_timeout=1.0, reschedule_after=30.0)
    placed = spread_webapp(fleet, 6)
    assert placed.get("h3"), placed
    before = lose_controller_and(fleet, "h3")
    rebalanced = fleet.stackctl("rebalance", "webapp", check=True)
    assert "webapp: 0 processes moved" in rebalanced.out, rebalanced
    nothing_starts_elsewhere(fleet, "h3", before)
    comes_back_to_the_same(fleet, "h3", placed, before)
