"""Draining a host moves its share away and keeps it away; undrain and rebalance bring it back."""

from __future__ import annotations

import time

from tests.fleet.conftest import MakeFleet
from tests.support.fleet import Fleet, spread_webapp
from tests.support.harness import RUNNING
from tests.support.processes import worker_processes

DRAINED = "h2"


def agent_states_shown(fleet: Fleet) -> dict[str, str]:
    """host id -> state, as `stackctl agents -o json` prints it."""
    agents = fleet.stackctl("-o", "json", "agents", check=True).json()["agents"]
    return {agent["host_id"]: agent["state"] for agent in agents}


def settled(fleet: Fleet, count: int) -> dict[int, tuple[str, int]] | None:
    """wid -> (host, pid) once wids 1..count are listed exactly once, all running, and the
    machine runs exactly those workers, each inside its host's namespace; else None."""
    procs = fleet.processes("webapp")
    if sorted(p.wid for p in procs) != list(range(1, count + 1)):
        return None
    if any(p.state != RUNNING for p in procs):
        return None
    placed = {p.wid: (p.host_id, p.pid) for p in procs}
    real = {proc.pid for proc in worker_processes(fleet.tag)}
    if real != {pid for _, pid in placed.values()}:
        return None
    for host_id in fleet.host_ids:
        inside = fleet.workers_in(host_id)
        if inside != {pid for host, pid in placed.values() if host == host_id}:
            return None
    return placed


def test_drain_moves_only_the_hosts_share_and_keeps_it_empty_until_undrain_and_rebalance(
    make_fleet: MakeFleet,
) -> None:
    # No host is lost here. An idle agent reports only every 2 s (the heartbeat the
    # controller sets in Welcome), so the default 1 s test timeout would mark it down.
    fleet = make_fleet(agent_timeout=5.0)
    before = spread_webapp(fleet, 8)
    assert before.get(DRAINED), before
    stayers = {
        wid: (host, pid) for host, wids in before.items() if host != DRAINED
        for wid, pid in wids.items()
    }  # fmt: skip

    drained = fleet.stackctl("drain", DRAINED, "--wait", "--timeout", "20")
    assert drained.code == 0, drained
    assert f"draining {DRAINED}" in drained.out, drained

    def drained_away() -> dict[int, tuple[str, int]] | None:
        placed = settled(fleet, 8)
        if placed is None or any(host == DRAINED for host, _ in placed.values()):
            return None
        return placed

    after = fleet.wait(drained_away, 10, f"8 workers off {DRAINED}", "webapp")
    assert not fleet.workers_in(DRAINED)
    for wid, where in stayers.items():
        assert after[wid] == where, f"webapp[{wid}] was disturbed by the drain of {DRAINED}"
    assert agent_states_shown(fleet) == {"h1": "ready", "h2": "draining", "h3": "ready"}

    # While draining, new workers go elsewhere; nothing ever starts on the drained host.
    fleet.stackctl("scale", "webapp", "10", check=True)

    def scaled_elsewhere() -> dict[int, tuple[str, int]] | None:
        started = fleet.workers_in(DRAINED)
        assert not started, f"{DRAINED} is draining but runs {started}"
        return settled(fleet, 10)

    scaled = fleet.wait(scaled_elsewhere, 15, "10 workers on h1 and h3", "webapp")
    assert {host for host, _ in scaled.values()} == {"h1", "h3"}, scaled
    assert all(scaled[wid] == where for wid, where in after.items()), "scaling moved workers"

    undrained = fleet.stackctl("undrain", DRAINED)
    assert undrained.code == 0, undrained
    assert agent_states_shown(fleet)[DRAINED] == "ready"
    assert not fleet.workers_in(DRAINED), "undrain moved workers back without a rebalance"

    rebalanced = fleet.stackctl("rebalance", "webapp", check=True)
    assert "processes moved" in rebalanced.out and "webapp: 0 " not in rebalanced.out, rebalanced

    def back_on_drained() -> dict[int, tuple[str, int]] | None:
        placed = settled(fleet, 10)
        if placed is None or not any(host == DRAINED for host, _ in placed.values()):
            return None
        return placed

    final = fleet.wait(back_on_drained, 15, f"rebalance to put workers on {DRAINED}", "webapp")
    per_host = {h: sum(1 for host, _ in final.values() if host == h) for h in fleet.host_ids}
    assert sorted(per_host.values()) == [3, 3, 4], per_host


def test_a_drained_host_with_nothing_left_to_run_stays_draining_and_never_shows_down(
    make_fleet: MakeFleet,
) -> None:
    # The fleet's default 1 s agent timeout: an idle agent must still be heard in time.
    fleet = make_fleet(hosts=2)
    spread_webapp(fleet, 2)
    fleet.stackctl("drain", DRAINED, "--wait", "--timeout", "20", check=True)
    fleet.wait(lambda: settled(fleet, 2), 10, "2 workers on h1 only", "webapp")
    assert not fleet.workers_in(DRAINED)
    # Nothing changes on the idle host now; watch for longer than any heartbeat period.
    seen = []
    watch_until = time.monotonic() + 3.0
    while time.monotonic() < watch_until:
        seen.append(fleet.agent_states()[DRAINED])
        time.sleep(0.1)
    shown = {state: seen.count(state) for state in sorted(set(seen))}
    assert shown == {"draining": len(seen)}, f"{DRAINED} was shown as {shown} out of {len(seen)}"
