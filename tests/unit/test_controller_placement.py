"""Placement: table tests of the rules and hypothesis properties."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.controller.placement import (
    AgentView,
    Pending,
    Placement,
    WatcherDemand,
    pending_reason,
    place,
    rebalance,
)
from stack.spec.model import PlacementSpec, _frozen_map

Current = dict[str, dict[str, frozenset[int]]]

A, B, C = AgentView("a", "ready"), AgentView("b", "ready"), AgentView("c", "ready")
WEB = _frozen_map({"role": "web"})


def spread(count: int, max_per_host: int = 0, **labels: str) -> WatcherDemand:
    return WatcherDemand(count, PlacementSpec("spread", max_per_host, _frozen_map(labels)))


def each(count: int, max_per_host: int = 0, **labels: str) -> WatcherDemand:
    return WatcherDemand(count, PlacementSpec("each", max_per_host, _frozen_map(labels)))


def shares(placement: Placement) -> dict[str, dict[str, tuple[int, ...]]]:
    return {host: dict(by) for host, by in placement.hosts.items()}


def as_current(placement: Placement) -> Current:
    return {h: {w: frozenset(ids) for w, ids in by.items()} for h, by in placement.hosts.items()}


@pytest.mark.parametrize(
    ("demand", "agents", "current", "hosts"),
    [
        pytest.param(
            {"w": spread(8)},
            [C, B, A],
            {},
            {"a": {"w": (1, 4, 7)}, "b": {"w": (2, 5, 8)}, "c": {"w": (3, 6)}},
            id="8-over-3-hosts-is-3-3-2",
        ),
        pytest.param(
            {"w": spread(3)},
            [A, B],
            {"b": {"w": frozenset({1, 2})}},
            {"a": {"w": (3,)}, "b": {"w": (1, 2)}},
            id="running-wids-stay-missing-go-to-least-loaded",
        ),
        pytest.param(
            {"w": spread(2)},
            [A, B],
            {"a": {"w": frozenset({1, 2, 3, 4})}},
            {"a": {"w": (1, 2)}},
            id="scale-down-drops-highest-wids",
        ),
        pytest.param(
            {"w": spread(2)},
            [A, B],
            {"a": {"w": frozenset({1})}, "b": {"w": frozenset({1, 2})}},
            {"a": {"w": (1,)}, "b": {"w": (2,)}},
            id="duplicate-wid-kept-on-smallest-host",
        ),
        pytest.param(
            {"w": spread(4, role="web")},
            [A, AgentView("b", "ready", WEB), AgentView("c", "ready", {"role": "web", "x": "1"})],
            {},
            {"b": {"w": (1, 3)}, "c": {"w": (2, 4)}},
            id="labels-choose-the-hosts",
        ),
        pytest.param(
            {"w": spread(3, role="web")},
            [A, AgentView("b", "ready", WEB)],
            {"a": {"w": frozenset({1, 2})}, "b": {"w": frozenset({3})}},
            {"b": {"w": (1, 2, 3)}},
            id="wids-on-a-host-without-the-labels-move",
        ),
        pytest.param(
            {"w": spread(4, max_per_host=2)},
            [A, B],
            {"a": {"w": frozenset({1, 2, 3, 4})}},
            {"a": {"w": (1, 2)}, "b": {"w": (3, 4)}},
            id="excess-over-max-per-host-moves-highest-wids",
        ),
        pytest.param(
            {"w": spread(4)},
            [A, AgentView("b", "down"), C],
            {"b": {"w": frozenset({1, 2})}},
            {"a": {"w": (3,)}, "b": {"w": (1, 2)}, "c": {"w": (4,)}},
            id="down-host-keeps-its-wids-and-gets-no-new-ones",
        ),
        pytest.param(
            {"w": spread(6)},
            [A, AgentView("b", "gone"), C],
            {
                "a": {"w": frozenset({1, 4})},
                "b": {"w": frozenset({2, 5})},
                "c": {"w": frozenset({3, 6})},
            },
            {"a": {"w": (1, 2, 4)}, "c": {"w": (3, 5, 6)}},
            id="gone-host-moves-only-its-share",
        ),
        pytest.param(
            {"w": spread(2)},
            [A],
            {"z": {"w": frozenset({1, 2})}},
            {"a": {"w": (1, 2)}},
            id="host-unknown-to-the-fleet-is-like-gone",
        ),
        pytest.param(
            {"w": WatcherDemand(3, singleton=True)},
            [A, B],
            {},
            {"a": {"w": (1,)}},
            id="singleton-places-at-most-one",
        ),
        pytest.param({"w": spread(0)}, [A], {"a": {"w": frozenset({1})}}, {}, id="zero-is-none"),
        pytest.param(
            {"w": spread(1), "x": spread(2)},
            [A, C],
            {"c": {"old": frozenset({1})}},
            {"a": {"w": (1,), "x": (1,)}, "c": {"x": (2,)}},
            id="per-watcher-balance-ignores-unwanted-watchers",
        ),
        pytest.param(
            {"w": each(2)},
            [A, B, C],
            {"b": {"w": frozenset({3, 4})}},
            {"a": {"w": (1, 2)}, "b": {"w": (3, 4)}, "c": {"w": (5, 6)}},
            id="each-host-keeps-its-wids-new-hosts-take-the-lowest-free",
        ),
        pytest.param(
            {"w": each(1, role="web")},
            [A, AgentView("b", "ready", WEB), AgentView("c", "down", WEB)],
            {"c": {"w": frozenset({1})}, "a": {"w": frozenset({2})}},
            {"b": {"w": (2,)}, "c": {"w": (1,)}},
            id="each-only-on-labelled-hosts-and-kept-on-down-ones",
        ),
        pytest.param(
            {"w": each(1)},
            [A, B],
            {"a": {"w": frozenset({7, 3})}, "b": {"w": frozenset({3})}},
            {"a": {"w": (3,)}, "b": {"w": (1,)}},
            id="each-scale-down-keeps-lowest-and-wids-stay-unique",
        ),
    ],
)
def test_placement_table(
    demand: dict[str, WatcherDemand],
    agents: list[AgentView],
    current: Current,
    hosts: dict[str, dict[str, tuple[int, ...]]],
) -> None:
    placement = place(demand, agents, current)
    assert shares(placement) == hosts
    assert dict(placement.pending) == {}


@pytest.mark.parametrize(
    ("demand", "agents", "placed", "pending"),
    [
        pytest.param(
            spread(5, max_per_host=2),
            [A, B],
            4,
            Pending(1, "no eligible agent (max_per_host 2)"),
            id="max-per-host",
        ),
        pytest.param(
            spread(2, max_per_host=2, role="web"),
            [A, AgentView("b", "down", WEB)],
            0,
            Pending(2, "no eligible agent (labels role=web, max_per_host 2)"),
            id="labels-and-max-per-host",
        ),
        pytest.param(
            spread(3, zone="b", role="web"),
            [A],
            0,
            Pending(3, "no eligible agent (labels role=web,zone=b)"),
            id="labels-sorted",
        ),
        pytest.param(
            spread(3), [AgentView("a", "gone")], 0, Pending(3, "no eligible agent"), id="no-agent"
        ),
        pytest.param(
            each(3, max_per_host=1),
            [A, B],
            2,
            Pending(4, "no eligible agent (max_per_host 1)"),
            id="each-above-max-per-host",
        ),
        pytest.param(
            each(2, role="web"),
            [A],
            0,
            Pending(2, "no eligible agent (labels role=web)"),
            id="each-without-eligible-agent",
        ),
    ],
)
def test_what_cannot_be_placed_is_pending_with_its_constraints(
    demand: WatcherDemand, agents: list[AgentView], placed: int, pending: Pending
) -> None:
    placement = place({"w": demand, "z": spread(0)}, agents, {})
    assert placement.placed("w") == placed
    assert dict(placement.pending) == {"w": pending}


def test_pending_reason_names_only_the_constraints_that_are_set() -> None:
    assert pending_reason(PlacementSpec()) == "no eligible agent"
    assert pending_reason(PlacementSpec(max_per_host=2)) == "no eligible agent (max_per_host 2)"


def test_scaling_8_to_10_adds_two_and_touches_none_of_the_8() -> None:
    first = place({"w": spread(8)}, [A, B, C], {})
    second = place({"w": spread(10)}, [A, B, C], as_current(first))
    assert shares(second) == {
        "a": {"w": (1, 4, 7, 10)},
        "b": {"w": (2, 5, 8)},
        "c": {"w": (3, 6, 9)},
    }


def test_a_host_joining_takes_nothing_until_rebalance_moves_the_fewest() -> None:
    first = place({"w": spread(6), "x": spread(2)}, [A, B], {})
    demand = {"w": spread(6), "x": spread(2)}
    joined = place(demand, [A, B, C], as_current(first))
    assert joined == first
    balanced = rebalance("w", demand, [A, B, C], as_current(first))
    assert shares(balanced) == {
        "a": {"w": (1, 3), "x": (1,)},
        "b": {"w": (2, 4), "x": (2,)},
        "c": {"w": (5, 6)},
    }
    assert balanced.pending == first.pending


def test_rebalance_keeps_larger_shares_on_the_fullest_hosts_and_ignores_down_ones() -> None:
    current: Current = {
        "b": {"w": frozenset({1, 2})},
        "c": {"w": frozenset({3, 4, 5, 6, 7})},
        "d": {"w": frozenset({8, 9, 10})},
    }
    agents = [A, B, C, AgentView("d", "down")]
    balanced = rebalance("w", {"w": spread(10)}, agents, current)
    assert shares(balanced) == {
        "a": {"w": (6, 7)},
        "b": {"w": (1, 2)},
        "c": {"w": (3, 4, 5)},
        "d": {"w": (8, 9, 10)},
    }


def test_rebalance_leaves_each_watchers_and_unknown_names_alone() -> None:
    current: Current = {"a": {"w": frozenset({1, 2, 3})}}
    demand = {"w": each(3)}
    assert rebalance("w", demand, [A, B], current) == place(demand, [A, B], current)
    assert rebalance("nope", demand, [A, B], current) == place(demand, [A, B], current)


def test_placement_helpers_answer_per_host_and_watcher() -> None:
    placement = place({"w": spread(3)}, [A, B], {})
    assert placement.wids("a", "w") == (1, 3)
    assert placement.wids("c", "w") == ()
    assert placement.hosts_of("w") == ("a", "b")
    assert placement.placed("w") == 3


def test_agent_view_rejects_an_unknown_state_and_says_whether_it_is_ready() -> None:
    with pytest.raises(ValueError, match="'draining'"):
        AgentView("a", "draining")
    assert A.ready and not AgentView("a", "down").ready and not AgentView("a", "gone").ready


# ---- properties ----

HOSTS = "abcde"
LABEL_SETS = [{}, {"role": "web"}, {"role": "db"}, {"role": "web", "zone": "b"}]

agents_st = st.lists(
    st.builds(
        AgentView,
        st.sampled_from(HOSTS),
        st.sampled_from(["ready", "ready", "down", "gone"]),
        st.sampled_from(LABEL_SETS).map(_frozen_map),
    ),
    max_size=5,
    unique_by=lambda a: a.host_id,
)
placement_st = st.builds(
    PlacementSpec,
    st.sampled_from(["spread", "each"]),
    st.sampled_from([0, 0, 1, 2, 5]),
    st.sampled_from(LABEL_SETS[:3]).map(_frozen_map),
)
demand_st = st.dictionaries(
    st.sampled_from(["w", "x", "y"]),
    st.builds(WatcherDemand, st.integers(0, 20), placement_st, st.booleans()),
    max_size=3,
)
current_st = st.dictionaries(
    st.sampled_from(HOSTS + "z"),
    st.dictionaries(
        st.sampled_from(["w", "x", "old"]), st.frozensets(st.integers(1, 30), max_size=8)
    ),
    max_size=6,
)
PROPERTY = settings(max_examples=150, deadline=None)


def _is_each(demand: WatcherDemand) -> bool:
    return demand.placement.mode == "each" and not demand.singleton


def _eligible(agents: list[AgentView], demand: WatcherDemand) -> list[str]:
    return [a.host_id for a in agents if a.ready and a.has_labels(demand.placement.labels)]


def _wids(placement: Placement, watcher: str) -> list[int]:
    return [wid for by in placement.hosts.values() for wid in by.get(watcher, ())]


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_spread_places_every_wid_when_capacity_allows_and_reports_the_rest(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    placement = place(demand, agents, current)
    for watcher, wanted in demand.items():
        if _is_each(wanted):
            continue
        count = min(wanted.count, 1) if wanted.singleton else wanted.count
        missing = placement.pending.get(watcher, Pending(0, "")).count
        assert placement.placed(watcher) + missing == count
        eligible = _eligible(agents, wanted)
        limit = wanted.placement.max_per_host
        if eligible and (limit == 0 or len(eligible) * limit >= count):
            assert sorted(_wids(placement, watcher)) == list(range(1, count + 1))


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_each_runs_count_on_every_eligible_host(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    placement = place(demand, agents, current)
    for watcher, wanted in demand.items():
        if not _is_each(wanted):
            continue
        limit = wanted.placement.max_per_host or wanted.count
        for host in _eligible(agents, wanted):
            assert len(placement.wids(host, watcher)) == min(wanted.count, limit)


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_no_host_exceeds_max_per_host_and_wids_are_unique_per_watcher(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    placement = place(demand, agents, current)
    for watcher, wanted in demand.items():
        wids = _wids(placement, watcher)
        assert len(wids) == len(set(wids))
        assert all(wid >= 1 for wid in wids)
        if wanted.placement.max_per_host:
            for by in placement.hosts.values():
                assert len(by.get(watcher, ())) <= wanted.placement.max_per_host


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_only_eligible_ready_hosts_get_new_wids_and_gone_hosts_get_none(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    placement = place(demand, agents, current)
    states = {a.host_id: a.state for a in agents}
    for host, by in placement.hosts.items():
        assert states.get(host) in ("ready", "down")
        for watcher, wids in by.items():
            new = set(wids) - current.get(host, {}).get(watcher, frozenset())
            if new:
                assert host in _eligible(agents, demand[watcher])


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_placing_twice_from_the_same_input_gives_the_same_answer(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    assert place(demand, agents, current) == place(demand, list(reversed(agents)), current)


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_placing_what_was_placed_changes_nothing(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    first = place(demand, agents, current)
    assert place(demand, agents, as_current(first)) == first


def _kept(before: Placement, after: Placement, skip: str = "") -> None:
    for host, by in before.hosts.items():
        if host == skip:
            continue
        for watcher, wids in by.items():
            assert set(wids) <= set(after.wids(host, watcher)), (host, watcher)


@PROPERTY
@given(demand_st, agents_st, current_st, st.integers(0, 10))
def test_scaling_up_moves_no_placed_wid(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current, more: int
) -> None:
    first = place(demand, agents, current)
    bigger = {w: WatcherDemand(d.count + more, d.placement, d.singleton) for w, d in demand.items()}
    _kept(first, place(bigger, agents, as_current(first)))


@PROPERTY
@given(demand_st, agents_st, current_st, st.sampled_from(LABEL_SETS))
def test_a_host_joining_takes_nothing_away(
    demand: dict[str, WatcherDemand],
    agents: list[AgentView],
    current: Current,
    labels: dict[str, str],
) -> None:
    first = place(demand, agents, current)
    joined = [*agents, AgentView("new", "ready", _frozen_map(labels))]
    _kept(first, place(demand, joined, as_current(first)))


@PROPERTY
@given(demand_st, agents_st, current_st, st.data())
def test_a_gone_hosts_wids_move_and_nothing_else_moves(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current, data: st.DataObject
) -> None:
    first = place(demand, agents, current)
    if not first.hosts:
        return
    lost = data.draw(st.sampled_from(sorted(first.hosts)))
    after = [AgentView(a.host_id, "gone", a.labels) if a.host_id == lost else a for a in agents]
    second = place(demand, after, as_current(first))
    assert lost not in second.hosts
    _kept(first, second, skip=lost)
    for watcher, wanted in demand.items():
        if _is_each(wanted):
            continue
        count = min(wanted.count, 1) if wanted.singleton else wanted.count
        unplaced = set(range(1, count + 1)) - set(_wids(first, watcher))
        elsewhere = {
            wid for host, by in first.hosts.items() if host != lost for wid in by.get(watcher, ())
        }
        arrived = set(_wids(second, watcher)) - elsewhere
        assert arrived <= set(first.wids(lost, watcher)) | unplaced


def _on(placement: Placement, hosts: list[str], watcher: str) -> Mapping[str, set[int]]:
    return {host: set(placement.wids(host, watcher)) for host in hosts}


@PROPERTY
@given(demand_st, agents_st, current_st)
def test_rebalance_evens_out_one_watcher_with_the_fewest_moves(
    demand: dict[str, WatcherDemand], agents: list[AgentView], current: Current
) -> None:
    base = place(demand, agents, current)
    for name, wanted in demand.items():
        balanced = rebalance(name, demand, agents, current)
        assert balanced == rebalance(name, demand, list(reversed(agents)), current)
        assert balanced.pending == base.pending
        for other in demand:
            if other != name:
                assert _on(balanced, list(HOSTS), other) == _on(base, list(HOSTS), other)
        assert sorted(_wids(balanced, name)) == sorted(_wids(base, name))
        eligible = _eligible(agents, wanted)
        if _is_each(wanted) or not eligible:
            assert balanced == base
            continue
        others = [host for host in HOSTS if host not in eligible]
        assert _on(balanced, others, name) == _on(base, others, name)
        before, after = _on(base, eligible, name), _on(balanced, eligible, name)
        sizes = [len(after[host]) for host in eligible]
        assert max(sizes) - min(sizes) <= 1
        for host in eligible:  # a host gives or takes, never both
            assert before[host] <= after[host] or after[host] <= before[host]
        share, extra = divmod(sum(sizes), len(eligible))
        above = [len(before[host]) for host in eligible if len(before[host]) > share]
        fewest = sum(size - share - 1 for size in above) + max(0, len(above) - extra)
        assert sum(len(before[host] - after[host]) for host in eligible) == fewest
