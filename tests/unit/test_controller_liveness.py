"""When the controller holds an agent down, and when lost; when a takeover's warm-up ends:
silence and down time on a fake clock.

Liveness is decided by a pure function of the agents' records and the time
(stack.controller.liveness.check); the registry keeps the records with the clocks it is
given. The integration and fleet tests check the same rules with real daemons and real
seconds, these check their edges exactly, to the millisecond.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stack.controller import heartbeats, liveness
from stack.controller.agents import AgentRegistry
from stack.spec.reports import Severity
from stack.spec.session import Hello
from tests.support.clock import FakeClock

TIMEOUT = 10.0
RESCHEDULE = 30.0
TIMEOUTS = liveness.Timeouts(TIMEOUT, RESCHEDULE)
MS = 0.001


def registry(clock: FakeClock, *hosts: str) -> AgentRegistry:
    agents = AgentRegistry(queue_size=10, wall=clock.now, mono=clock.now)
    for host in hosts:
        agents.connect(Hello(host_id=host), peer=f"{host}.test")
    return agents


def check(
    agents: AgentRegistry, clock: FakeClock, announced: frozenset[str] = frozenset()
) -> liveness.Liveness:
    """One check, applied as the controller applies it: the silent agents go down."""
    found = liveness.check(
        agents.records.values(), clock.now(), TIMEOUTS, announced_lost=announced, warm_until=0.0
    )
    for host_id in found.silent:
        agents.mark_down(host_id, clock.now())
    return found


def test_an_agent_is_down_only_once_silent_for_longer_than_the_timeout() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    clock.advance(TIMEOUT)
    assert check(agents, clock).silent == (), "exactly the timeout is not longer than it"
    clock.advance(MS)
    found = check(agents, clock)
    assert found.silent == ("h1",)
    assert [(n.kind, n.message, n.severity) for n in found.notes] == [
        ("agent_down", "agent h1 silent for 10s", Severity.WARNING)
    ]
    assert check(agents, clock).silent == (), "marked down once"
    assert not agents.records["h1"].ready


def test_every_message_starts_the_silence_again() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1", "h2")
    session = agents.records["h1"].session
    assert session is not None
    for _ in range(5):
        clock.advance(TIMEOUT * 0.9)
        agents.heard(session)
    assert check(agents, clock).silent == ("h2",), "h1 was heard within every timeout"
    assert agents.records["h1"].last_seen == clock.now()


def test_a_down_agent_heard_again_comes_back() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    clock.advance(TIMEOUT + 1)
    assert check(agents, clock).silent == ("h1",)
    session = agents.records["h1"].session
    assert session is not None
    record, came_back = agents.heard(session)
    assert record is not None and came_back and record.ready


def test_its_share_is_lost_after_reschedule_after_of_being_down_and_told_once() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1", "h2")
    clock.advance(TIMEOUT + 1)
    check(agents, clock)
    clock.advance(RESCHEDULE - MS)
    assert check(agents, clock).lost == frozenset()
    clock.advance(MS)
    found = check(agents, clock)
    assert found.lost == {"h1", "h2"}
    assert [n.kind for n in found.notes] == ["agent_lost", "agent_lost"]
    assert "agent h1 down for 30s" in found.notes[0].message
    again = check(agents, clock, announced=found.lost)
    assert again.lost == found.lost and again.notes == ()
    assert not again.reschedule(found.lost), "nothing changed since the last placement"


def test_a_silent_agent_is_lost_at_once_when_reschedule_after_is_zero() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    clock.advance(TIMEOUT + MS)
    found = liveness.check(
        agents.records.values(),
        clock.now(),
        liveness.Timeouts(TIMEOUT, 0.0),
        announced_lost=frozenset(),
        warm_until=0.0,
    )
    assert (found.silent, found.lost) == (("h1",), {"h1"})
    assert [n.kind for n in found.notes] == ["agent_down", "agent_lost"]


def test_a_closed_stream_is_down_at_once_and_lost_after_reschedule_after() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    session = agents.records["h1"].session
    assert session is not None
    assert agents.disconnect(session)
    assert not agents.records["h1"].ready
    clock.advance(RESCHEDULE)
    found = check(agents, clock)
    assert found.silent == () and found.lost == {"h1"}
    assert found.reschedule(frozenset())


def test_a_replaced_stream_ending_changes_nothing() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    old = agents.records["h1"].session
    assert old is not None
    agents.connect(Hello(host_id="h1"), peer="h1.test")
    assert not agents.disconnect(old), "the host reconnected: the old stream is not its own"
    assert agents.records["h1"].ready


def reloading(agents: AgentRegistry, host: str) -> None:
    """What the controller does with a Reloading notice, then the end of the stream."""
    record = agents.records[host]
    session = record.session
    assert session is not None
    agents.heard(session)
    record.reloading = True
    assert not agents.disconnect(session), "a reloading agent is not down"


def test_a_reloading_agent_stays_ready_until_its_new_image_says_hello() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    reloading(agents, "h1")
    record = agents.records["h1"]
    assert record.ready and record.session is None
    assert record.shown_state(frozenset()) == "reloading"
    assert agents.reporting() == [record], "its last report stands"
    assert agents.ready() == [], "nothing is sent to it meanwhile"
    clock.advance(TIMEOUT)
    assert check(agents, clock).silent == ()
    agents.connect(Hello(host_id="h1", reexecuted_at=clock.now()), peer="h1.test")
    assert record.ready and not record.reloading
    assert record.shown_state(frozenset()) == "ready"


def test_a_reloading_agent_silent_past_the_timeout_is_down_and_says_why() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    reloading(agents, "h1")
    clock.advance(TIMEOUT + MS)
    found = check(agents, clock)
    assert found.silent == ("h1",)
    assert [n.message for n in found.notes] == [
        "agent h1 did not come back from its reload within 10s"
    ]
    assert agents.records["h1"].shown_state(frozenset()) == "down"


def test_a_takeover_waits_one_agent_timeout_before_placing_what_no_agent_reports() -> None:
    clock = FakeClock()
    until = liveness.warm_until(clock.now(), TIMEOUTS, stored_watchers=True)
    assert liveness.warm_until(clock.now(), TIMEOUTS, stored_watchers=False) == 0.0
    agents = registry(clock, "h1")
    session = agents.records["h1"].session
    assert session is not None
    steps = []
    for _ in range(3):
        clock.advance(TIMEOUT / 2 - MS)
        agents.heard(session)
        found = liveness.check(
            agents.records.values(), clock.now(), TIMEOUTS, announced_lost=frozenset(),
            warm_until=until,
        )  # fmt: skip
        steps.append((liveness.warming(clock.now(), until), found.warmed))
    assert steps == [(True, False), (True, False), (False, True)]
    assert found.reschedule(frozenset()), "the end of the warm-up places what is missing"


def test_a_takeover_holds_what_no_agent_reported_until_reschedule_after_has_passed() -> None:
    clock = FakeClock()
    until = liveness.hold_until(clock.now(), TIMEOUTS, stored_watchers=True)
    assert liveness.hold_until(clock.now(), TIMEOUTS, stored_watchers=False) == 0.0
    agents = registry(clock, "h1")
    released = []
    for step in (RESCHEDULE - MS, 2 * MS):
        clock.advance(step)
        session = agents.records["h1"].session
        assert session is not None
        agents.heard(session)
        found = liveness.check(
            agents.records.values(), clock.now(), TIMEOUTS, announced_lost=frozenset(),
            warm_until=0.0, hold_until=until,
        )  # fmt: skip
        released.append(found.released)
    assert released == [False, True]
    assert found.reschedule(frozenset()), "the end of the hold places what is missing"


@given(st.lists(st.floats(0, 3 * TIMEOUT, allow_nan=False), min_size=1, max_size=8))
def test_whatever_the_silences_an_agent_is_down_exactly_when_one_exceeds_the_timeout(
    gaps: list[float],
) -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    session = agents.records["h1"].session
    assert session is not None
    went_down = []
    for gap in gaps:
        clock.advance(gap)
        went_down.append(check(agents, clock).silent == ("h1",))
        agents.heard(session)
    assert went_down == [gap > TIMEOUT for gap in gaps]


CADENCE = heartbeats.Cadence(heartbeat_interval=2.0, agent_timeout=TIMEOUT, max_rate=500.0)
SCALED = liveness.Timeouts(TIMEOUT, RESCHEDULE, CADENCE)


def scaled_check(agents: AgentRegistry, clock: FakeClock) -> liveness.Liveness:
    found = liveness.check(
        agents.records.values(), clock.now(), SCALED, announced_lost=frozenset(), warm_until=0.0
    )
    for host_id in found.silent:
        agents.mark_down(host_id, clock.now())
    return found


def test_an_agent_told_a_longer_interval_is_down_only_after_as_many_intervals() -> None:
    """10,000 agents at 500/s: told 20 s, an agent may be silent 100 s (5 intervals, as
    10 s is at 2 s); one told the base interval keeps 10 s."""
    clock = FakeClock()
    agents = registry(clock, "h1", "h2")
    agents.records["h1"].heartbeat = CADENCE.interval(10_000)
    agents.records["h2"].heartbeat = CADENCE.interval(10)
    clock.advance(TIMEOUT + MS)
    assert scaled_check(agents, clock).silent == ("h2",)
    clock.advance(100.0 - TIMEOUT - MS)
    assert scaled_check(agents, clock).silent == ()
    clock.advance(MS)
    found = scaled_check(agents, clock)
    assert found.silent == ("h1",)
    assert [n.message for n in found.notes if n.kind == "agent_down"] == [
        "agent h1 silent for 100s"
    ]


def test_an_agent_told_a_shorter_interval_keeps_the_longer_timeout_for_a_while() -> None:
    """It may sleep out the 20 s it was told before it hears of 2 s: for the 20 s
    interval's timeout (100 s) from the telling on, silence is judged by that one, and
    only then by the agent timeout of 2 s (10 s)."""
    clock = FakeClock()
    agents = registry(clock, "h1")
    record = agents.records["h1"]
    assert record.session is not None
    record.heartbeat = 20.0
    clock.advance(30.0)
    agents.heard(record.session)  # its last heartbeat, at 30 s
    record.longer_heartbeat, record.longer_heartbeat_until = heartbeats.shortened(
        record.heartbeat, 0.0, 0.0, clock.now(), 2.0, CADENCE
    )
    record.heartbeat = 2.0
    clock.advance(100.0)
    assert liveness.silence_allowed(record, clock.now(), SCALED) == 100.0
    assert scaled_check(agents, clock).silent == (), "silent 100 s: not longer than 100 s"
    clock.advance(MS)
    assert liveness.silence_allowed(record, clock.now(), SCALED) == TIMEOUT, "grace over"
    assert scaled_check(agents, clock).silent == ("h1",)


def test_without_a_cadence_every_agent_gets_the_agent_timeout() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    agents.records["h1"].heartbeat = 20.0
    assert liveness.silence_allowed(agents.records["h1"], clock.now(), TIMEOUTS) == TIMEOUT
