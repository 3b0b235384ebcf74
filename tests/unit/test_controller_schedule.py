"""Scheduling as a pure function: the world in, a placement and Assignments out.

Each case builds the agents' records as the controller holds them (what each reports,
whether it is ready), the desired state and the last placement, and reads the plan.
"""

from __future__ import annotations

import random

import pytest

from stack.controller import desired as d
from stack.controller import schedule
from stack.controller.agents import AgentRecord, AgentSession
from stack.controller.placement import DOWN, GONE, READY, Placement
from stack.spec.load import load_stack
from stack.spec.observed import Observed, ProcessState, ProcessStatus

WEB = '[watchers.web]\ncmd = "serve"\nnumprocesses = 3\n'


def state(text: str = WEB) -> d.DesiredState:
    new, _ = d.apply_stack(d.DesiredState(), load_stack(text, "t.toml"))
    return new


def agent(host: str, *wids: int, ready: bool = True, running: bool = True) -> AgentRecord:
    proc_state = ProcessState.RUNNING if running else ProcessState.STARTING
    processes = tuple(
        ProcessStatus("web", wid, 100 + wid, proc_state, host_id=host) for wid in wids
    )
    record = AgentRecord(host, observed=Observed(processes=processes), ready=ready)
    record.session = AgentSession(host, 10) if ready else None
    return record


def web(plan: schedule.Plan) -> dict[str, tuple[int, ...]]:
    """host -> the web worker ids its Assignment names."""
    return {
        host: next((s.wids for s in assignment.watchers if s.spec.name == "web"), ())
        for host, assignment in plan.assignments.items()
    }


def plan(
    records: list[AgentRecord], placement: Placement | None = None, **kw: object
) -> schedule.Plan:
    options: dict[str, object] = {"lost": frozenset(), "warming": False, "term": 1, **kw}
    desired = options.pop("desired", state())
    return schedule.plan(desired, records, placement or Placement(), **options)  # type: ignore[arg-type]


def test_missing_workers_are_placed_beside_the_ones_reported() -> None:
    assert web(plan([agent("h1", 1), agent("h2")])) == {"h1": (1, 3), "h2": (2,)}


def test_while_warming_up_only_what_agents_report_is_placed() -> None:
    assert web(plan([agent("h1", 1), agent("h2", 3)], warming=True)) == {"h1": (1,), "h2": (3,)}


def test_a_stopped_watcher_is_placed_whole_even_while_warming_up() -> None:
    stopped = d.stop(state(), ("web",))
    assert web(plan([agent("h1")], warming=True, desired=stopped)) == {"h1": (1, 2, 3)}


@pytest.mark.parametrize(
    ("ready", "drained", "lost", "expected"),
    [
        (True, False, False, READY),
        (False, False, False, DOWN),
        (False, False, True, GONE),
        (True, True, False, GONE),
    ],
)
def test_an_agent_is_ready_down_or_gone(
    ready: bool, drained: bool, lost: bool, expected: str
) -> None:
    record = agent("h1", ready=ready)
    assert (
        schedule.agent_state(
            record,
            frozenset({"h1"}) if drained else frozenset(),
            frozenset({"h1"}) if lost else frozenset(),
        )
        == expected
    )


def test_a_down_agent_keeps_its_share_and_a_lost_one_gives_it_up() -> None:
    before = Placement(hosts={"h1": {"web": (1, 2)}, "h2": {"web": (3,)}})
    records = [agent("h1", 1, 2, ready=False), agent("h2", 3)]
    assert web(plan(records, before)) == {"h2": (3,)}
    assert web(plan(records, before, lost=frozenset({"h1"}))) == {"h2": (1, 2, 3)}


def test_a_returning_host_does_not_take_back_what_another_was_given_and_runs() -> None:
    before = Placement(hosts={"h2": {"web": (1, 2, 3)}})
    records = [agent("h1", 1), agent("h2", 1, 2, 3)]
    assert schedule.holdings(records, before)["h1"] == {"web": frozenset()}
    assert web(plan(records, before)) == {"h1": (), "h2": (1, 2, 3)}


def test_a_drained_host_keeps_each_process_until_its_replacement_runs_elsewhere() -> None:
    drained = d.drain(state(), "h1")
    before = Placement(hosts={"h1": {"web": (1, 2)}, "h2": {"web": (3,)}})
    records = [agent("h1", 1, 2), agent("h2", 3)]
    first = plan(records, before, desired=drained)
    assert web(first) == {"h1": (1, 2), "h2": (1, 2, 3)}
    records[1] = agent("h2", 1, 3)  # 1 runs on h2 now, 2 is still starting there
    records[1].observed = Observed(
        processes=(
            *records[1].observed.processes,
            ProcessStatus("web", 2, 0, ProcessState.STARTING, host_id="h2"),
        )
    )
    assert web(plan(records, first.placement, desired=drained))["h1"] == (2,)


def test_only_ready_agents_with_a_session_get_an_assignment_under_the_term() -> None:
    found = plan([agent("h1", 1), agent("h2", ready=False)], term=9)
    assert sorted(found.assignments) == ["h1"]
    assert found.assignments["h1"].fencing_token == 9


def test_rebalancing_moves_ids_to_an_agent_that_joined() -> None:
    before = Placement(hosts={"h1": {"web": (1, 2, 3)}})
    records = [agent("h1", 1, 2, 3), agent("h2")]
    moved_plan, moved = schedule.rebalanced(
        "web", state(), records, before, lost=frozenset(), term=1
    )
    assert moved == 1
    assert web(moved_plan) == {"h1": (1, 2), "h2": (3,)}


