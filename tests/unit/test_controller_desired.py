"""Desired-state transitions: apply semantics, scale bounds, watcher selection, records."""

from __future__ import annotations

import pytest

from stack.controller import desired as d
from stack.controller.errors import InvalidArgument, NotFound
from stack.controller.store import schema
from stack.spec.load import load_stack

BASE = """
[sockets.web]
port = 8080

[watchers.web]
cmd = "python3 app.py"
numprocesses = 2
use_sockets = true

[watchers.job]
cmd = "sleep 100"
autostart = false
singleton = true
"""


def applied(text: str = BASE, state: d.DesiredState | None = None) -> d.DesiredState:
    new, _ = d.apply_stack(state or d.DesiredState(), load_stack(text, "t.toml"))
    return new


def test_apply_adds_watchers_active_per_autostart_and_bumps_generation() -> None:
    state, changes = d.apply_stack(d.DesiredState(), load_stack(BASE, "t.toml"))
    assert {(c.op, c.kind, c.name) for c in changes} == {
        ("add", "watcher", "web"),
        ("add", "watcher", "job"),
        ("add", "socket", "web"),
    }
    assert state.generation == 1
    assert state.watchers["web"].active is True
    assert state.watchers["job"].active is False
    assert set(state.sockets) == {"web"}


def test_apply_of_the_same_stack_changes_nothing() -> None:
    state = applied()
    again, changes = d.apply_stack(state, load_stack(BASE, "t.toml"))
    assert changes == []
    assert again is state


def test_apply_with_numprocesses_only_scales_without_restart() -> None:
    state = applied()
    new = applied(BASE.replace("numprocesses = 2", "numprocesses = 5"), state)
    assert new.watchers["web"].spec.numprocesses == 5
    assert new.watchers["web"].restart_token == state.watchers["web"].restart_token
    assert new.generation == state.generation + 1


def test_apply_with_a_changed_command_gives_only_that_watcher_a_new_version() -> None:
    state = applied()
    new = applied(BASE.replace("python3 app.py", "python3 app2.py"), state)
    web = new.watchers["web"]
    assert new.version("web").label != state.version("web").label
    assert web.restart_token == 0  # the new fingerprint alone names the new version
    assert web.graceful is False
    assert new.version("job") == state.version("job")


def test_apply_with_a_moved_inherited_socket_gives_its_users_a_new_version() -> None:
    state = applied()
    new = applied(BASE.replace("port = 8080", "port = 8081"), state)
    assert new.version("web").label != state.version("web").label
    assert new.watchers["web"].restart_token == 0  # the socket names the new version
    assert new.version("job") == state.version("job")
    assert [s.port for s in new.version("web").sockets] == [8081]


def test_a_socket_change_that_keeps_its_address_gives_no_new_version() -> None:
    state = applied()
    new = applied(BASE.replace("port = 8080", "port = 8080\nbacklog = 5"), state)
    assert new.version("web").label == state.version("web").label
    assert new.watchers["web"].rollout is None


def test_apply_removes_watchers_and_sockets_missing_from_the_file() -> None:
    state = applied()
    new = applied('[watchers.job]\ncmd = "sleep 100"\n', state)
    assert set(new.watchers) == {"job"}
    assert dict(new.sockets) == {}


def test_apply_keeps_the_user_stop_of_an_existing_watcher() -> None:
    state = d.stop(applied(), ("web",))
    new = applied(BASE.replace("numprocesses = 2", "numprocesses = 3"), state)
    assert new.watchers["web"].active is False


@pytest.mark.parametrize(
    ("count", "relative", "expected"),
    [(6, False, 6), (3, True, 5), (-2, True, 0), (0, False, 0), (10_000, False, 10_000)],
)
def test_scale_sets_absolute_or_relative_counts(count: int, relative: bool, expected: int) -> None:
    state = applied()
    new, previous = d.scale(state, "web", count, relative)
    assert previous == 2
    assert new.watchers["web"].spec.numprocesses == expected


