"""Leader election on real etcd: one winner, takeover with a higher token, own deadline."""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from stack.controller.election import Election, Leader
from stack.controller.store.base import StaleTerm, StoreError
from stack.controller.store.etcd import EtcdStore
from stack.controller.store.etcd_client import leader_key
from tests.support.etcd import EtcdCluster, etcd_cluster
from tests.support.etcd_term import TermTakingEtcdStore
from tests.support.processes import stack_env
from tests.support.wait import until, wait_for
from tests.support.workers import PROGRAMS

TTL = 1.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def member(etcd: EtcdCluster) -> Iterator[EtcdCluster]:
    """The shared member, resumed after a test that paused it."""
    yield etcd
    etcd.members[0].resume()
    etcd.wait_healthy()


@pytest.fixture
def prefix() -> str:
    return f"/e-{uuid.uuid4().hex[:8]}"


async def _first(*elections: Election) -> tuple[Election, int]:
    """Campaign with all; the first winner and its token (the others keep waiting)."""
    tasks = {asyncio.create_task(e.campaign()): e for e in elections}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(4 * elections[0].poll_interval)  # the losers had their chances
    for task in pending:
        task.cancel()
    assert len(done) == 1, "two elections won the same key"
    (task,) = done
    return tasks[task], task.result()


def run(coro: Coroutine[object, object, T]) -> T:
    return asyncio.run(coro)


def test_only_one_of_two_campaigns_wins_and_followers_see_it(
    member: EtcdCluster, prefix: str
) -> None:
    async def scenario() -> None:
        a = Election(member.endpoints, leader_key(prefix), "10.0.0.1:7000", TTL)
        b = Election(member.endpoints, leader_key(prefix), "10.0.0.2:7000", TTL)
        try:
            assert await a.leader() is None
            winner, token = await _first(a, b)
            assert winner.token == token
            assert await a.leader() == Leader(winner.advertise, token)
            assert await b.leader() == Leader(winner.advertise, token)
            health = await a.health()
            assert [(h.endpoint, h.healthy) for h in health] == [(member.endpoints[0], True)]
        finally:
            for election in (a, b):
                await election.resign()
                election.close()

    run(scenario())


def test_a_store_cannot_take_a_term_while_a_live_leader_holds_the_key(
    member: EtcdCluster, prefix: str
) -> None:
    async def scenario() -> None:
        leader = Election(member.endpoints, leader_key(prefix), "10.0.0.1:7000", TTL)
        store = TermTakingEtcdStore(member.endpoints, prefix, lease_ttl=TTL, timeout=0.5)
        try:
            token = await leader.campaign()
            async with asyncio.TaskGroup() as group:
                keeper = group.create_task(leader.keep_alive())
                with pytest.raises(StoreError) as error:
                    await asyncio.to_thread(store.acquire_term)
                keeper.cancel()
            assert str(error.value) == (
                f"etcd leader key {prefix}/leader is held by 10.0.0.1:7000 (token {token})"
            )
        finally:
            await leader.resign()
            leader.close()
            store.close()

    run(scenario())


def test_a_lease_shorter_than_etcd_allows_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lease TTL 0\.5s is too short"):
        Election(["127.0.0.1:2379"], "/stack/leader", "me:1", lease_ttl=0.5)


def test_after_a_resign_the_other_wins_at_once_with_a_higher_token(
    member: EtcdCluster, prefix: str
) -> None:
    async def scenario() -> None:
        a = Election(member.endpoints, leader_key(prefix), "10.0.0.1:7000", TTL)
        b = Election(member.endpoints, leader_key(prefix), "10.0.0.2:7000", TTL)
        try:
            first = await a.campaign()
            waiting = asyncio.create_task(b.campaign())
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await a.resign()
            assert a.lost.is_set()
            second = await asyncio.wait_for(waiting, timeout=1.0)
            assert second > first
            assert await a.leader() == Leader("10.0.0.2:7000", second)
        finally:
            for election in (a, b):
                await election.resign()
                election.close()

    run(scenario())


