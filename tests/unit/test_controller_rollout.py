"""Rolling changes as pure steps: begin, batches, readiness, halt, and the stored form."""

from __future__ import annotations

from dataclasses import replace

from stack.controller import desired as d
from stack.controller.rollout import Rollout, Seen, advance, host_share
from stack.controller.store import schema
from stack.spec.load import load_stack
from stack.spec.observed import Health, ProcessState
from stack.spec.version import WatcherVersion
from tests.unit import store_schema0


def stack(cmd: str = "app --v1", count: int = 4, parallel: int = 2, health: str = "") -> str:
    text = f"""
[watchers.web]
cmd = "{cmd}"
numprocesses = {count}
[watchers.web.update]
max_parallel = {parallel}
min_uptime = 2.0
"""
    if health:
        text += f'[watchers.web.health]\ntype = "tcp"\ntarget = {health}\n'
    return text


def apply(
    text: str, state: d.DesiredState | None = None, wids: tuple[int, ...] = ()
) -> d.DesiredState:
    new, _ = d.apply_stack(
        state or d.DesiredState(), load_stack(text, "t.toml"), {"web": set(wids)}
    )
    return new


def running(
    version: WatcherVersion, wid: int, for_: float = 5.0, health: Health = Health.UNSPECIFIED
) -> Seen:
    return Seen("h1", version.label, ProcessState.RUNNING, 1000 + wid, health, for_)


def crashed(version: WatcherVersion, wid: int) -> Seen:
    return Seen("h2", version.label, ProcessState.EXITED, 0, why="exit code 3")


def test_a_new_command_pins_every_placed_process_to_the_version_it_runs() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4))
    rollout = new.watchers["web"].rollout
    assert rollout is not None
    assert set(rollout.pinned) == {1, 2, 3, 4} and not rollout.batch
    assert {v.label for v in rollout.pinned.values()} == {old.version("web").label}
    assert rollout.summary() == "rolling out: 0 of 4 replaced"


def test_scaling_or_a_stopped_watcher_starts_no_rollout() -> None:
    old = apply(stack())
    assert apply(stack(count=6), old, wids=(1, 2, 3, 4)).watchers["web"].rollout is None
    stopped = d.stop(old, ("web",))
    assert apply(stack(cmd="app --v2"), stopped, wids=(1, 2)).watchers["web"].rollout is None


def test_batches_of_max_parallel_advance_only_when_the_batch_stayed_up_min_uptime() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4)).watchers["web"]
    target, wanted = new.version({}), {1, 2, 3, 4}
    assert new.rollout is not None
    first, what = advance(new.rollout, target, {}, wanted)
    assert what == "batch" and first is not None and set(first.batch) == {1, 2}
    # The old processes of the batch are still reported: wait.
    old_version = old.version("web")
    same, what = advance(first, target, {1: running(old_version, 1)}, wanted)
    assert same is first and what == ""
    # Up, but not for min_uptime yet: wait.
    young = {1: running(target, 1, 0.5), 2: running(target, 2, 3.0)}
    assert advance(first, target, young, wanted) == (first, "")
    up = {1: running(target, 1, 2.0), 2: running(target, 2, 3.0)}
    second, what = advance(first, target, up, wanted)
    assert what == "batch" and second is not None and set(second.batch) == {3, 4}
    assert second.summary() == "rolling out: 2 of 4 replaced, replacing 3, 4"
    up.update({3: running(target, 3), 4: running(target, 4)})
    assert advance(second, target, up, wanted) == (None, "done")


def test_with_a_health_check_a_batch_waits_for_healthy_not_uptime() -> None:
    old = apply(stack(health="8080"))
    new = apply(stack(cmd="app --v2", health="8080", parallel=1), old, wids=(1, 2)).watchers["web"]
    target = new.version({})
    assert new.rollout is not None
    first, _ = advance(new.rollout, target, {}, {1, 2})
    assert first is not None
    long_up = {1: running(target, 1, 60.0, Health.STARTING)}
    assert advance(first, target, long_up, {1, 2}) == (first, "")
    healthy = {1: running(target, 1, 0.1, Health.HEALTHY)}
    nxt, what = advance(first, target, healthy, {1, 2})
    assert what == "batch" and nxt is not None and set(nxt.batch) == {2}