@pytest.mark.parametrize(
    ("watcher", "count", "relative", "message"),
    [
        ("web", -3, False, "scale web: count must be between 0 and 10000, got -3"),
        ("web", -5, True, "scale web: count must be between 0 and 10000, got -3"),
        ("web", 10_001, False, "scale web: count must be between 0 and 10000, got 10001"),
        ("job", 2, False, "scale job: count must be between 0 and 1 for a singleton, got 2"),
    ],
)
def test_scale_out_of_bounds_is_invalid_argument(
    watcher: str, count: int, relative: bool, message: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        d.scale(applied(), watcher, count, relative)
    assert str(err.value) == message


def test_scale_of_an_unknown_watcher_is_not_found() -> None:
    with pytest.raises(NotFound, match="unknown watcher 'nope'"):
        d.scale(applied(), "nope", 1, False)


def test_scale_to_the_same_count_changes_nothing() -> None:
    state = applied()
    assert d.scale(state, "web", 2, False)[0] is state


def test_select_refuses_an_empty_request_and_any_unknown_name() -> None:
    state = applied()
    with pytest.raises(InvalidArgument):
        d.select(state, [], False)
    with pytest.raises(NotFound, match="unknown watcher 'x'"):
        d.select(state, ["web", "x"], False)
    assert d.select(state, [], True) == ("job", "web")


def test_start_activates_and_clears_flapping_with_a_new_reset_token() -> None:
    state = applied()
    new = d.start(state, ("job",))
    assert new.watchers["job"].active is True
    assert new.watchers["job"].reset_token == 1
    assert new.generation == state.generation + 1


def test_stop_of_a_stopped_watcher_changes_nothing() -> None:
    state = applied()
    assert d.stop(state, ("job",)) is state


def test_restart_and_reload_bump_the_restart_token_with_their_grace() -> None:
    state = d.stop(applied(), ("web",))
    restarted = d.restart(state, ("web",)).watchers["web"]
    assert (restarted.restart_token, restarted.graceful, restarted.active) == (1, False, True)
    reloaded = d.reload(state, ("web",)).watchers["web"]
    assert (reloaded.restart_token, reloaded.graceful, reloaded.active) == (1, True, False)


def test_reset_bumps_only_the_reset_token() -> None:
    state = applied()
    new = d.reset(state, ("web",)).watchers["web"]
    assert new == d.DesiredWatcher(spec=state.watchers["web"].spec, active=True, reset_token=1)


def test_remove_deletes_the_watcher_and_refuses_unknown_ones() -> None:
    state = applied()
    assert set(d.remove(state, "job").watchers) == {"web"}
    with pytest.raises(NotFound):
        d.remove(state, "nope")


def test_records_round_trip_the_whole_state() -> None:
    state = d.reload(d.start(applied(), ("job",)), ("web",))
    assert schema.decode(schema.encode(state)) == state


def test_record_changes_put_only_what_changed_and_delete_what_went() -> None:
    state = applied()
    new = d.remove(d.scale(state, "web", 3, False)[0], "job")
    puts, deletes = schema.record_changes(state, new)
    assert set(puts) == {schema.GENERATION_KEY, schema.WATCHER_PREFIX + "web"}
    assert deletes == [schema.WATCHER_PREFIX + "job"]


def test_drain_and_undrain_are_stored_and_read_back() -> None:
    state = d.drain(d.DesiredState(), "h2")
    assert state.drained == {"h2"} and state.generation == 1
    assert d.drain(state, "h2") is state  # draining twice changes nothing
    assert schema.decode(schema.encode(state)) == state
    back = d.undrain(state, "h2")
    assert back.drained == frozenset() and back.generation == 2
    _, deletes = schema.record_changes(state, back)
    assert deletes == [schema.DRAINED_PREFIX + "h2"]
    assert d.undrain(back, "h2") is back
