"""Rolling changes as pure steps: begin, batches, readiness, halt, and the stored form."""

from __future__ import annotations

from dataclasses import replace

from stack.controller import desired as d
from stack.controller.rollout import Rollout, Seen, Version, advance, host_share
from stack.spec.load import load_stack
from stack.v1 import types_pb2

P = types_pb2


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


def running(version: Version, wid: int, for_: float = 5.0, health: int = 0) -> Seen:
    return Seen("h1", version.label, P.PROCESS_STATE_RUNNING, 1000 + wid, health, for_)


def crashed(version: Version, wid: int) -> Seen:
    return Seen("h2", version.label, P.PROCESS_STATE_EXITED, 0, why="exit code 3")


def test_a_new_command_pins_every_placed_process_to_the_version_it_runs() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4))
    rollout = new.watchers["web"].rollout
    assert rollout is not None
    assert set(rollout.pinned) == {1, 2, 3, 4} and not rollout.batch
    assert {v.label for v in rollout.pinned.values()} == {old.watchers["web"].version().label}
    assert rollout.summary() == "rolling out: 0 of 4 replaced"


def test_scaling_or_a_stopped_watcher_starts_no_rollout() -> None:
    old = apply(stack())
    assert apply(stack(count=6), old, wids=(1, 2, 3, 4)).watchers["web"].rollout is None
    stopped = d.stop(old, ("web",))
    assert apply(stack(cmd="app --v2"), stopped, wids=(1, 2)).watchers["web"].rollout is None


def test_batches_of_max_parallel_advance_only_when_the_batch_stayed_up_min_uptime() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4)).watchers["web"]
    target, wanted = new.version(), {1, 2, 3, 4}
    assert new.rollout is not None
    first, what = advance(new.rollout, target, {}, wanted)
    assert what == "batch" and first is not None and set(first.batch) == {1, 2}
    # The old processes of the batch are still reported: wait.
    old_version = old.watchers["web"].version()
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
    target = new.version()
    assert new.rollout is not None
    first, _ = advance(new.rollout, target, {}, {1, 2})
    assert first is not None
    long_up = {1: running(target, 1, 60.0, P.HEALTH_STARTING)}
    assert advance(first, target, long_up, {1, 2}) == (first, "")
    healthy = {1: running(target, 1, 0.1, P.HEALTH_HEALTHY)}
    nxt, what = advance(first, target, healthy, {1, 2})
    assert what == "batch" and nxt is not None and set(nxt.batch) == {2}


def test_a_crash_of_the_new_version_halts_and_pins_the_batch_back() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4)).watchers["web"]
    target = new.version()
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
    target = new.version()
    assert new.rollout is not None
    first, _ = advance(new.rollout, target, {}, {1, 2})
    assert first is not None
    old_crash = {1: crashed(old.watchers["web"].version(), 1)}
    assert advance(first, target, old_crash, {1, 2}) == (first, "")


def test_a_scale_down_drops_its_ids_from_the_rollout() -> None:
    old = apply(stack())
    new = apply(stack(cmd="app --v2"), old, wids=(1, 2, 3, 4)).watchers["web"]
    assert new.rollout is not None
    first, _ = advance(new.rollout, new.version(), {}, {1, 2})
    assert first is not None and set(first.batch) == {1, 2} and not first.pinned


def test_going_back_to_a_still_pinned_version_needs_no_new_processes() -> None:
    v1 = apply(stack())
    v2 = apply(stack(cmd="app --v2"), v1, wids=(1, 2, 3, 4))
    back = apply(stack(), v2, wids=(1, 2, 3, 4))
    assert back.watchers["web"].version() == v1.watchers["web"].version()
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
    assert labels[1] == labels[2] == v2.watchers["web"].version().label
    assert labels[3] == labels[4] == v1.watchers["web"].version().label


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
    first, _ = advance(rollout, v2.watchers["web"].version(), {}, {1, 2, 3})
    state = d.set_rollout(v2, "web", first)
    assert d.decode(d.encode(state)) == state
    assert first is not None
    halted = d.set_rollout(state, "web", Rollout(first.pinned, first.batch, 3, "why"))
    assert d.decode(d.encode(halted)).watchers["web"].rollout == halted.watchers["web"].rollout


def test_host_share_groups_pinned_ids_by_version_and_lists_the_batch() -> None:
    v1 = apply(stack())
    v2 = apply(stack(cmd="app --v2"), v1, wids=(1, 2, 3, 4))
    rollout = v2.watchers["web"].rollout
    assert rollout is not None
    first, _ = advance(rollout, v2.watchers["web"].version(), {}, {1, 2, 3, 4})
    pinned, probation = host_share(first, [2, 3])
    assert [(version.label, wids) for version, wids in pinned] == [
        (v1.watchers["web"].version().label, [3])
    ]
    assert probation == [2]
    assert host_share(None, [1]) == ([], [])
