"""Rolling changes across three hosts: batches fleet-wide; a halted rollout keeps serving."""

from __future__ import annotations

from typing import Any

import psutil

from tests.fleet.conftest import MakeFleet
from tests.support.fleet import WEB_PORT, Fleet
from tests.support.harness import RUNNING
from tests.support.workers import watcher_toml

COUNT = 6


def web_stack(tag: str, *flags: str, max_parallel: int = 2, min_uptime: float = 0.5) -> str:
    """webapp serving its pid on port 8080 of every host, rolled `max_parallel` at a time."""
    head = f'[sockets.web]\nhost = "0.0.0.0"\nport = {WEB_PORT}\n\n'
    return head + watcher_toml(
        "webapp", tag, "--serve-fd", "$(circus.sockets.web)", *flags,
        numprocesses=COUNT, sockets=["web"], graceful_timeout=2,
        update={"max_parallel": max_parallel, "min_uptime": min_uptime},
    )  # fmt: skip


def cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return ""


def placed(fleet: Fleet) -> dict[int, tuple[str, int]] | None:
    """wid -> (host, pid) once all COUNT run, else None."""
    procs = fleet.processes("webapp")
    if len(procs) != COUNT or any(p.state != RUNNING for p in procs):
        return None
    return {p.wid: (p.host_id, p.pid) for p in procs}


def rollout(fleet: Fleet) -> str:
    status: dict[str, Any] = fleet.status_json()
    (webapp,) = status["watchers"]
    return str(webapp["rollout"])


def start(fleet: Fleet) -> dict[int, tuple[str, int]]:
    fleet.apply(web_stack(fleet.tag))
    before = fleet.wait(lambda: placed(fleet), 20, f"{COUNT} webapp workers", "webapp")
    assert {host for host, _ in before.values()} == {"h1", "h2", "h3"}, before
    return before


def test_a_rolling_change_replaces_every_host_in_batches_and_never_drops_below_the_rest(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(agent_timeout=5.0)
    before = start(fleet)

    fleet.apply(web_stack(fleet.tag, "--lines", "1"))

    fewest_running = COUNT

    def rolled() -> dict[int, tuple[str, int]] | None:
        nonlocal fewest_running
        procs = fleet.processes("webapp")
        fewest_running = min(fewest_running, sum(1 for p in procs if p.state == RUNNING))
        now = placed(fleet)
        if now is None or any("--lines 1" not in cmdline(pid) for _, pid in now.values()):
            return None
        return now if rollout(fleet) == "" else None

    after = fleet.wait(rolled, 40, "every webapp worker on the new version", "webapp")
    # Each process was replaced where it ran: a rollout moves no process to another host.
    assert {wid: host for wid, (host, _) in after.items()} == {
        wid: host for wid, (host, _) in before.items()
    }
    assert all(after[wid][1] != before[wid][1] for wid in before)
    # Never more than one batch (max_parallel 2) down at a time.
    assert fewest_running >= COUNT - 2, fewest_running
    batches = [e.message for e in fleet.events("rollout")]
    assert batches[-3:] == [
        "webapp: rolling out: 0 of 6 replaced, replacing 1, 2",
        "webapp: rolling out: 2 of 6 replaced, replacing 3, 4",
        "webapp: rolling out: 4 of 6 replaced, replacing 5, 6",
    ]
    assert fleet.events("rollout_done")
    for host_id in ("h1", "h2", "h3"):
        pids = {pid for host, pid in after.values() if host == host_id}
        assert fleet.fetch(host_id, WEB_PORT) in pids


def test_a_new_version_that_flaps_halts_the_rollout_and_the_old_workers_keep_serving(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(agent_timeout=5.0)
    before = start(fleet)

    # A version that crashes at once, but whose interpreter may take more than a second to
    # get there on a loaded machine: min_uptime must be longer than that, or worker 1 counts
    # as up before it crashes and the rollout goes on to worker 2.
    fleet.apply(web_stack(fleet.tag, "--exit", "3", max_parallel=1, min_uptime=10))

    fleet.wait(lambda: rollout(fleet).startswith("rollout halted") or None, 30, "a halt", "webapp")
    halted = rollout(fleet)
    host_1 = before[1][0]
    assert f"worker 1 on {host_1} failed" in halted and "exit code 3" in halted, halted
    assert fleet.events("rollout_halted")

    # Worker 1 serves the old version again; no other worker was touched.
    after = fleet.wait(lambda: placed(fleet), 20, "all workers running again", "webapp")
    assert after[1][0] == host_1 and "--exit" not in cmdline(after[1][1])
    assert {wid: where for wid, where in after.items() if wid != 1} == {
        wid: where for wid, where in before.items() if wid != 1
    }
    for host_id in ("h1", "h2", "h3"):
        pids = {pid for host, pid in after.values() if host == host_id}
        assert fleet.fetch(host_id, WEB_PORT) in pids
    text = fleet.stackctl("status", check=True).out
    assert "rollout halted" in text
