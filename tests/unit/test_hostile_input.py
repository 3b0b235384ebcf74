"""Careless and hostile input, in the pure parts: names, process caps, log shipping bounds.

The services' ends of the same rules are tested over real gRPC in
tests/integration/test_hostile_input.py.
"""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.agent.output import MAX_REPLY_BYTES, LogHub, ShipRate
from stack.agent.process import SpawnError, worker_ids
from stack.controller import desired as d
from stack.controller.agent_service import hello_problem
from stack.controller.errors import InvalidArgument
from stack.spec.errors import SpecError
from stack.spec.load import load_stack
from stack.spec.model import MAX_PROCESSES, NAME_RULE, StreamSpec, WatcherSpec, valid_name
from stack.v1 import agent_pb2
from stack.wire.agent import hello_from_proto
from tests.support.clock import FakeClock

STACK = """
[watchers.web]
cmd = "python3 app.py"
numprocesses = 2

[watchers.job]
cmd = "sleep 100"
singleton = true
"""


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["web", "a", "web-1.v2_b", "A" * 64, "..", "0"], ids=lambda n: n[:10]
)
def test_plain_names_up_to_64_characters_are_valid(name: str) -> None:
    assert valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a/b", "../etc", "A" * 65, "web\n", "wéb", "a\x00b", "$(x)", "a,b", "a=b"],
    ids=repr,
)
def test_names_with_anything_else_are_invalid(name: str) -> None:
    assert not valid_name(name)


