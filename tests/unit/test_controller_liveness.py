"""When the controller holds an agent down, and when lost: silence and down time on a fake clock.

The controller's registry of agents takes its clocks as arguments; the integration and
fleet tests check the same rules with real daemons and real seconds, these check their
edges exactly.
"""

from __future__ import annotations

from stack.controller.agents import AgentRegistry
from stack.v1 import agent_pb2
from tests.support.clock import FakeClock

TIMEOUT = 10.0
RESCHEDULE = 30.0


def registry(clock: FakeClock, *hosts: str) -> AgentRegistry:
    agents = AgentRegistry(queue_size=10, wall=clock.now, mono=clock.now)
    for host in hosts:
        agents.connect(agent_pb2.Hello(host_id=host), peer=f"{host}.test")
    return agents


def test_an_agent_is_down_only_once_silent_for_longer_than_the_timeout() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    clock.advance(TIMEOUT)
    assert agents.expire(TIMEOUT) == [], "exactly the timeout is not longer than it"
    clock.advance(0.001)
    assert agents.expire(TIMEOUT) == ["h1"]
    assert agents.expire(TIMEOUT) == [], "marked down once"
    assert not agents.records["h1"].ready


def test_every_message_starts_the_silence_again() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1", "h2")
    session = agents.records["h1"].session
    assert session is not None
    for _ in range(5):
        clock.advance(TIMEOUT * 0.9)
        agents.heard(session)
    assert agents.expire(TIMEOUT) == ["h2"], "h1 was heard within every timeout"
    assert agents.records["h1"].last_seen == clock.now()


def test_a_down_agent_heard_again_comes_back() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    clock.advance(TIMEOUT + 1)
    assert agents.expire(TIMEOUT) == ["h1"]
    session = agents.records["h1"].session
    assert session is not None
    record, came_back = agents.heard(session)
    assert record is not None and came_back and record.ready


def test_its_share_is_lost_after_reschedule_after_of_being_down() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1", "h2")
    clock.advance(TIMEOUT + 1)
    agents.expire(TIMEOUT)
    clock.advance(RESCHEDULE - 0.001)
    assert agents.lost(RESCHEDULE) == frozenset()
    clock.advance(0.001)
    assert agents.lost(RESCHEDULE) == {"h1", "h2"}


def test_a_closed_stream_is_down_at_once_and_lost_after_reschedule_after() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    session = agents.records["h1"].session
    assert session is not None
    assert agents.disconnect(session)
    assert not agents.records["h1"].ready
    clock.advance(RESCHEDULE)
    assert agents.lost(RESCHEDULE) == {"h1"}


def test_a_replaced_stream_ending_changes_nothing() -> None:
    clock = FakeClock()
    agents = registry(clock, "h1")
    old = agents.records["h1"].session
    assert old is not None
    agents.connect(agent_pb2.Hello(host_id="h1"), peer="h1.test")
    assert not agents.disconnect(old), "the host reconnected: the old stream is not its own"
    assert agents.records["h1"].ready
