"""Diffs between stacks: what `apply --dry-run` prints and what needs new processes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stack.spec.diff import Change, diff_stacks, needs_new_processes
from stack.spec.load import load_stack
from stack.spec.model import (
    FlappingSpec,
    HealthSpec,
    PlacementSpec,
    StackSpec,
    UpdateSpec,
    WatcherSpec,
    _frozen_map,
    passed_as_fds,
    version_fingerprint,
    version_sockets,
)

WEBAPP = (
    '[watchers.webapp]\ncmd = "run $(circus.sockets.web)"\nnumprocesses = 4\n'
    'sockets = ["web"]\n[watchers.webapp.env]\nGREETING = "hello"\nDB_PASSWORD = "old"\n'
)
BASE = load_stack(
    "[sockets.web]\nport = 8080\n[sockets.admin]\nport = 9090\n"
    + WEBAPP
    + '[watchers.ticker]\ncmd = "tick"\n'
)


def _with_watcher(stack: StackSpec, name: str, **changes: object) -> StackSpec:
    watchers = dict(stack.watchers)
    watchers[name] = replace(watchers[name], **changes)  # type: ignore[arg-type]
    return replace(stack, watchers=_frozen_map(watchers))


def test_identical_stacks_have_no_changes() -> None:
    assert diff_stacks(BASE, BASE) == []


def test_only_numprocesses_is_a_scale() -> None:
    new = _with_watcher(BASE, "webapp", numprocesses=6)
    assert diff_stacks(BASE, new) == [
        Change("scale", "watcher", "webapp", ("numprocesses: 4 -> 6",)),
    ]


def test_other_options_are_a_change_with_one_detail_each() -> None:
    new = _with_watcher(
        BASE, "webapp", numprocesses=6, cmd="b", args=("x",), flapping=FlappingSpec(attempts=3)
    )
    assert diff_stacks(replace(BASE), new) == [
        Change(
            "change",
            "watcher",
            "webapp",
            (
                "cmd: 'run $(circus.sockets.web)' -> 'b'",
                "args: [] -> ['x']",
                "numprocesses: 4 -> 6",
                "flapping.attempts: 2 -> 3",
            ),
            replaces=True,
        )
    ]


def test_a_change_of_live_options_only_replaces_no_worker() -> None:
    new = _with_watcher(BASE, "webapp", numprocesses=6, flapping=FlappingSpec(attempts=3))
    (change,) = diff_stacks(BASE, new)
    assert change.op == "change" and not change.replaces


def test_env_changes_are_per_variable_and_secrets_are_not_shown() -> None:
    new = _with_watcher(
        BASE, "webapp", env=_frozen_map({"GREETING": "hi", "DB_PASSWORD": "new", "MODE": "x"})
    )
    (change,) = diff_stacks(BASE, new)
    assert change.details == (
        "env.DB_PASSWORD: (secret) changed",
        "env.GREETING: 'hello' -> 'hi'",
        "env.MODE: (unset) -> 'x'",
    )
    assert not any("old" in line or "new" in line for line in change.details)


def test_adds_and_removes_are_sorted_sockets_first_then_watchers_by_name() -> None:
    new = load_stack(
        '[sockets.zz]\npath = "/tmp/zz.sock"\n[sockets.admin]\nport = 9090\n'
        '[watchers.alpha]\ncmd = "a"\nnumprocesses = 2\n[watchers.ticker]\ncmd = "tick"\n'
    )
    assert [(c.op, c.kind, c.name) for c in diff_stacks(BASE, new)] == [
        ("remove", "socket", "web"),
        ("add", "socket", "zz"),
        ("add", "watcher", "alpha"),
        ("remove", "watcher", "webapp"),
    ]
    added = {c.name: c.details for c in diff_stacks(BASE, new) if c.op == "add"}
    assert added == {"zz": ("path: '/tmp/zz.sock'",), "alpha": ("cmd: 'a'", "numprocesses: 2")}


def test_a_changed_socket_lists_its_options_and_marks_the_watchers_that_inherit_it() -> None:
    new = load_stack(
        "[sockets.web]\nport = 8081\nbacklog = 10\n[sockets.admin]\nport = 9090\n"
        + WEBAPP
        + '[watchers.ticker]\ncmd = "tick"\n'
    )
    assert diff_stacks(BASE, new) == [
        Change("change", "socket", "web", ("port: 8080 -> 8081", "backlog: 2048 -> 10")),
        Change(
            "change",
            "watcher",
            "webapp",
            ("uses socket web, which changed (port: 8080 -> 8081; backlog: 2048 -> 10)",),
            replaces=True,
        ),
    ]


def test_a_socket_change_that_keeps_its_address_replaces_no_worker() -> None:
    new = load_stack(
        "[sockets.web]\nport = 8080\nbacklog = 10\nso_reuseport = true\n"
        "[sockets.admin]\nport = 9090\n" + WEBAPP + '[watchers.ticker]\ncmd = "tick"\n'
    )
    assert diff_stacks(BASE, new) == [
        Change(
            "change",
            "socket",
            "web",
            (
                "backlog: 2048 -> 10",
                "so_reuseport: False -> True",
                "same address: the bound socket is kept and no worker is replaced "
                "(so_reuseport takes effect when it is next bound)",
            ),
        ),
    ]
    old_spec, new_spec = BASE.watchers["webapp"], new.watchers["webapp"]
    assert not needs_new_processes(old_spec, new_spec, old_stack=BASE, new_stack=new)


USES_ALL = '[watchers.all]\ncmd = "serve"\nuse_sockets = true\n'


def test_adding_or_removing_a_socket_replaces_the_use_sockets_watchers_and_says_why() -> None:
    old = load_stack("[sockets.web]\nport = 8080\n" + WEBAPP + USES_ALL)
    added = load_stack(
        "[sockets.web]\nport = 8080\n[sockets.other]\nport = 9090\n" + WEBAPP + USES_ALL
    )
    assert diff_stacks(old, added) == [
        Change("add", "socket", "other", ("address: 127.0.0.1:9090",)),
        Change(
            "change",
            "watcher",
            "all",
            ("inherits the new socket other (address: 127.0.0.1:9090)",),
            replaces=True,
        ),
    ]
    assert diff_stacks(added, old) == [
        Change("remove", "socket", "other"),
        Change(
            "change",
            "watcher",
            "all",
            ("no longer inherits socket other, which is removed",),
            replaces=True,
        ),
    ]
    webapp = old.watchers["webapp"]  # names its sockets: untouched by `other`
    assert not needs_new_processes(webapp, webapp, old_stack=old, new_stack=added)


SPEC = WatcherSpec(name="w", cmd="run", numprocesses=2)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"numprocesses": 5}, False),
        ({"priority": 3, "autostart": False, "max_retry": 1}, False),
        ({"flapping": FlappingSpec(attempts=9)}, False),
        ({"placement": PlacementSpec(mode="each", max_per_host=2)}, False),
        ({"update": UpdateSpec(max_parallel=4)}, False),
        ({"health": HealthSpec(type="tcp", target="80")}, False),
        ({"cmd": "other"}, True),
        ({"env": _frozen_map({"A": "1"})}, True),
        ({"graceful_timeout": 5.0}, True),
        ({"sockets": ("web",), "use_sockets": True}, True),
        ({"use_sockets": True}, True),
    ],
)
def test_needs_new_processes_only_for_options_of_the_process(
    changes: dict[str, object], expected: bool
) -> None:
    assert needs_new_processes(SPEC, replace(SPEC, **changes)) is expected  # type: ignore[arg-type]


def test_needs_new_processes_when_an_inherited_socket_changes() -> None:
    new = load_stack("[sockets.web]\nport = 8081\n[sockets.admin]\nport = 9091\n" + WEBAPP)
    old_spec, new_spec = BASE.watchers["webapp"], new.watchers["webapp"]
    assert not needs_new_processes(old_spec, new_spec)
    assert needs_new_processes(old_spec, new_spec, old_stack=BASE, new_stack=new)
    ticker = BASE.watchers["ticker"]
    assert not needs_new_processes(ticker, ticker, old_stack=BASE, new_stack=new)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"numprocesses": 7, "priority": 1},
        {"env": _frozen_map({"A": "2"})},
        {"rlimits": _frozen_map({"nofile": 10})},
        {"flapping": FlappingSpec(window=3.0)},
        {"stdout_stream": replace(SPEC.stdout_stream, backup_count=1)},
    ],
)
def test_needs_new_processes_agrees_with_the_process_fingerprint(
    changes: dict[str, object],
) -> None:
    old = replace(SPEC, env=_frozen_map({"A": "1"}))
    new = replace(old, **changes)  # type: ignore[arg-type]
    fingerprint_differs = old.process_fingerprint() != new.process_fingerprint()
    assert needs_new_processes(old, new) is fingerprint_differs


def test_scale_together_with_a_changed_socket_is_a_change() -> None:
    new = load_stack("[sockets.web]\nport = 8081\n" + WEBAPP.replace("= 4", "= 6"))
    changes = [c for c in diff_stacks(BASE, new) if c.name == "webapp"]
    assert changes == [
        Change(
            "change",
            "watcher",
            "webapp",
            ("numprocesses: 4 -> 6", "uses socket web, which changed (port: 8080 -> 8081)"),
            replaces=True,
        )
    ]


def test_fleet_tables_are_a_change_with_one_detail_per_option() -> None:
    placement = PlacementSpec(mode="each", max_per_host=2, labels=_frozen_map({"role": "web"}))
    new = _with_watcher(
        BASE,
        "webapp",
        placement=placement,
        update=UpdateSpec(min_uptime=5.0),
        health=HealthSpec(type="http", target="/healthz", retries=1),
    )
    assert diff_stacks(BASE, new) == [
        Change(
            "change",
            "watcher",
            "webapp",
            (
                "placement.mode: 'spread' -> 'each'",
                "placement.max_per_host: 0 -> 2",
                "placement.labels.role: (unset) -> 'web'",
                "update.min_uptime: 2.0 -> 5.0",
                "health.type: '' -> 'http'",
                "health.target: '' -> '/healthz'",
                "health.retries: 3 -> 1",
            ),
        )
    ]


def test_a_version_needs_its_inherited_sockets_in_fd_order_then_its_stdin_socket() -> None:
    stack = load_stack(
        "[sockets.web]\nport = 8080\n[sockets.admin]\nport = 9090\n[sockets.fcgi]\nport = 7000\n"
        '[watchers.named]\ncmd = "x"\nsockets = ["web", "admin"]\nstdin_socket = "fcgi"\n'
        '[watchers.all]\ncmd = "x"\nuse_sockets = true\nstdin_socket = "fcgi"\n'
    )
    named, every = stack.watchers["named"], stack.watchers["all"]
    needed = version_sockets(named, stack.sockets)
    assert [s.name for s in needed] == ["web", "admin", "fcgi"]
    assert [s.name for s in passed_as_fds(named, needed)] == ["web", "admin"]
    all_needed = version_sockets(every, stack.sockets)
    assert [s.name for s in all_needed] == ["admin", "fcgi", "web"]
    assert passed_as_fds(every, all_needed) == all_needed
    assert version_fingerprint(named, ()) == named.process_fingerprint()
    moved = replace(stack.sockets["fcgi"], port=7001)
    assert version_fingerprint(named, needed) != version_fingerprint(named, (*needed[:2], moved))
    bigger = replace(stack.sockets["fcgi"], backlog=5)
    assert version_fingerprint(named, needed) == version_fingerprint(named, (*needed[:2], bigger))