@given(st.text(max_size=80))
def test_a_name_is_valid_exactly_when_every_character_is_plain(name: str) -> None:
    plain = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    assert valid_name(name) == (1 <= len(name) <= 64 and set(name) <= plain)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[watchers.""]\ncmd = "run"\n', 'webapp.toml: watchers."": name must match '),
        ('[watchers."a.b c"]\ncmd = "run"\n', 'webapp.toml: watchers."a.b c": name must match '),
        ('[sockets."x\\ty"]\nport = 1\n', 'webapp.toml: sockets."x\\ty": name must match '),
    ],
)
def test_a_bad_name_in_a_stack_file_is_one_line_with_its_quoted_key(
    text: str, expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack(text, "webapp.toml")
    assert str(caught.value) == expected + "[A-Za-z0-9_.-]{1,64}"


# -- the controller's process cap -------------------------------------------------------


def test_scale_refuses_a_count_above_the_controllers_cap() -> None:
    state, _ = d.apply_stack(d.DesiredState(), load_stack(STACK, "s.toml"))
    with pytest.raises(InvalidArgument) as caught:
        d.scale(state, "web", 501, False, max_processes=500)
    assert str(caught.value) == "scale web: count must be between 0 and 500, got 501"
    with pytest.raises(InvalidArgument):
        d.scale(state, "web", 499, True, max_processes=500)  # 2 + 499
    scaled, previous = d.scale(state, "web", 500, False, max_processes=500)
    assert (previous, scaled.watchers["web"].spec.numprocesses) == (2, 500)


def test_the_cap_never_lifts_the_absolute_limit_nor_a_singletons() -> None:
    state, _ = d.apply_stack(d.DesiredState(), load_stack(STACK, "s.toml"))
    with pytest.raises(InvalidArgument, match=f"between 0 and {MAX_PROCESSES}, got"):
        d.scale(state, "web", MAX_PROCESSES + 1, False, max_processes=MAX_PROCESSES * 2)
    with pytest.raises(InvalidArgument, match="between 0 and 1 for a singleton, got 2"):
        d.scale(state, "job", 2, False, max_processes=500)


def test_apply_refuses_a_stack_above_the_cap_naming_the_file_and_key() -> None:
    big = load_stack(STACK.replace("numprocesses = 2", "numprocesses = 600"), "s.toml")
    with pytest.raises(InvalidArgument) as caught:
        d.apply_stack(d.DesiredState(), big, max_processes=500, filename="s.toml")
    assert str(caught.value) == (
        "s.toml: watchers.web.numprocesses: must be <= 500 (the controller's --max-processes), "
        "got 600"
    )
    state, changes = d.apply_stack(d.DesiredState(), big, max_processes=600)
    assert changes and state.watchers["web"].spec.numprocesses == 600


# -- log shipping bounds ----------------------------------------------------------------


FILE = StreamSpec(max_bytes=0)
"""One unrotated file per stream."""


def test_ship_rate_allows_a_burst_of_one_second_then_the_rate() -> None:
    rate = ShipRate(1000, now=0.0)
    assert rate.allow(5000, now=0.0) == 1000
    assert rate.allow(5000, now=0.0) == 0
    assert rate.allow(5000, now=0.5) == 500
    assert rate.allow(100, now=10.0) == 100, "a quiet spell refills the bucket"
    assert rate.allow(5000, now=10.0) == 900, "but never beyond one second's worth"


@given(st.lists(st.tuples(st.integers(0, 3000), st.floats(0, 2)), max_size=50))
def test_ship_rate_never_lets_more_through_than_rate_times_time_plus_one_burst(
    steps: list[tuple[int, float]],
) -> None:
    rate = ShipRate(1000, now=0.0)
    now = 0.0
    allowed = 0
    for count, pause in steps:
        now += pause
        got = rate.allow(count, now)
        assert 0 <= got <= count
        allowed += got
    assert allowed <= 1000 + 1000 * now + 1e-6


def test_ship_rate_zero_means_no_cap() -> None:
    assert ShipRate(0, now=0.0).allow(10**6, now=0.0) == 10**6


def test_lines_over_the_rate_are_dropped_from_shipping_counted_and_kept_on_disk(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    hub = LogHub(tmp_path, ship_lines=100_000, max_line=100, ship_rate=100, clock=clock.now)
    hub.configure("w", FILE, FILE)
    hub._emit("w", 1, "out", [b"line %d" % i for i in range(250)])
    assert hub.pending_shipping() == 100
    assert hub.take_dropped() == 150
    clock.advance(0.5)
    hub._emit("w", 1, "out", [b"more %d" % i for i in range(250)])
    assert hub.pending_shipping() == 150
    assert hub.take_dropped() == 200
    shipped = [line.text for line in hub.take_shipping(1000)]
    assert shipped[:2] == ["line 0", "line 1"] and shipped[-1] == "more 49"
    hub.flush()
    assert len((tmp_path / "w.out.log").read_bytes().splitlines()) == 500
    hub.close()


def test_a_shipping_batch_stays_under_its_byte_budget(tmp_path: Path) -> None:
    hub = LogHub(tmp_path, ship_lines=1000, max_line=10_000)
    hub._emit("w", 1, "out", [b"x" * 1000] * 10)
    assert len(hub.take_shipping(500, max_bytes=3500)) == 3
    assert len(hub.take_shipping(500, max_bytes=10)) == 1, "always at least one line"
    assert len(hub.take_shipping(500)) == 6


def test_a_tail_reply_keeps_the_newest_lines_within_the_reply_budget(tmp_path: Path) -> None:
    hub = LogHub(tmp_path, ship_lines=10, max_line=64 * 1024)
    hub.configure("w", FILE, FILE)
    line = b"y" * (64 * 1024 - 1)
    count = MAX_REPLY_BYTES // len(line) + 20
    for index in range(count):
        hub._emit("w", 1, "out", [b"%06d" % index + line[6:]])
    tail = hub.tail("w", "out", 0)
    assert sum(len(entry.text) for entry in tail) <= MAX_REPLY_BYTES
    assert len(tail) >= MAX_REPLY_BYTES // len(line) - 1
    assert tail[-1].text.startswith(f"{count - 1:06d}")
    hub.close()


# -- uid and gid --------------------------------------------------------------------------


def _unused_id(exists: object) -> int:
    """A numeric id with no passwd (or group) entry on this host."""
    for candidate in range(54_321, 60_000):
        try:
            exists(candidate)  # type: ignore[operator]
        except KeyError:
            return candidate
    raise AssertionError("no free id")


@pytest.mark.parametrize(
    ("uid", "gid", "message"),
    [
        ("no-such-user-here", "", "spawn error: unknown user 'no-such-user-here'"),
        ("", "no-such-group-here", "spawn error: unknown group 'no-such-group-here'"),
        (str(_unused_id(pwd.getpwuid)), "", "spawn error: unknown user id {uid} (no passwd entry)"),
        ("", str(_unused_id(grp.getgrgid)), "spawn error: unknown group id {gid} (no group entry)"),
    ],
    ids=["user", "group", "numeric-uid", "numeric-gid"],
)
def test_a_user_or_group_that_does_not_exist_is_a_clear_spawn_error(
    uid: str, gid: str, message: str
) -> None:
    spec = WatcherSpec(name="w", cmd="true", uid=uid, gid=gid)
    with pytest.raises(SpawnError) as caught:
        worker_ids(spec)
    assert str(caught.value) == message.format(uid=uid, gid=gid)


def test_existing_ids_by_name_or_number_resolve_with_the_users_group() -> None:
    nobody = pwd.getpwnam("nobody")
    assert worker_ids(WatcherSpec(name="w", cmd="true", uid="nobody")) == (
        nobody.pw_uid,
        nobody.pw_gid,
    )
    assert worker_ids(WatcherSpec(name="w", cmd="true", uid=str(nobody.pw_uid), gid="0")) == (
        nobody.pw_uid,
        0,
    )


# -- an agent's Hello ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hello", "problem"),
    [
        (agent_pb2.Hello(host_id="web-1", labels={"zone": "a"}, address="web-1.lan"), ""),
        (agent_pb2.Hello(host_id="web 1"), f"host id 'web 1' {NAME_RULE}"),
        (agent_pb2.Hello(host_id="w", labels={"a=b": "c"}), f"label key 'a=b' {NAME_RULE}"),
        (agent_pb2.Hello(host_id="w", address="a" * 257), "address is longer than 256 characters"),
        (agent_pb2.Hello(host_id="w", version="1" * 300), "version is longer than 256 characters"),
        (
            agent_pb2.Hello(host_id="w", labels={"zone": "z" * 257}),
            "label zone is longer than 256 characters",
        ),
        (
            agent_pb2.Hello(host_id="w", labels={f"k{i}": "" for i in range(65)}),
            "at most 64 labels, got 65",
        ),
    ],
    ids=["fine", "host", "label-key", "address", "version", "label-value", "labels"],
)
def test_a_hello_with_bad_names_or_oversized_text_is_refused_with_why(
    hello: agent_pb2.Hello, problem: str
) -> None:
    assert hello_problem(hello_from_proto(hello)) == problem
