"""Placement: table tests of the rules and hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.controller.placement import NO_ELIGIBLE_AGENT, AgentView, Pending, place

A, B, C = AgentView("a", True), AgentView("b", True), AgentView("c", True)
DOWN_B = AgentView("b", False)


@pytest.mark.parametrize(
    ("desired", "agents", "current", "hosts"),
    [
        pytest.param({"w": 3}, [A], {}, {"a": {"w": (1, 2, 3)}}, id="one-agent-gets-all"),
        pytest.param(
            {"w": 4}, [B, A], {}, {"a": {"w": (1, 3)}, "b": {"w": (2, 4)}}, id="spread-ties-by-id"
        ),
        pytest.param(
            {"w": 3},
            [A, B],
            {"b": {"w": frozenset({1, 2})}},
            {"a": {"w": (3,)}, "b": {"w": (1, 2)}},
            id="running-wids-stay-missing-go-to-least-loaded",
        ),
        pytest.param(
            {"w": 2},
            [A, B],
            {"a": {"w": frozenset({1, 2, 3, 4})}},
            {"a": {"w": (1, 2)}},
            id="scale-down-drops-highest-wids",
        ),
        pytest.param(
            {"w": 2},
            [A, B],
            {"a": {"w": frozenset({1})}, "b": {"w": frozenset({1, 2})}},
            {"a": {"w": (1,)}, "b": {"w": (2,)}},
            id="duplicate-wid-kept-on-smallest-host",
        ),
        pytest.param(
            {"w": 2},
            [A, DOWN_B],
            {"b": {"w": frozenset({1, 2})}},
            {"a": {"w": (1, 2)}},
            id="wids-of-a-down-agent-move",
        ),
        pytest.param({"w": 0}, [A], {"a": {"w": frozenset({1})}}, {}, id="zero-places-nothing"),
        pytest.param(
            {"w": 1, "x": 2},
            [A, C],
            {"c": {"old": frozenset({1})}},
            {"a": {"w": (1,), "x": (1,)}, "c": {"x": (2,)}},
            id="per-watcher-balance-ignores-unwanted-watchers",
        ),
    ],
)
def test_placement_table(
    desired: dict[str, int],
    agents: list[AgentView],
    current: dict[str, dict[str, frozenset[int]]],
    hosts: dict[str, dict[str, tuple[int, ...]]],
) -> None:
    placement = place(desired, agents, current)
    assert {h: dict(by) for h, by in placement.hosts.items()} == hosts
    assert dict(placement.pending) == {}


def test_without_ready_agent_every_wid_is_pending_with_a_reason() -> None:
    placement = place({"w": 3, "z": 0}, [DOWN_B], {"b": {"w": frozenset({1})}})
    assert dict(placement.hosts) == {}
    assert dict(placement.pending) == {"w": Pending(3, NO_ELIGIBLE_AGENT)}


def test_placement_helpers_answer_per_host_and_watcher() -> None:
    placement = place({"w": 3}, [A, B], {})
    assert placement.wids("a", "w") == (1, 3)
    assert placement.wids("c", "w") == ()
    assert placement.hosts_of("w") == ("a", "b")
    assert placement.placed("w") == 3


hosts_st = st.lists(
    st.builds(AgentView, st.sampled_from("abcde"), st.booleans()),
    max_size=5,
    unique_by=lambda a: a.host_id,
)
desired_st = st.dictionaries(st.sampled_from(["w", "x", "y"]), st.integers(0, 30), max_size=3)
current_st = st.dictionaries(
    st.sampled_from("abcde"),
    st.dictionaries(
        st.sampled_from(["w", "x", "old"]), st.frozensets(st.integers(1, 40), max_size=10)
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(desired_st, hosts_st, current_st)
def test_every_wanted_wid_is_placed_once_when_an_agent_is_ready(
    desired: dict[str, int],
    agents: list[AgentView],
    current: dict[str, dict[str, frozenset[int]]],
) -> None:
    placement = place(desired, agents, current)
    ready = {a.host_id for a in agents if a.ready}
    assert set(placement.hosts) <= ready
    for watcher, count in desired.items():
        wids = [w for by in placement.hosts.values() for w in by.get(watcher, ())]
        if ready:
            assert sorted(wids) == list(range(1, count + 1))
            assert watcher not in placement.pending
        else:
            assert wids == []
            assert placement.pending.get(watcher, Pending(0, "")).count == count


@settings(max_examples=200, deadline=None)
@given(desired_st, hosts_st, current_st)
def test_placing_twice_from_the_same_input_gives_the_same_answer(
    desired: dict[str, int],
    agents: list[AgentView],
    current: dict[str, dict[str, frozenset[int]]],
) -> None:
    assert place(desired, agents, current) == place(desired, list(reversed(agents)), current)


@settings(max_examples=200, deadline=None)
@given(desired_st, hosts_st, current_st, st.integers(0, 20))
def test_scale_up_moves_no_placed_wid(
    desired: dict[str, int],
    agents: list[AgentView],
    current: dict[str, dict[str, frozenset[int]]],
    more: int,
) -> None:
    first = place(desired, agents, current)
    running = {h: {w: frozenset(ids) for w, ids in by.items()} for h, by in first.hosts.items()}
    bigger = {w: n + more for w, n in desired.items()}
    second = place(bigger, agents, running)
    for host, by in first.hosts.items():
        for watcher, wids in by.items():
            assert set(wids) <= set(second.wids(host, watcher))


@settings(max_examples=100, deadline=None)
@given(desired_st, hosts_st, current_st)
def test_running_wids_on_ready_hosts_stay_where_they_run(
    desired: dict[str, int],
    agents: list[AgentView],
    current: dict[str, dict[str, frozenset[int]]],
) -> None:
    placement = place(desired, agents, current)
    ready = sorted(a.host_id for a in agents if a.ready)
    for watcher, count in desired.items():
        for host in ready:
            for wid in current.get(host, {}).get(watcher, frozenset()):
                owners = [h for h in ready if wid in current.get(h, {}).get(watcher, frozenset())]
                if wid <= count and owners[0] == host:
                    assert wid in placement.wids(host, watcher)