def test_a_drained_hosts_process_with_nowhere_else_to_go_stops_at_once() -> None:
    """Chaos seed 2: a worker with no room elsewhere (here under max_per_host; likewise a
    mode = "each" watcher's) was kept until a replacement that never came."""
    capped = WEB.replace("3\n", "2\n") + "[watchers.web.placement]\nmax_per_host = 1\n"
    drained = d.drain(state(capped), "h1")
    before = Placement(hosts={"h1": {"web": (1,)}, "h2": {"web": (2,)}})
    found = plan([agent("h1", 1), agent("h2", 2)], before, desired=drained)
    assert web(found) == {"h1": (), "h2": (2,)}
    assert found.placement.pending


def test_after_the_warm_up_what_no_agent_reports_is_held_until_the_hold_ends() -> None:
    """Chaos seed 3: a host down across a takeover (here the unknown h3, which ran 2)
    keeps its share for reschedule_after; workers added since the takeover start at once."""
    hold = schedule.Hold.of(state())
    scaled, _ = d.scale(state(), "web", 4, relative=False)
    records = [agent("h1", 1), agent("h2", 3)]
    held = plan(records, hold=hold, desired=scaled)
    assert web(held) == {"h1": (1,), "h2": (3, 4)}
    assert held.hold == schedule.Hold(hold.counts, frozenset({("web", 2)}))
    records[0] = agent("h1", 1, 2)  # h3's worker 2 turned up on h1 (its agent came back)
    assert web(plan(records, held.placement, hold=held.hold, desired=scaled))["h1"] == (1, 2)
    released = plan([agent("h1", 1), agent("h2", 3)], desired=scaled)
    assert sorted(w for wids in web(released).values() for w in wids) == [1, 2, 3, 4]


def test_a_rebalance_just_after_a_takeover_is_restrained_like_any_placement() -> None:
    """Chaos seed 62: a rebalance while the new leader warmed up placed a silent host's
    workers elsewhere at once."""
    records = [agent("h1", 1), agent("h2")]
    for options in ({"warming": True}, {"hold": schedule.Hold.of(state())}):
        found, moved = schedule.rebalanced(
            "web", state(), records, Placement(), lost=frozenset(), term=1, **options
        )  # type: ignore[arg-type]
        assert sorted(w for wids in web(found).values() for w in wids) == [1], options
        assert moved <= 1


def test_a_hold_begun_before_any_agent_came_back_still_holds_the_silent_hosts_share() -> None:
    """The warm-up may end before any agent reconnects (they back off): the first plan
    after it places nothing, and the hold must not take that for "nothing to hold"."""
    hold = schedule.Hold.of(state())
    empty = plan([], hold=hold)
    assert empty.hold is not None and empty.hold.ids == {("web", 1), ("web", 2), ("web", 3)}
    back = plan([agent("h1", 1), agent("h2", 3)], empty.placement, hold=empty.hold)
    assert web(back) == {"h1": (1,), "h2": (3,)}


SCENES = """
[watchers.web]
cmd = "serve"
numprocesses = 5

[watchers.fleet]
cmd = "serve"
numprocesses = 1
[watchers.fleet.placement]
mode = "each"
labels = { role = "edge" }
"""


@pytest.mark.parametrize("seed", [1, 2, 3, 5, 8, 13, 21, 34])
def test_assignments_kept_from_the_last_plan_are_those_built_anew(seed: int) -> None:
    """A random fleet joins, scales, drains and loses agents in steps; at each step the
    plan made with the last one (which keeps unchanged hosts' Assignments) equals the
    plan made from nothing but the world, and keeps at least the unchanged hosts'."""
    rng = random.Random(seed)
    desired = state(SCENES)
    records: list[AgentRecord] = []
    last: schedule.Plan | None = None
    placement = Placement()
    for step in range(12):
        for _ in range(rng.randrange(1, 6)):
            host = f"h{len(records):02d}"
            record = agent(host)
            record.labels = {"role": "edge"} if rng.random() < 0.5 else {}
            records.append(record)
        if rng.random() < 0.3:
            desired, _ = d.scale(desired, "web", rng.randrange(0, 12), relative=False)
        if rng.random() < 0.2 and records:
            desired = d.drain(desired, rng.choice(records).host_id)
        if rng.random() < 0.2 and records:
            down = rng.choice(records)
            down.ready, down.session = False, None
        lost = frozenset(r.host_id for r in records if not r.ready and rng.random() < 0.5)
        term = 1 + step // 6
        fresh = schedule.plan(desired, records, placement, lost=lost, warming=False, term=term)
        kept = schedule.plan(
            desired, records, placement, lost=lost, warming=False, term=term, last=last
        )
        assert kept.placement == fresh.placement
        assert dict(kept.assignments) == dict(fresh.assignments)
        if last is not None and last.state is desired and last.term == term:
            same = [
                host
                for host in kept.assignments
                if host in last.assignments and host not in desired.drained
                and last.placement.hosts.get(host) == kept.placement.hosts.get(host)
            ]  # fmt: skip
            assert all(kept.assignments[h] is last.assignments[h] for h in same)
        last, placement = kept, kept.placement


def test_the_reschedule_window_grows_with_the_cost_of_a_pass() -> None:
    assert schedule.window(0.001) == schedule.RESCHEDULE_WINDOW
    assert schedule.window(0.1) == pytest.approx(0.4)
    assert schedule.window(60.0) == schedule.MAX_RESCHEDULE_WINDOW