def test_a_crash_of_the_new_version_halts_and_pins_the_batch_back() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4)).watchers["web"]
    target = new.version({})
    assert new.rollout is not None
    first, _ = advance(new.rollout, target, {}, {1, 2, 3, 4})
    assert first is not None
    halted, what = advance(first, target, {2: crashed(target, 2)}, {1, 2, 3, 4})
    assert what == "halted" and halted is not None
    assert set(halted.pinned) == {1, 2, 3, 4} and not halted.batch
    assert halted.halted.startswith("the new version of worker 2 on h2 failed: exit code 3")
    assert halted.summary().startswith("rollout halted: ")
    # Halted stays halted: no new batch, whatever is reported.
    assert advance(halted, target, {}, {1, 2, 3, 4}) == (halted, "")


def test_a_crash_of_an_old_process_in_the_batch_is_not_a_failure_of_the_new_version() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2)).watchers["web"]
    target = new.version({})
    assert new.rollout is not None
    first, _ = advance(new.rollout, target, {}, {1, 2})
    assert first is not None
    old_crash = {1: crashed(old.version("web"), 1)}
    assert advance(first, target, old_crash, {1, 2}) == (first, "")


def test_a_scale_down_drops_its_ids_from_the_rollout() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4)).watchers["web"]
    assert new.rollout is not None
    first, _ = advance(new.rollout, new.version({}), {}, {1, 2})
    assert first is not None and set(first.batch) == {1, 2} and not first.pinned


def test_going_back_to_a_still_pinned_version_needs_no_new_processes() -> None:
    v1 = apply(stack())
    v2 = apply(stack(cmd="app --v2"), v1, wids=(1, 2, 3, 4))
    back = apply(stack(), v2, wids=(1, 2, 3, 4))
    assert back.version("web") == v1.version("web")
    assert back.watchers["web"].rollout is None


def test_a_new_change_during_a_rollout_keeps_each_id_pinned_to_what_it_runs() -> None:
    v1 = apply(stack())
    v2 = apply(stack(cmd="app --v2"), v1, wids=(1, 2, 3, 4))
    rollout = v2.watchers["web"].rollout
    assert rollout is not None
    moved = replace(rollout, pinned={3: rollout.pinned[3], 4: rollout.pinned[4]}, batch={})
    v2 = d.set_rollout(v2, "web", moved)  # 1 and 2 already run v2
    v3 = apply(stack(cmd="app --v3"), v2, wids=(1, 2, 3, 4))
    pinned = v3.watchers["web"].rollout
    assert pinned is not None
    labels = {wid: version.label for wid, version in pinned.pinned.items()}
    assert labels[1] == labels[2] == v2.version("web").label
    assert labels[3] == labels[4] == v1.version("web").label


def test_restart_rolling_rolls_and_plain_restart_ends_a_rollout() -> None:
    state = apply(stack())
    rolling = d.restart(state, ("web",), rolling=True, placed={"web": {1, 2}})
    assert rolling.watchers["web"].rollout is not None
    assert rolling.watchers["web"].restart_token == 1
    plain = d.restart(rolling, ("web",))
    assert plain.watchers["web"].rollout is None


def test_the_rollout_round_trips_through_the_store_records() -> None:
    v1 = apply(stack())
    v2 = apply(stack(cmd="app --v2"), v1, wids=(1, 2, 3))
    rollout = v2.watchers["web"].rollout
    assert rollout is not None
    first, _ = advance(rollout, v2.version("web"), {}, {1, 2, 3})
    state = d.set_rollout(v2, "web", first)
    assert schema.decode(schema.encode(state)) == state
    assert first is not None
    halted = d.set_rollout(state, "web", Rollout(first.pinned, first.batch, 3, "why"))
    back = schema.decode(schema.encode(halted))
    assert back.watchers["web"].rollout == halted.watchers["web"].rollout


def test_host_share_groups_pinned_ids_by_version_and_lists_the_batch() -> None:
    v1 = apply(stack())
    v2 = apply(stack(cmd="app --v2"), v1, wids=(1, 2, 3, 4))
    rollout = v2.watchers["web"].rollout
    assert rollout is not None
    first, _ = advance(rollout, v2.version("web"), {}, {1, 2, 3, 4})
    pinned, probation = host_share(first, [2, 3])
    assert [(version.label, wids) for version, wids in pinned] == [(v1.version("web").label, [3])]
    assert probation == [2]
    assert host_share(None, [1]) == ([], [])


