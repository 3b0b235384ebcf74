"""Reloading the agents of a fleet one host after another, as an upgrade does, under load."""

from __future__ import annotations

import os
import signal
import threading
import time

from stack.v1 import admin_pb2
from tests.fleet.conftest import MakeFleet
from tests.support.fleet import WEB_PORT, Fleet, spread_webapp


def reexecuted_at(fleet: Fleet, host_id: str) -> float:
    reply = fleet.admin().Agents(admin_pb2.AgentsRequest(), timeout=5)
    found = {a.host_id: a for a in reply.agents}[host_id]
    return found.reexecuted_at if found.state == "ready" else 0.0


def test_reloading_every_agent_in_turn_under_load_fails_no_request_and_restarts_nothing(
    make_fleet: MakeFleet,
) -> None:
    # A reload takes about a second (a few on a loaded machine): within --agent-timeout
    # the host is not down, and far from --reschedule-after, as in production (10 s, 30 s).
    fleet = make_fleet(hosts=3, agent_timeout=5.0, reschedule_after=10.0)
    placed = spread_webapp(fleet, 6)
    assert sorted(len(wids) for wids in placed.values()) == [2, 2, 2]
    answers: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def rolling_client() -> None:
        """One request after another, to each host in turn."""
        while not stop.is_set():
            for host_id in fleet.host_ids:
                try:
                    answers.append(fleet.fetch(host_id, WEB_PORT))
                except OSError as exc:
                    failures.append(f"{host_id} at {time.strftime('%H:%M:%S')}: {exc!r}")

    client = threading.Thread(target=rolling_client, daemon=True)
    client.start()
    try:
        for host_id in fleet.host_ids:
            agent = fleet.agents[host_id]
            before = len(answers)
            os.kill(agent.pid, signal.SIGHUP)
            fleet.wait(
                lambda host=host_id: reexecuted_at(fleet, host) > 0,
                20,
                f"{host_id}'s agent to re-execute and reconnect",
                "webapp",
            )
            assert agent.alive(), f"{host_id}'s agent is the same process\n{fleet.logs()}"
            fleet.wait(lambda: fleet.running("webapp") == placed, 15, "the same workers", "webapp")
            fleet.wait(lambda n=before: len(answers) > n + 30, 15, "requests answered", "webapp")
    finally:
        stop.set()
        client.join(15)
    assert failures == [], f"{len(failures)} of {len(answers) + len(failures)} failed"
    served = set(answers)
    assert served == {pid for wids in placed.values() for pid in wids.values()}
    # Each agent told the controller it was reloading: no host went down, one
    # agent_reloaded event per host.

    def kinds() -> list[str]:
        return [e.kind for e in fleet.admin().Events(admin_pb2.EventsRequest(), timeout=5)]

    fleet.wait(lambda: kinds().count("agent_reloaded") == 3, 15, "3 agent_reloaded", "webapp")
    assert kinds().count("agent_down") == 0, kinds()
