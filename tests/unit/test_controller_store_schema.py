"""The store's own schema: what it writes, that it reads back the same state, that it
reads what controllers wrote before it (schema 0, protobuf JSON), and that a
controller opening such a store sees the same state and rewrites it in schema 1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.controller import desired as d
from stack.controller.controller import Controller
from stack.controller.rollout import advance
from stack.controller.settings import ControllerSettings
from stack.controller.store import schema
from stack.controller.store.sqlite import SqliteStore
from stack.spec.load import load_stack
from stack.spec.model import StackSpec
from tests.support.clock import FakeClock
from tests.unit import store_schema0
from tests.unit.test_spec_dump import stacks

WEB = """
[sockets.web]
port = 8080
[watchers.web]
cmd = "serve"
numprocesses = 3
sockets = ["web"]
[watchers.web.env]
GREETING = "hi"
"""


def applied(text: str = WEB, before: d.DesiredState | None = None) -> d.DesiredState:
    new, _ = d.apply_stack(
        before or d.DesiredState(), load_stack(text, "t.toml"), {"web": {1, 2, 3}}
    )
    return new


@st.composite
def states(draw: st.DrawFn) -> d.DesiredState:
    """A state as operators make them: a stack applied, then another (a rollout where
    processes must change), some stopped, restarted, drained, a rollout step taken."""
    first: StackSpec = draw(stacks())
    state, _ = d.apply_stack(d.DesiredState(), first)
    placed = {name: set(range(1, spec.numprocesses + 1)) for name, spec in first.watchers.items()}
    state, _ = d.apply_stack(state, draw(stacks()), placed)
    names = tuple(sorted(state.watchers))
    if names and draw(st.booleans()):
        state = d.stop(state, names[:1])
    if names and draw(st.booleans()):
        state = d.restart(state, names[-1:], rolling=draw(st.booleans()), placed=placed)
    for name in names:
        rollout = state.watchers[name].rollout
        if rollout is not None and draw(st.booleans()):
            step, _ = advance(rollout, state.version(name), {}, placed.get(name, set()))
            state = d.set_rollout(state, name, step)
    for host in draw(st.lists(st.sampled_from(["h1", "h2"]), unique=True)):
        state = d.drain(state, host)
    return state


@settings(max_examples=40)
@given(states())
def test_every_state_reads_back_the_same(state: d.DesiredState) -> None:
    records = schema.encode(state)
    assert schema.decode(records) == state
    assert schema.outdated(records) == []


@settings(max_examples=40)
@given(states())
def test_a_store_written_by_the_controllers_before_the_schema_reads_the_same(
    state: d.DesiredState,
) -> None:
    old = store_schema0.encode(state)
    assert schema.decode(old) == state
    assert schema.outdated(old) == sorted(
        key for key in old if key.startswith((schema.WATCHER_PREFIX, schema.SOCKET_PREFIX))
    )


def test_the_records_are_plain_json_of_the_domain_model_with_their_schema() -> None:
    records = schema.encode(applied())
    sock = json.loads(records["stack/sockets/web"])
    assert sock["schema"] == 1
    assert sock["spec"] == {
        "name": "web", "host": "127.0.0.1", "port": 8080, "path": "", "family": "AF_INET",
        "type": "SOCK_STREAM", "backlog": 2048, "umask": -1, "replace": False,
        "so_reuseport": False, "blocking": False,
    }  # fmt: skip
    watcher = json.loads(records["stack/watchers/web"])
    assert (watcher["schema"], watcher["active"], watcher["restart_token"]) == (1, True, 0)
    spec = watcher["spec"]
    assert (spec["cmd"], spec["numprocesses"], spec["env"], spec["sockets"]) == (
        "serve", 3, {"GREETING": "hi"}, ["web"],
    )  # fmt: skip
    assert spec["stdout_stream"]["class_"] == "FileStream", "the model's names, not the wire's"
    assert records["stack/generation"] == b"1"


def test_a_record_of_a_newer_schema_is_refused_by_name() -> None:
    records = schema.encode(applied())
    doc = json.loads(records["stack/watchers/web"])
    doc["schema"] = 2
    newer = {**records, "stack/watchers/web": json.dumps(doc).encode()}
    with pytest.raises(schema.SchemaError, match=r"stack/watchers/web was written by a newer "
                       r"controller \(schema 2\); this one reads schema 1 at most"):  # fmt: skip
        schema.decode(newer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda doc: doc["spec"].update(numprocesses="3"),
            "spec.numprocesses: expected int, got '3'",
        ),
        (lambda doc: doc["spec"].update(colour="red"), "spec: unknown field 'colour'"),
        (lambda doc: doc["spec"].pop("cmd"), "spec: missing field 'cmd'"),
        (lambda doc: doc["spec"]["env"].update(N=1), "spec.env.N: expected str, got 1"),
        (lambda doc: doc.update(active=1), "active: expected bool, got 1"),
    ],
)
def test_a_record_that_does_not_fit_is_refused_naming_the_field(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    records = schema.encode(applied())
    doc = json.loads(records["stack/watchers/web"])
    change(doc)
    with pytest.raises(schema.SchemaError, match=f"store record stack/watchers/web: {message}"):
        schema.decode({**records, "stack/watchers/web": json.dumps(doc).encode()})


def test_a_field_added_to_the_model_later_reads_as_its_default() -> None:
    records = schema.encode(applied())
    doc = json.loads(records["stack/watchers/web"])
    del doc["spec"]["startsecs"], doc["spec"]["stdout_stream"]["color"]
    state = schema.decode({**records, "stack/watchers/web": json.dumps(doc).encode()})
    assert state == applied()


def test_a_controller_opening_an_old_store_sees_the_same_state_and_rewrites_it(
    tmp_path: Path,
) -> None:
    v1 = applied()
    state = applied(WEB.replace('"serve"', '"serve --v2"'), v1)  # a rollout in progress
    assert state.watchers["web"].rollout is not None
    store = SqliteStore(tmp_path / "controller.db")
    store.commit(store.acquire_term(), store_schema0.encode(state), [])
    store.close()

    async def open_controller() -> Controller:
        store = SqliteStore(tmp_path / "controller.db")
        clock = FakeClock()
        controller = Controller(
            ControllerSettings(data_dir=tmp_path), store, store.acquire_term(),
            clock=clock.now, wall=clock.now,
        )  # fmt: skip
        await controller.load()
        return controller

    first = asyncio.run(open_controller())
    assert first.state == state
    stored = first.store.load(schema.PREFIX)
    assert schema.outdated(stored) == [] and stored == schema.encode(state)
    first.store.close()
    again = asyncio.run(open_controller())
    assert again.state == state
    again.store.close()
