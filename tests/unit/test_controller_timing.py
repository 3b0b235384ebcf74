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
from stack.controller.settings import ControllerSettings
from stack.controller.store.sqlite import SqliteStore
from stack.spec.observed import Observed, ProcessState, ProcessStatus
from stack.spec.session import Hello
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
