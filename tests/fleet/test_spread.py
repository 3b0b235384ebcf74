"""Spread placement over three real hosts, and a shared socket served on each of them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.support.fleet import WEB_PORT, Fleet, spread_webapp
from tests.support.netns import namespace_of


def test_scale_to_8_over_3_hosts_runs_3_3_2_and_each_host_serves_its_own_workers(
    fleet: Fleet,
) -> None:
    placed = spread_webapp(fleet, 8)
    status: dict[str, Any] = fleet.status_json()
    (webapp,) = status["watchers"]
    processes = webapp["processes"]
    counts = Counter(p["host_id"] for p in processes if p["state"] == "running")
    assert sorted(counts.values()) == [2, 3, 3] and set(counts) == {"h1", "h2", "h3"}, counts
    assert sorted(p["wid"] for p in processes) == list(range(1, 9))
    for p in processes:
        assert namespace_of(p["pid"]) == fleet.node(p["host_id"]).inode, p
    for host_id, workers in sorted(placed.items()):
        answers = {fleet.fetch(host_id, WEB_PORT) for _ in range(30)}
        assert answers and answers <= set(workers.values()), (host_id, answers, workers)
