"""One contract for every store backend: the same tests run on SQLite and on a real etcd.

The controller only knows the `Store` protocol, so both backends must agree on
what it promises: prefix reads, atomic commits of puts and deletes, durability
across a reopen, and refusal (writing nothing) of a commit with a stale term; the
same for the event history, which lives apart from the desired state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from stack.controller import desired as d
from stack.controller.controller import Controller
from stack.controller.events import EventWrite, StoredEvents
from stack.controller.settings import ControllerSettings
from stack.controller.store import schema
from stack.controller.store.base import StaleTerm, Store
from stack.controller.store.sqlite import SqliteStore
from stack.spec.load import load_stack
from tests.support.clock import FakeClock
from tests.support.etcd import EtcdCluster, etcd_cluster
from tests.support.etcd_term import TermTakingEtcdStore
from tests.unit import store_schema0


class TermStore(Store, Protocol):
    """A store that gives its own terms (SQLite's way; etcd's through the test's holder)."""

    def acquire_term(self) -> int: ...


Opener = Callable[[], TermStore]


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "etcd"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same store (same file, or same etcd prefix) each time it is called."""
    opened: list[TermStore] = []
    if request.param == "sqlite":

        def opener() -> TermStore:
            opened.append(SqliteStore(tmp_path / "controller.db"))
            return opened[-1]

    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd")
        prefix = f"/test-{uuid.uuid4().hex[:8]}"

        def opener() -> TermStore:
            opened.append(TermTakingEtcdStore(cluster.endpoints, prefix, lease_ttl=1.0))
            return opened[-1]

    yield opener
    for store in opened:
        store.close()


def test_load_returns_exactly_the_keys_under_the_prefix(open_store: Opener) -> None:
    store = open_store()
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"1", "stack/b/c": b"2", "stackx": b"3", "other/d": b"4"}, [])
    assert store.load("stack/") == {"stack/a": b"1", "stack/b/c": b"2"}
    assert store.load("stack/b/") == {"stack/b/c": b"2"}
    assert store.load("nothing/") == {}
    assert store.load("") == {"stack/a": b"1", "stack/b/c": b"2", "stackx": b"3", "other/d": b"4"}


def test_a_commit_applies_its_puts_and_deletes_together(open_store: Opener) -> None:
    store = open_store()
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"1", "stack/b": b"2", "stack/c": b"3"}, [])
    store.commit(term, {"stack/a": b"10", "stack/d": b"4"}, ["stack/b", "stack/c", "stack/absent"])
    assert store.load("stack/") == {"stack/a": b"10", "stack/d": b"4"}


def test_a_key_both_put_and_deleted_in_one_commit_ends_up_put(open_store: Opener) -> None:
    store = open_store()
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"1"}, [])
    store.commit(term, {"stack/a": b"2"}, ["stack/a"])
    assert store.load("stack/") == {"stack/a": b"2"}


def test_committed_records_survive_closing_and_reopening(open_store: Opener) -> None:
    store = open_store()
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"\x00binary\xff", "stack/b": b""}, [])
    store.close()
    reopened = open_store()
    assert reopened.load("stack/") == {"stack/a": b"\x00binary\xff", "stack/b": b""}


def test_each_acquire_gives_a_higher_term(open_store: Opener) -> None:
    store = open_store()
    first = store.acquire_term()
    second = store.acquire_term()
    assert second > first
    store.close()
    assert open_store().acquire_term() > second


def test_a_commit_with_a_stale_term_is_refused_and_writes_nothing(open_store: Opener) -> None:
    old = open_store()
    old_term = old.acquire_term()
    old.commit(old_term, {"stack/a": b"old"}, [])
    old.close()
    new = open_store()
    new_term = new.acquire_term()
    assert new_term > old_term
    with pytest.raises(StaleTerm, match=str(old_term)):
        new.commit(old_term, {"stack/a": b"stale", "stack/b": b"stale"}, ["stack/a"])
    assert new.load("stack/") == {"stack/a": b"old"}
    new.commit(new_term, {"stack/b": b"new"}, [])
    assert new.load("stack/") == {"stack/a": b"old", "stack/b": b"new"}


def test_event_writes_are_loaded_back_after_a_reopen_apart_from_the_desired_state(
    open_store: Opener,
) -> None:
    store = open_store()
    term = store.acquire_term()
    assert store.load_events() == StoredEvents({}, 0)
    store.commit(term, {"stack/a": b"1"}, [])
    store.write_events(term, EventWrite({1: b"one", 2: b"two", 3: b"three"}, [], next_seq=103))
    store.write_events(term, EventWrite({4: b"four"}, [1, 3, 99], next_seq=104))
    store.close()
    reopened = open_store()
    assert reopened.load_events() == StoredEvents({2: b"two", 4: b"four"}, 104)
    assert reopened.load("") == {"stack/a": b"1"}


def test_an_event_write_with_a_stale_term_is_refused_and_writes_nothing(
    open_store: Opener,
) -> None:
    old = open_store()
    old_term = old.acquire_term()
    old.write_events(old_term, EventWrite({1: b"one"}, [], next_seq=10))
    old.close()
    new = open_store()
    new.acquire_term()
    with pytest.raises(StaleTerm, match=str(old_term)):
        new.write_events(old_term, EventWrite({2: b"stale"}, [1], next_seq=20))
    assert new.load_events() == StoredEvents({1: b"one"}, 10)


STACK = """
[sockets.web]
port = 8080
[watchers.web]
cmd = "serve"
numprocesses = 2
sockets = ["web"]
"""


def test_a_store_written_before_the_schema_opens_with_the_same_state_and_is_rewritten(
    open_store: Opener, tmp_path: Path
) -> None:
    v1, _ = d.apply_stack(d.DesiredState(), load_stack(STACK, "t.toml"))
    state, _ = d.apply_stack(
        v1, load_stack(STACK.replace("8080", "8081"), "t.toml"), {"web": {1, 2}}
    )
    state = d.drain(state, "h2")
    assert state.watchers["web"].rollout is not None
    old = open_store()
    old.commit(old.acquire_term(), store_schema0.encode(state), [])
    old.close()
    store = open_store()
    clock = FakeClock()
    controller = Controller(
        ControllerSettings(data_dir=tmp_path), store, store.acquire_term(),
        clock=clock.now, wall=clock.now,
    )  # fmt: skip
    asyncio.run(controller.load())
    assert controller.state == state
    stored = store.load(schema.PREFIX)
    assert stored == schema.encode(state) and schema.outdated(stored) == []
