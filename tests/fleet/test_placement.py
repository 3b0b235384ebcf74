"""Placement constraints on real hosts: labels and max_per_host, and mode "each"."""

from __future__ import annotations

import time
from typing import Any

from tests.fleet.conftest import MakeFleet
from tests.support.fleet import Fleet
from tests.support.harness import RUNNING
from tests.support.processes import worker_processes
from tests.support.workers import watcher_toml

REASON = "no eligible agent (labels role=web, max_per_host 2)"


def service_stack(tag: str, numprocesses: int, placement: str) -> str:
    """Watcher `svc`: idle workers, with `placement` as the body of its placement table."""
    body = watcher_toml("svc", tag, numprocesses=numprocesses, graceful_timeout=1)
    return f"{body}[watchers.svc.placement]\n{placement}\n"


def on_hosts(fleet: Fleet) -> dict[str, dict[int, int]] | None:
    """host -> wid -> pid of svc, once every listed process runs, no wid is listed twice,
    and each host's namespace holds exactly the workers listed on it; else None."""
    procs = fleet.processes("svc")
    wids = [p.wid for p in procs]
    if any(p.state != RUNNING for p in procs) or len(set(wids)) != len(wids):
        return None
    running = fleet.running("svc")
    for host_id in fleet.host_ids:
        if fleet.workers_in(host_id) != set(running.get(host_id, {}).values()):
            return None
    return running


def test_labels_and_max_per_host_place_2_on_each_web_host_and_report_the_other_2_pending(
    make_fleet: MakeFleet,
) -> None:
    web = {"role": "web"}
    # A long agent timeout: h3, idle, must not show down (see test_drain.py).
    fleet = make_fleet(labels={"h1": web, "h2": web}, agent_timeout=5.0)
    placement = 'max_per_host = 2\nlabels = { role = "web" }'
    fleet.apply(service_stack(fleet.tag, 6, placement))

    def two_per_web_host() -> dict[str, dict[int, int]] | None:
        running = on_hosts(fleet)
        if running is None or {h: len(w) for h, w in running.items()} != {"h1": 2, "h2": 2}:
            return None
        return running

    running = fleet.wait(two_per_web_host, 15, "2 svc workers on h1 and on h2", "svc")
    assert not fleet.workers_in("h3"), "h3 lacks role=web but runs workers"
    wids = [wid for by_wid in running.values() for wid in by_wid]
    assert len(set(wids)) == 4 and set(wids) <= set(range(1, 7)), running
    real = {proc.pid for proc in worker_processes(fleet.tag)}
    assert real == {pid for by_wid in running.values() for pid in by_wid.values()}

    status: dict[str, Any] = fleet.status_json()
    (svc,) = status["watchers"]
    assert (svc["running"], svc["pending"], svc["pending_reason"]) == (4, 2, REASON), svc
    text = fleet.stackctl("status", "--summary", "-o", "wide", check=True).out
    assert text == f"svc  4/6 running, active, 2 pending: {REASON}\n", text


def test_mode_each_runs_2_on_every_host_and_a_lost_hosts_workers_are_not_moved(
    make_fleet: MakeFleet,
) -> None:
    # The killed agent's connection closes, so it is down at once. A long agent
    # timeout keeps the others, idle workers and so quiet, from showing down.
    fleet = make_fleet(agent_timeout=5.0)
    fleet.apply(service_stack(fleet.tag, 2, 'mode = "each"'))

    def two_everywhere() -> dict[str, dict[int, int]] | None:
        running = on_hosts(fleet)
        if running is None or {h: len(w) for h, w in running.items()} != dict.fromkeys(
            fleet.host_ids, 2
        ):
            return None
        return running

    before = fleet.wait(two_everywhere, 15, "2 svc workers on every host", "svc")
    assert len({wid for by_wid in before.values() for wid in by_wid}) == 6, before

    victim = "h1"
    fleet.kill_agent(victim)
    fleet.wait(
        lambda: fleet.agent_states().get(victim) == "down",
        10,
        f"{victim} to show as down",
        "svc",
    )
    # The controller moves a lost host's share once it has been down for
    # --reschedule-after; nothing may move here, so watch past that point for
    # longer than a move takes (the whole fleet started its workers faster).
    survivors = {host: wids for host, wids in before.items() if host != victim}
    watch_until = time.monotonic() + fleet.reschedule_after + 2.0
    while time.monotonic() < watch_until:
        running = fleet.running("svc")
        others = {host: wids for host, wids in running.items() if host != victim}
        assert others == survivors, f"{victim}'s share moved: {others} != {survivors}"
        for host_id, wids in survivors.items():
            assert fleet.workers_in(host_id) == set(wids.values()), fleet.describe("svc")
        time.sleep(0.1)
    assert fleet.agent_states()[victim] == "down"
