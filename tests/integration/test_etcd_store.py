"""The etcd store against real etcd members: failover, quorum loss, durability, watches, health."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from stack.controller.store.base import StoreError
from stack.controller.store.etcd import EtcdStore, StoreWatch, WatchUpdate
from tests.support.etcd import EtcdCluster, etcd_cluster
from tests.support.etcd_term import TermTakingEtcdStore
from tests.support.ports import reserve_port
from tests.support.wait import wait_for


@pytest.fixture(scope="module")
def trio() -> Iterator[EtcdCluster]:
    """Three members, shared by the module; each test gets them all back healthy."""
    with etcd_cluster(3) as cluster:
        yield cluster


@pytest.fixture
def three(trio: EtcdCluster) -> Iterator[EtcdCluster]:
    yield trio
    for index, member in enumerate(trio.members):
        member.resume()
        if not member.alive():
            trio.restart(index)
    trio.wait_healthy()


@pytest.fixture
def store(three: EtcdCluster) -> Iterator[TermTakingEtcdStore]:
    # Killing etcd's raft leader stalls writes for about a second: a 3 s lease rides it out.
    opened = TermTakingEtcdStore(three.endpoints, f"/t-{uuid.uuid4().hex[:8]}", lease_ttl=3.0)
    yield opened
    opened.close()


class Collector:
    """Runs a StoreWatch on a thread and keeps what it yields, for polling by the test."""

    def __init__(self, watch: StoreWatch) -> None:
        self.watch = watch
        self.updates: queue.Queue[WatchUpdate] = queue.Queue()
        self.state: dict[str, bytes] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for update in self.watch:
            self.updates.put(update)

    def drain(self) -> list[WatchUpdate]:
        """Everything received so far, applied to `state` the way a follower would."""
        got = []
        while not self.updates.empty():
            update = self.updates.get()
            if update.reset:
                self.state = {}
            for key, value in update.changes.items():
                if value is None:
                    self.state.pop(key, None)
                else:
                    self.state[key] = value
            got.append(update)
        return got

    def reaches(self, expected: dict[str, bytes], what: str, timeout: float = 10.0) -> None:
        """Wait until the applied updates make `state` equal `expected`."""

        def there() -> bool:
            self.drain()
            return self.state == expected

        wait_for(there, timeout=timeout, what=what)

    def close(self) -> None:
        self.watch.close()
        self.thread.join(5)
        assert not self.thread.is_alive(), "watch thread did not end after close()"


def test_commits_and_loads_go_on_when_the_member_in_use_is_killed(
    three: EtcdCluster, store: TermTakingEtcdStore
) -> None:
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"1"}, [])
    three.members[0].kill9()  # the store prefers the first endpoint
    store.commit(term, {"stack/b": b"2"}, [])
    assert store.load("stack/") == {"stack/a": b"1", "stack/b": b"2"}
    three.members[1].resume()


def test_quorum_lost_fails_promptly_with_the_endpoints_and_recovers(three: EtcdCluster) -> None:
    store = TermTakingEtcdStore(
        three.endpoints, f"/q-{uuid.uuid4().hex[:8]}", lease_ttl=1.0, timeout=1.5
    )
    try:
        _lose_and_regain_quorum(three, store)
    finally:
        store.close()


def _lose_and_regain_quorum(three: EtcdCluster, store: TermTakingEtcdStore) -> None:
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"1"}, [])
    three.members[1].kill9()
    three.members[2].kill9()
    for attempt in (
        lambda: store.commit(term, {"stack/a": b"lost"}, []),
        lambda: store.load("stack/"),
    ):
        started = time.monotonic()
        with pytest.raises(StoreError) as error:
            attempt()
        assert time.monotonic() - started < 2.5, "a request without quorum must fail promptly"
        assert str(error.value).startswith(f"etcd unreachable at {','.join(three.endpoints)}: ")
    assert "\n" not in str(error.value)
    three.restart(1)
    three.restart(2)
    three.wait_healthy()
    # The election behind `term` may have lapsed meanwhile; a new one writes.
    wait_for(lambda: _commits(store), timeout=20.0, what="a commit after quorum returned")
    assert store.load("stack/")["stack/a"] == b"again"


def _commits(store: TermTakingEtcdStore) -> bool:
    try:
        store.commit(store.acquire_term(), {"stack/a": b"again"}, [])
    except StoreError:
        return False
    return True


def test_an_acknowledged_commit_survives_kill_9_of_every_member(
    three: EtcdCluster, store: TermTakingEtcdStore
) -> None:
    term = store.acquire_term()
    store.commit(term, {"stack/kept": b"yes"}, [])
    for member in three.members:
        member.kill9()
    for index in range(3):
        three.restart(index)
    three.wait_healthy()
    reopened = EtcdStore(three.endpoints, store.prefix)
    try:
        assert wait_for(lambda: _load_or_none(reopened), what="a load after restart") == {
            "stack/kept": b"yes"
        }
    finally:
        reopened.close()


def _load_or_none(store: TermTakingEtcdStore) -> dict[str, bytes] | None:
    try:
        return store.load("stack/")
    except StoreError:
        return None


def test_an_unreachable_cluster_is_a_one_line_error_naming_it() -> None:
    with reserve_port() as first, reserve_port() as second:  # nothing listens on either
        endpoints = [f"127.0.0.1:{first}", f"127.0.0.1:{second}"]
        store = EtcdStore(endpoints, "/nowhere", timeout=0.5)
        try:
            with pytest.raises(StoreError) as error:
                store.load("stack/")
        finally:
            store.close()
    message = str(error.value)
    assert message.startswith(f"etcd unreachable at {','.join(endpoints)}: read: ")
    assert "\n" not in message


def test_health_names_the_dead_member(three: EtcdCluster, store: TermTakingEtcdStore) -> None:
    assert [h.healthy for h in store.health()] == [True, True, True]
    three.members[2].kill9()
    expected = [
        (three.endpoints[0], True),
        (three.endpoints[1], True),
        (three.endpoints[2], False),
    ]
    # If the killed member led raft, the others need a moment to elect a new leader.
    health = wait_for(
        lambda: (h := store.health()) and [(e.endpoint, e.healthy) for e in h] == expected and h,
        what="health to show exactly the killed member down",
    )
    assert health[2].error


def test_a_watch_delivers_puts_and_deletes_from_its_start_revision(
    store: TermTakingEtcdStore,
) -> None:
    term = store.acquire_term()
    store.commit(term, {"stack/before": b"0"}, [])
    start = store.snapshot("stack/")
    store.commit(term, {"stack/a": b"1", "other/x": b"ignored"}, [])
    collector = Collector(store.watch("stack/", start.revision + 1))
    collector.state = dict(start.records)
    try:
        store.commit(term, {"stack/b": b"2"}, ["stack/before"])
        collector.reaches({"stack/a": b"1", "stack/b": b"2"}, "the watch to catch up")
    finally:
        collector.close()


def test_a_watch_resumes_after_its_member_is_killed(
    three: EtcdCluster, store: TermTakingEtcdStore
) -> None:
    term = store.acquire_term()
    start = store.snapshot("stack/")
    collector = Collector(store.watch("stack/", start.revision + 1))
    try:
        store.commit(term, {"stack/n": b"0"}, [])
        collector.reaches({"stack/n": b"0"}, "the first event")
        three.members[0].kill9()  # the watch's member: it prefers the first endpoint too
        for n in range(1, 6):
            store.commit(term, {"stack/n": str(n).encode(), f"stack/k{n}": b"x"}, [])
        expected = {"stack/n": b"5", **{f"stack/k{n}": b"x" for n in range(1, 6)}}
        seen: list[WatchUpdate] = []

        def caught_up() -> bool:
            seen.extend(collector.drain())
            return collector.state == expected

        wait_for(caught_up, timeout=10.0, what="the watch to resume on another member")
        revisions = [update.revision for update in seen]
        assert revisions == sorted(set(revisions)), "an update was delivered twice or out of order"
        assert not any(update.reset for update in seen)
    finally:
        collector.close()


def test_a_watch_behind_a_compaction_reloads_the_prefix(store: TermTakingEtcdStore) -> None:
    term = store.acquire_term()
    start = store.snapshot("stack/")
    store.commit(term, {"stack/a": b"1", "stack/gone": b"x"}, [])
    store.commit(term, {"stack/a": b"2"}, ["stack/gone"])
    now = store.snapshot("stack/")
    store.compact(now.revision)
    collector = Collector(store.watch("stack/", start.revision + 1))
    try:
        first = wait_for(lambda: collector.updates.get(timeout=5.0), what="a reset")
        assert first.reset
        assert first.changes == {"stack/a": b"2"}
        assert first.revision >= now.revision
        collector.state = dict(first.changes)
        store.commit(term, {"stack/b": b"3"}, [])
        collector.reaches({"stack/a": b"2", "stack/b": b"3"}, "events after the reset")
    finally:
        collector.close()
