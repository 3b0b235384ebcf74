"""How often agents heartbeat in a fleet of a given size, and how long their silence may
last: the pure rules of stack.controller.heartbeats, at their edges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.controller import heartbeats
from stack.controller.heartbeats import Cadence

DEFAULTS = Cadence(heartbeat_interval=2.0, agent_timeout=10.0, max_rate=500.0)


def test_the_base_interval_stays_well_inside_the_agent_timeout() -> None:
    assert DEFAULTS.base == 2.0
    assert Cadence(2.0, 3.0, 500.0).base == 1.0, "three heartbeats at least per timeout"


def test_a_fleet_of_up_to_a_thousand_agents_keeps_the_base_interval_exactly() -> None:
    for agents in (0, 1, 10, 999, 1000):
        assert DEFAULTS.interval(agents) == 2.0
        assert DEFAULTS.timeout(DEFAULTS.interval(agents)) == 10.0


def test_a_larger_fleet_sends_at_most_the_maximum_rate() -> None:
    assert DEFAULTS.interval(1001) == pytest.approx(2.002)
    assert DEFAULTS.interval(10_000) == 20.0
    assert 10_000 / DEFAULTS.interval(10_000) == 500.0


@given(
    agents=st.integers(0, 10**6),
    rate=st.floats(1.0, 10_000.0),
    timeout=st.floats(1.0, 100.0),
    interval=st.floats(0.1, 10.0),
)
def test_the_timeout_keeps_the_margin_of_the_base_interval(
    agents: int, rate: float, timeout: float, interval: float
) -> None:
    """Silence allowed / interval stays agent_timeout / base: as many heartbeats missed
    before an agent is down in a large fleet as in a small one (and never less than the
    agent timeout)."""
    cadence = Cadence(interval, timeout, rate)
    told = cadence.interval(agents)
    assert told * rate >= agents * (1 - 1e-9)
    assert cadence.timeout(told) >= timeout
    assert cadence.timeout(told) / told == pytest.approx(timeout / cadence.base)


def test_an_interval_below_the_base_gets_the_agent_timeout() -> None:
    assert DEFAULTS.timeout(1.0) == 10.0
    assert DEFAULTS.timeout(20.0) == 100.0


def test_an_agent_is_told_again_only_when_the_interval_moved_by_more_than_a_quarter() -> None:
    assert heartbeats.stale(0.0, 2.0), "told nothing yet"
    assert not heartbeats.stale(2.0, 2.5)
    assert heartbeats.stale(2.0, 2.51)
    assert not heartbeats.stale(20.0, 15.0)
    assert heartbeats.stale(20.0, 14.9)


def test_retelling_takes_the_stale_agents_in_order_up_to_the_budget() -> None:
    told = [("h1", 2.0), ("h2", 20.0), ("h3", 2.0), ("h4", 2.0), ("h5", 19.0)]
    assert heartbeats.to_retell(told, 20.0, 2) == ["h1", "h3"]
    assert heartbeats.to_retell(told, 20.0, 10) == ["h1", "h3", "h4"]
    assert heartbeats.to_retell(told, 20.0, 0) == []
    assert heartbeats.to_retell(told, 2.0, 10) == ["h2", "h5"]


def test_a_shorter_interval_leaves_the_longer_one_its_timeout_first() -> None:
    """An agent told 2 s after 20 s may sleep out its 20 s first: its liveness keeps the
    timeout of 20 s (100 s) from the telling on."""
    assert heartbeats.shortened(20.0, 0.0, 0.0, 50.0, 2.0, DEFAULTS) == (20.0, 150.0)
    assert heartbeats.shortened(2.0, 0.0, 0.0, 50.0, 20.0, DEFAULTS) == (0.0, 0.0), "longer"
    assert heartbeats.shortened(0.0, 0.0, 0.0, 50.0, 2.0, DEFAULTS) == (0.0, 0.0), "first"
    # Told 20, then 10 at 50, then 2 at 60: 20 still counts until its grace ends (the
    # grace of 10 ends before it).
    assert heartbeats.shortened(10.0, 20.0, 150.0, 60.0, 2.0, DEFAULTS) == (20.0, 150.0)
    # Told 20, then 15 at 50, then 2 at 140: the grace of 15 (75 s) lasts longer.
    assert heartbeats.shortened(15.0, 20.0, 150.0, 140.0, 2.0, DEFAULTS) == (20.0, 215.0)
    # Told 10 again while 20's grace lasts: the grace stays as it was.
    assert heartbeats.shortened(2.0, 20.0, 150.0, 70.0, 10.0, DEFAULTS) == (20.0, 150.0)
    # Once it ended it is forgotten.
    assert heartbeats.shortened(10.0, 20.0, 150.0, 170.0, 12.0, DEFAULTS) == (0.0, 0.0)