def test_when_keepalives_stop_the_other_wins_within_ttl_and_the_old_token_cannot_write(
    member: EtcdCluster, prefix: str
) -> None:
    store = EtcdStore(member.endpoints, prefix)

    async def scenario() -> None:
        a = Election(member.endpoints, leader_key(prefix), "10.0.0.1:7000", TTL)
        b = Election(member.endpoints, leader_key(prefix), "10.0.0.2:7000", TTL)
        try:
            old = await a.campaign()
            await asyncio.to_thread(store.commit, old, {"stack/x": b"old"}, [])
            stopped = time.monotonic()  # a never keeps its lease alive: a paused leader
            new = await asyncio.wait_for(b.campaign(), timeout=TTL + 2.0)
            assert time.monotonic() - stopped < TTL + 2.0
            assert new > old
            with pytest.raises(StaleTerm, match=f"fencing token {old} is stale"):
                await asyncio.to_thread(store.commit, old, {"stack/x": b"stale"}, [])
            await asyncio.to_thread(store.commit, new, {"stack/y": b"new"}, [])
            assert store.load("stack/") == {"stack/x": b"old", "stack/y": b"new"}
        finally:
            for election in (a, b):
                await election.resign()
                election.close()

    try:
        run(scenario())
    finally:
        store.close()


def test_a_leader_cut_off_from_etcd_steps_down_on_its_own_deadline(
    member: EtcdCluster, prefix: str
) -> None:
    async def scenario() -> None:
        a = Election(member.endpoints, leader_key(prefix), "10.0.0.1:7000", TTL)
        cancelled = asyncio.Event()

        async def work(token: int) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        try:
            leading = asyncio.create_task(a.lead(work))
            await until(lambda: a.token is not None, 30, "a to lead")
            await asyncio.sleep(2 * TTL)  # keepalives keep it leading past the TTL
            assert not a.lost.is_set()
            member.members[0].pause()  # etcd answers nothing from now on
            paused = time.monotonic()
            await asyncio.wait_for(a.lost.wait(), timeout=TTL + 1.0)
            assert time.monotonic() - paused <= TTL, "stepped down after the lease could expire"
            # Leader-only work is cancelled at once: within a few turns of the loop (counted,
            # not timed: a loaded machine may pause the whole process between two turns).
            for _ in range(10):
                if cancelled.is_set():
                    break
                await asyncio.sleep(0)
            assert cancelled.is_set(), "leader-only work still runs 10 loop turns later"
            member.members[0].resume()
            await asyncio.wait_for(leading, timeout=5.0)
        finally:
            member.members[0].resume()
            await a.resign()
            a.close()

    run(scenario())


class Leader_process:
    """The leader program as a subprocess, its lines gathered by a thread."""

    def __init__(self, endpoints: list[str], prefix: str, address: str, log: Path) -> None:
        env = stack_env()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(PROGRAMS / "election_leader.py"),
                ",".join(endpoints),
                prefix,
                address,
                str(TTL),
            ],
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def said(self, start: str) -> str | None:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return next((line for line in self.seen if line.startswith(start)), None)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)


def test_a_sigstopped_leader_is_fenced_out_and_steps_down_when_it_wakes(
    member: EtcdCluster, prefix: str, tmp_path: Path
) -> None:
    old = Leader_process(member.endpoints, prefix, "old", tmp_path / "old.log")
    store = EtcdStore(member.endpoints, prefix)
    try:
        line = wait_for(lambda: old.said("wrote"), what="the old leader to write")
        assert line
        old_token = int(wait_for(lambda: old.said("leading"), what="its token").split()[1])
        old.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()

        async def take_over() -> int:
            new = Election(member.endpoints, leader_key(prefix), "new", TTL)
            try:
                token = await asyncio.wait_for(new.campaign(), timeout=TTL + 2.0)
            finally:
                new.close()  # keeps the key until its lease runs out: long enough here
            return token

        new_token = run(take_over())
        assert new_token > old_token
        assert time.monotonic() - stopped < TTL + 2.0
        store.commit(new_token, {"stack/writer": b"new"}, [])
        old.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: old.said("lost"), timeout=TTL + 1.0, what="the old leader to step down")
        assert store.load("stack/") == {"stack/writer": b"new"}, "a fenced-out leader wrote"
    finally:
        old.close()
        store.close()