def with_sockets(port: int = 8080, other: int = 0, use_all: bool = False) -> str:
    """A stack whose `web` inherits socket `web` (or every socket, with `use_all`)."""
    text = f"[sockets.web]\nport = {port}\n"
    if other:
        text += f"[sockets.other]\nport = {other}\n"
    inherit = "use_sockets = true" if use_all else 'sockets = ["web"]'
    return text + stack().replace("numprocesses", inherit + "\nnumprocesses")


def test_a_socket_moved_to_another_port_rolls_its_users_over_with_the_old_one_pinned() -> None:
    v1 = apply(with_sockets(8080))
    v2 = apply(with_sockets(8081), v1, wids=(1, 2, 3, 4))
    rollout = v2.watchers["web"].rollout
    assert rollout is not None and set(rollout.pinned) == {1, 2, 3, 4}
    assert {tuple(s.port for s in v.sockets) for v in rollout.pinned.values()} == {(8080,)}
    assert [s.port for s in v2.version("web").sockets] == [8081]
    assert v2.watchers["web"].restart_token == v1.watchers["web"].restart_token


def test_adding_a_socket_rolls_over_the_watchers_that_use_every_socket() -> None:
    v1 = apply(with_sockets(use_all=True))
    v2 = apply(with_sockets(other=9090, use_all=True), v1, wids=(1, 2))
    rollout = v2.watchers["web"].rollout
    assert rollout is not None and set(rollout.pinned) == {1, 2}
    assert [s.name for s in v2.version("web").sockets] == ["other", "web"]
    # a watcher that names its sockets is not touched by another socket
    named = apply(with_sockets(), wids=(1, 2))
    assert apply(with_sockets(other=9090), named, wids=(1, 2)).watchers["web"].rollout is None


def test_removing_the_new_socket_again_ends_the_rollout_without_new_processes() -> None:
    v1 = apply(with_sockets(use_all=True))
    v2 = apply(with_sockets(other=9090, use_all=True), v1, wids=(1, 2))
    back = apply(with_sockets(use_all=True), v2, wids=(1, 2))
    assert back.watchers["web"].rollout is None
    assert back.version("web") == v1.version("web")


def test_a_batch_whose_new_version_cannot_start_on_its_host_halts_the_rollout() -> None:
    v1 = apply(with_sockets(8080))
    v2 = apply(with_sockets(8081), v1, wids=(1, 2))
    target, old = v2.version("web"), v1.version("web")
    assert v2.watchers["web"].rollout is not None
    first, _ = advance(v2.watchers["web"].rollout, target, {}, {1, 2})
    assert first is not None and set(first.batch) == {1, 2}
    why = "socket web: cannot bind 127.0.0.1:8081: Address already in use"
    kept = {1: replace(running(old, 1), blocked=why)}  # the old process still runs
    halted, what = advance(first, target, kept, {1, 2})
    assert what == "halted" and halted is not None
    assert halted.halted == (
        f"the new version of worker 1 on h1 cannot start: {why}; "
        "2 processes keep the version they ran"
    )
    assert set(halted.pinned) == {1, 2}


def test_a_rollout_keeps_its_versions_sockets_in_the_store_and_reads_older_records() -> None:
    v1 = apply(with_sockets(8080))
    v2 = apply(with_sockets(8081), v1, wids=(1, 2))
    assert schema.decode(schema.encode(v2)) == v2
    # a controller that did not store them: the pinned version inherits by name
    older = schema.decode(store_schema0.without_version_sockets(store_schema0.encode(v2)))
    rollout = older.watchers["web"].rollout
    assert rollout is not None
    assert {tuple(s.port for s in v.sockets) for v in rollout.pinned.values()} == {(8081,)}


def test_the_plan_says_which_watchers_a_socket_change_replaces_and_going_back_replaces_none() -> (
    None
):
    v1 = apply(with_sockets(use_all=True))
    v2, changes = d.apply_stack(
        v1, load_stack(with_sockets(other=9090, use_all=True)), {"web": {1}}
    )
    (web,) = [c for c in changes if c.kind == "watcher"]
    assert web.replaces and web.details == (
        "inherits the new socket other (address: 127.0.0.1:9090)",
    )
    _, changes = d.apply_stack(v2, load_stack(with_sockets(use_all=True)), {"web": {1}})
    (web,) = [c for c in changes if c.kind == "watcher"]
    assert not web.replaces
    assert web.details == (
        "no longer inherits socket other, which is removed",
        "its workers run this version already: none is replaced",
    )
