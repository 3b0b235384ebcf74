"""The controller's rules about time, on a fake clock in milliseconds.

A real Controller over a real SQLite store, with agents' sessions driven in-process
(their hellos and reports as the AgentService would hand them over, decoded) and the
loops' steps called by hand: the warm-up after a takeover, silence, loss, rollout
batches and min_uptime, and the pace of refusal warnings, each checked at its edge.
The integration tests check the same rules through real daemons and real seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from stack.controller.agents import AgentSession
from stack.controller.controller import Controller
from stack.controller.metrics import SCRAPE_LOOK_SECONDS
from stack.controller.settings import ControllerSettings
from stack.controller.store.sqlite import SqliteStore
from stack.spec.observed import Observed, ProcessState, ProcessStatus
from stack.spec.session import LOOK_SECONDS, Hello, StatsWanted, Welcome
from tests.support.clock import FakeClock

MS = 0.001
TIMEOUT = 10.0
RESCHEDULE = 30.0
WEB = """
[watchers.web]
cmd = "serve"
numprocesses = 2
[watchers.web.update]
min_uptime = 1.0
"""


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


async def controller(path: Path, clock: FakeClock) -> Controller:
    """A controller leading on the store at `path` (a takeover when it holds a stack)."""
    store = SqliteStore(path / "controller.db")
    settings = ControllerSettings(data_dir=path, agent_timeout=TIMEOUT, reschedule_after=RESCHEDULE)
    c = Controller(settings, store, store.acquire_term(), clock=clock.now, wall=clock.now)
    await c.load()
    return c


def running(host: str, version: str, *wids: int, pid: int = 100) -> Observed:
    return Observed(
        processes=tuple(
            ProcessStatus(
                "web", wid, pid + wid, ProcessState.RUNNING, host_id=host, version=version
            )
            for wid in wids
        )
    )


def connect(c: Controller, host: str, observed: Observed | None = None) -> AgentSession:
    return c.sessions.agent_connected(Hello(host, observed=observed or Observed()), host)


def told(c: Controller, host: str) -> tuple[int, ...]:
    """The web worker ids `host` was last told to run."""
    session = c.agents.records[host].session
    assert session is not None and session.last_assignment is not None
    shares = {share.spec.name: share.wids for share in session.last_assignment.watchers}
    return shares.get("web", ())


def kinds(c: Controller) -> list[str]:
    return [event.kind for event in c.events.recent()]


def test_a_takeover_runs_only_what_agents_report_until_reschedule_after_has_passed(
    tmp_path: Path,
) -> None:
    """One agent timeout for agents to report, then (chaos seed 3) up to reschedule_after
    for a host down across the takeover to come back with what nobody reported."""

    async def test() -> None:
        clock = FakeClock()
        first = await controller(tmp_path, clock)
        await first.apply(WEB, "web.toml", dry_run=False)
        first.store.close()
        c = await controller(tmp_path, clock)  # the takeover
        label = c.state.version("web").label
        session = connect(c, "h1", running("h1", label, 1))
        c.scheduler.reschedule()
        assert told(c, "h1") == (1,), "worker 2 waits: another agent may still report it"
        clock.advance(TIMEOUT - MS)
        c.sessions.agent_message(session, running("h1", label, 1))
        c.sessions.check_liveness()
        assert told(c, "h1") == (1,)
        clock.advance(MS)
        c.sessions.check_liveness()
        assert told(c, "h1") == (1,), "the warm-up is over, worker 2 is held: its host may be down"
        clock.advance(RESCHEDULE - TIMEOUT - MS)
        c.sessions.agent_message(session, running("h1", label, 1))
        c.sessions.check_liveness()
        assert told(c, "h1") == (1,)
        clock.advance(MS)
        c.sessions.check_liveness()
        assert told(c, "h1") == (1, 2), "reschedule_after has passed: what is missing is placed"
        assert "agent_down" not in kinds(c)

    run(test)


def test_a_silent_agent_keeps_its_share_until_lost_then_it_moves(tmp_path: Path) -> None:
    async def test() -> None:
        clock = FakeClock()
        c = await controller(tmp_path, clock)
        connect(c, "h1")
        h2 = connect(c, "h2")
        await c.apply(WEB, "web.toml", dry_run=False)
        assert (told(c, "h1"), told(c, "h2")) == ((1,), (2,))
        clock.advance(TIMEOUT + MS)
        c.sessions.agent_message(h2, Observed())
        c.sessions.check_liveness()
        assert kinds(c)[-1] == "agent_down" and not c.agents.records["h1"].ready
        assert told(c, "h2") == (2,), "down is not lost: h1 keeps worker 1 for now"
        for _ in range(3):  # h2 stays heard from
            clock.advance(RESCHEDULE / 3 - MS)
            c.sessions.agent_message(h2, Observed())
            c.sessions.check_liveness()
        assert told(c, "h2") == (2,), f"lost only {RESCHEDULE:g}s after going down"
        clock.advance(3 * MS)
        c.sessions.agent_message(h2, Observed())
        c.sessions.check_liveness()
        assert told(c, "h2") == (1, 2)
        assert kinds(c)[-1] == "agent_lost"

    run(test)


def test_a_rollout_batch_counts_as_up_after_min_uptime_to_the_millisecond(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        clock = FakeClock()
        c = await controller(tmp_path, clock)
        session = connect(c, "h1")
        await c.apply(WEB.replace("numprocesses = 2", "numprocesses = 1"), "web.toml", False)
        old = c.state.version("web").label
        c.sessions.agent_message(session, running("h1", old, 1))
        await c.apply(WEB.replace('"serve"', '"serve --v2"').replace("= 2", "= 1"), "w", False)
        new = c.state.version("web").label
        assert kinds(c)[-2:] == ["rollout_started", "apply"]
        await c.rollouts.advance()
        assert kinds(c)[-1] == "rollout", "the first batch: worker 1"
        c.sessions.agent_message(session, running("h1", new, 1, pid=500))
        await c.rollouts.advance()  # first seen running now
        clock.advance(1.0 - MS)
        await c.rollouts.advance()
        assert c.state.watchers["web"].rollout is not None
        clock.advance(MS)
        await c.rollouts.advance()
        assert c.state.watchers["web"].rollout is None
        assert kinds(c)[-1] == "rollout_done"

    run(test)


def test_refused_reports_are_told_at_most_once_every_ten_seconds(tmp_path: Path) -> None:
    async def test() -> None:
        clock = FakeClock()
        c = await controller(tmp_path, clock)
        session = connect(c, "h1")
        await c.apply(WEB, "web.toml", dry_run=False)
        stranger = Observed(processes=(ProcessStatus("db", 1, 7, ProcessState.RUNNING),))
        c.sessions.agent_message(session, stranger)
        assert kinds(c).count("agent_refused") == 1
        clock.advance(10.0 - MS)
        c.sessions.agent_message(session, stranger)
        c.sessions.check_liveness()
        assert kinds(c).count("agent_refused") == 1
        clock.advance(MS)
        c.sessions.check_liveness()
        assert kinds(c).count("agent_refused") == 2
        assert "1 reports of workers not assigned to it ignored" in c.events.recent()[-1].message

    run(test)


async def queued(session: AgentSession) -> list[object]:
    """The messages queued for `session`, read off its queue (nothing more comes within
    10 ms: everything here is queued synchronously by the calls under test)."""
    found: list[object] = []
    while True:
        try:
            item = await asyncio.wait_for(session.next(), 0.01)
        except TimeoutError:
            return found
        if item is not None:
            found.append(item[1])


async def welcomes(session: AgentSession) -> list[float]:
    """The heartbeat intervals of the Welcomes queued for `session`."""
    return [m.heartbeat_interval for m in await queued(session) if isinstance(m, Welcome)]


def test_a_growing_fleet_is_told_a_longer_interval_a_few_agents_at_a_time(
    tmp_path: Path,
) -> None:
    """At most 2 heartbeats a second: 4 agents heartbeat every 2 s, 8 every 4 s (told at
    2 a second, one per check of half a second), and a silent agent is down after 20 s,
    not 10; back to 4 agents, they are told 2 s again but keep 20 s until the longer
    interval's timeout has passed."""

    async def test() -> None:
        clock = FakeClock()
        store = SqliteStore(tmp_path / "controller.db")
        settings = ControllerSettings(
            data_dir=tmp_path, agent_timeout=TIMEOUT, reschedule_after=RESCHEDULE,
            max_heartbeats=2.0,
        )  # fmt: skip
        c = Controller(settings, store, store.acquire_term(), clock=clock.now, wall=clock.now)
        await c.load()
        hosts = [f"h{i}" for i in range(1, 9)]
        sessions = {host: connect(c, host) for host in hosts[:4]}
        c.sessions.check_liveness(0.5)
        assert [await welcomes(s) for s in sessions.values()] == [[2.0]] * 4
        sessions |= {host: connect(c, host) for host in hosts[4:]}
        assert [await welcomes(sessions[h]) for h in hosts[4:]] == [[2.0]] * 4, "not counted yet"
        told_each_check = []
        for _ in range(8):
            c.sessions.check_liveness(0.5)
            told = [h for h in hosts if await welcomes(sessions[h]) == [4.0]]
            told_each_check.append(len(told))
        assert told_each_check == [1] * 8, "one a check: 2 a second"
        assert {c.agents.records[h].heartbeat for h in hosts} == {4.0}
        clock.advance(TIMEOUT + MS)
        for host in hosts[1:]:
            c.sessions.agent_message(sessions[host], Observed())
        c.sessions.check_liveness(0.5)
        assert c.agents.records["h1"].ready, "told 4 s: down after 20 s of silence"
        clock.advance(2 * TIMEOUT - TIMEOUT)
        for host in hosts[1:]:
            c.sessions.agent_message(sessions[host], Observed())
        c.sessions.check_liveness(0.5)
        assert not c.agents.records["h1"].ready
        assert "agent h1 silent for 20s" in [e.message for e in c.events.recent()]
        for host in hosts[1:4]:
            c.sessions.agent_disconnected(sessions[host])
        assert sum(r.ready for r in c.agents.records.values()) == 4
        c.sessions.check_liveness(0.5)  # one told 2 s now, the next ones in later checks
        shrunk_at = clock.now()
        for _ in range(3):
            c.sessions.check_liveness(0.5)
        assert [await welcomes(sessions[h]) for h in hosts[4:]] == [[2.0]] * 4
        clock.advance(2 * TIMEOUT)
        c.sessions.check_liveness(0.5)
        assert all(c.agents.records[h].ready for h in hosts[4:]), "20 s still, exactly"
        assert clock.now() == shrunk_at + 2 * TIMEOUT
        clock.advance(MS)
        c.sessions.check_liveness(0.5)
        assert not any(c.agents.records[h].ready for h in hosts[4:]), "then 10 s"

    run(test)


