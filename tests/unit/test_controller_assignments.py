"""What each host is told: only the watchers it has workers of, and only their sockets."""

from __future__ import annotations

from collections.abc import Mapping

from stack.controller import desired as d
from stack.controller.assignments import build_assignment, resting_here
from stack.controller.placement import Placement
from stack.spec.assignment import Assignment
from stack.spec.load import load_stack
from stack.wire.agent import assignment_to_proto

STACK = """
[sockets.web]
port = 8080
[sockets.db]
port = 5432
[sockets.admin]
port = 9000

[watchers.web]
cmd = "app --web"
numprocesses = 2
sockets = ["web"]
[watchers.web.placement]
labels = { role = "web" }

[watchers.db]
cmd = "postgres"
sockets = ["db"]
[watchers.db.env]
DB_PASSWORD = "s3cret"
[watchers.db.placement]
labels = { role = "db" }

[watchers.all]
cmd = "proxy"
use_sockets = true
numprocesses = 0
"""


def state(
    text: str = STACK, before: d.DesiredState | None = None, **placed: set[int]
) -> d.DesiredState:
    new, _ = d.apply_stack(before or d.DesiredState(), load_stack(text, "t.toml"), placed)
    return new


def placement(hosts: Mapping[str, Mapping[str, tuple[int, ...]]]) -> Placement:
    return Placement(hosts=hosts)


def told(assignment: Assignment) -> tuple[dict[str, list[int]], list[str]]:
    """(watcher -> wids, socket names) of an Assignment."""
    watchers = {w.spec.name: list(w.wids) for w in assignment.watchers}
    return watchers, [s.name for s in assignment.sockets]


def test_a_host_is_told_only_of_the_watchers_it_runs_and_the_sockets_they_inherit() -> None:
    where = placement({"h1": {"web": (1, 2)}, "h2": {"db": (1,)}})
    desired = state()
    web_host = build_assignment(desired, where, "h1", 7)
    assert told(web_host) == ({"web": [1, 2]}, ["web"])
    assert b"s3cret" not in assignment_to_proto(web_host).SerializeToString()
    assert told(build_assignment(desired, where, "h2", 7)) == ({"db": [1]}, ["db"])
    assert told(build_assignment(desired, where, "h3", 7)) == ({}, [])


def test_a_watcher_inheriting_every_socket_brings_every_socket() -> None:
    desired = state(STACK.replace("numprocesses = 0", "numprocesses = 1"))
    where = placement({"h1": {"web": (1,), "all": (1,)}})
    assert told(build_assignment(desired, where, "h1", 1)) == (
        {"all": [1], "web": [1]},
        ["admin", "db", "web"],
    )


def test_a_stopped_watcher_stays_with_its_ids_and_a_drains_handoff_keeps_one_there() -> None:
    stopped = d.stop(state(), ("web",))
    where = placement({"h1": {"web": (1, 2)}})
    assignment = build_assignment(stopped, where, "h1", 1)
    assert told(assignment) == ({"web": [1, 2]}, ["web"])
    assert [w.active for w in assignment.watchers] == [False]
    # h2 is drained: its wid 1 of db runs there until its replacement runs elsewhere
    moved = placement({"h3": {"db": (1,)}})
    handoff = {"db": frozenset({1})}
    assert told(build_assignment(state(), moved, "h2", 1, handoff)) == ({"db": [1]}, ["db"])
    assert told(build_assignment(state(), moved, "h2", 1)) == ({}, [])


def test_during_a_rolling_change_the_pinned_versions_sockets_are_sent_too() -> None:
    before = state()
    changed = STACK.replace('sockets = ["web"]', 'sockets = ["admin"]')
    after = state(changed, before, web={1, 2})
    rollout = after.watchers["web"].rollout
    assert rollout is not None and set(rollout.pinned) == {1, 2}
    assignment = build_assignment(after, placement({"h1": {"web": (1, 2)}}), "h1", 1)
    assert told(assignment) == ({"web": [1, 2]}, ["admin"])
    (web,) = assignment.watchers
    assert [list(p.wids) for p in web.pinned] == [[1, 2]]
    assert [[s.name for s in p.sockets] for p in web.pinned] == [["web"]]


def test_a_pinned_version_keeps_the_socket_as_it_was_beside_the_moved_one() -> None:
    before = state()
    after = state(STACK.replace("port = 8080", "port = 8081"), before, web={1, 2})
    assignment = build_assignment(after, placement({"h1": {"web": (1, 2)}}), "h1", 1)
    assert [(s.name, s.port) for s in assignment.sockets] == [("web", 8081)]
    (web,) = assignment.watchers
    assert [[(s.name, s.port) for s in p.sockets] for p in web.pinned] == [[("web", 8080)]]


def test_an_on_demand_watcher_with_no_worker_keeps_its_sockets_where_its_labels_allow() -> None:
    text = STACK.replace('cmd = "proxy"', 'cmd = "proxy"\non_demand = true').replace(
        'numprocesses = 2\nsockets = ["web"]',
        'numprocesses = 0\non_demand = true\nsockets = ["web"]',
    )
    desired, nowhere = state(text), placement({})
    assert resting_here(desired, nowhere, {"role": "web"}) == {"all", "web"}
    assert resting_here(desired, nowhere, {}) == {"all"}
    at_rest = resting_here(desired, nowhere, {"role": "web"})
    assert told(build_assignment(desired, nowhere, "h1", 1, resting=at_rest)) == (
        {"all": [], "web": []},
        ["admin", "db", "web"],
    )
    # scaled up and placed somewhere: only where its workers are
    assert resting_here(
        state(text.replace("numprocesses = 0\non_demand", "numprocesses = 1\non_demand")),
        placement({"h2": {"web": (1,)}}),
        {"role": "web"},
    ) == {"all"}
    # a watcher without on_demand is never kept without workers
    assert resting_here(state(), nowhere, {"role": "web"}) == frozenset()