async def stats_asks(session: AgentSession) -> list[float]:
    """The seconds of the StatsWanted queued for `session`."""
    return [m.seconds for m in await queued(session) if isinstance(m, StatsWanted)]


def test_a_steady_scraper_asks_each_agent_to_sample_once_every_thirty_seconds(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        clock = FakeClock()
        c = await controller(tmp_path, clock)
        session = connect(c, "h1")
        await stats_asks(session)  # the Welcome and the first Assignment
        assert c.commands.want_stats(SCRAPE_LOOK_SECONDS) == 1
        assert await stats_asks(session) == [SCRAPE_LOOK_SECONDS]
        for _ in range(29):  # a scrape every second, and a status now and then
            clock.advance(1.0)
            assert c.commands.want_stats(SCRAPE_LOOK_SECONDS) == 0
            assert c.commands.want_stats() == 0
        clock.advance(1.0 - MS)
        assert c.commands.want_stats(SCRAPE_LOOK_SECONDS) == 0
        clock.advance(MS)
        assert c.commands.want_stats(SCRAPE_LOOK_SECONDS) == 1
        assert await stats_asks(session) == [SCRAPE_LOOK_SECONDS]
        # nobody scrapes any more: a status alone asks for its own 10 s once the scrape's
        # minute has less than 5 s to run
        clock.advance(SCRAPE_LOOK_SECONDS - LOOK_SECONDS / 2 - MS)
        assert c.commands.want_stats() == 0
        clock.advance(MS)
        assert c.commands.want_stats() == 1
        assert await stats_asks(session) == [LOOK_SECONDS]

    run(test)
