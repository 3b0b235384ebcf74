"""High availability on etcd: follow, campaign, lead, step down, follow again.

Every controller runs the same loop. While another leads, it redirects agents and
stackctl to the leader, keeps its copy of the desired state current from an etcd
watch, and campaigns for the leader key. Once elected it leads with the key's
create revision as its fencing token; the leader-only work (agent liveness,
rollouts) runs in one task group that losing the key cancels.

A leader that crashes is noticed quickly: followers probe the leader's advertised
address, and when a leader they have reached before refuses connections twice in
a row (its process is gone, its host is up) they delete its key at once instead
of waiting out its lease. A leader that hangs or is cut off keeps its key until
its lease runs out; it has stepped down by then on its own deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import stack
from stack import aio
from stack.controller.cluster import ClusterView, ControllerInfo, StoreMember
from stack.controller.controller import Controller
from stack.controller.election import Election, Leader
from stack.controller.roster import Roster
from stack.controller.store import schema
from stack.controller.store.base import StoreError
from stack.controller.store.etcd import EtcdStore, WatchUpdate

log = logging.getLogger(__name__)

PROBE_INTERVAL = 0.25
"""Seconds between a follower's looks at the leader key and the leader's port."""
REFUSALS = 2
"""Refused connections in a row after which a leader reached before counts as dead."""


class HighAvailability:
    """One controller's part in an etcd-backed group of controllers."""

    def __init__(
        self, controller: Controller, store: EtcdStore, election: Election, roster: Roster
    ) -> None:
        self.controller = controller
        self.store = store
        self.election = election
        self.roster = roster
        self.advertise = election.advertise
        controller.leading = False
        controller.cluster = self

    async def run(self) -> None:
        """Take part until cancelled."""
        async with aio.TaskGroup() as tg:
            aio.start(tg, self.roster.run(), "roster", forever=True, logger=log)
            aio.start(tg, self._watch_leader(), "watch-leader", forever=True, logger=log)
            aio.start(tg, self._follow_store(), "follow-store", forever=True, logger=log)
            aio.start(tg, self._campaign(), "campaign", forever=True, logger=log)

    # ---- leading ----

    async def _campaign(self) -> None:
        while True:
            try:
                await self.election.lead(self._lead)
            except* StoreError as group:
                log.warning("leadership ended: %s", group.exceptions[0])
            self.controller.step_down()
            await asyncio.sleep(self.election.poll_interval)

    async def _lead(self, token: int) -> None:
        """Lead until fenced (or cancelled by the election when the key is lost)."""
        try:
            await self.controller.lead(token)
            first = await aio.race(
                watch_agents=self.controller.watch_agents(), fenced=self.controller.fenced.wait()
            )
            if first == "fenced":
                log.warning("a newer leader fenced this one out: stepping down")
        finally:
            self.controller.step_down()

    # ---- following ----

    async def _watch_leader(self) -> None:
        """Keep the leader's address for redirects; depose a leader whose process is gone."""
        reached: set[int] = set()
        refused = 0
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if self.controller.leading:
                refused = 0
                continue
            try:
                leader = await self.election.leader()
            except StoreError as exc:
                log.debug("cannot read the leader key: %s", exc)
                continue
            if not self.controller.leading:
                self.controller.leader_address = leader.address if leader is not None else ""
            if leader is None or leader.address == self.advertise:
                refused = 0  # nobody, or a previous life of ours: its lease runs out
                continue
            answer = await probe(leader.address)
            if answer == "ok":
                if leader.token not in reached:
                    log.info("following the leader at %s (token %d)", leader.address, leader.token)
                reached.add(leader.token)
                refused = 0
            elif answer == "refused" and leader.token in reached:
                refused += 1
                if refused >= REFUSALS:
                    refused = 0
                    await self._depose(leader)
            else:
                refused = 0

    async def _depose(self, leader: Leader) -> None:
        try:
            deposed = await self.election.depose(leader)
        except StoreError as exc:
            log.warning("cannot take the key of dead leader %s: %s", leader.address, exc)
            return
        if deposed:
            log.warning(
                "leader %s (token %d) refuses connections: its process is gone; "
                "its key is released for a new election",
                leader.address,
                leader.token,
            )

    async def _follow_store(self) -> None:
        """Keep the desired state current while following, from an etcd watch."""
        while True:
            try:
                snapshot = await asyncio.to_thread(self.store.snapshot, schema.PREFIX)
                break
            except StoreError as exc:
                log.warning("cannot read the desired state yet: %s", exc)
                await asyncio.sleep(1.0)
        records = dict(snapshot.records)
        self._adopt(records)
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[WatchUpdate] = asyncio.Queue()
        watch = self.store.watch(schema.PREFIX, snapshot.revision + 1)

        def pump() -> None:
            for update in watch:
                loop.call_soon_threadsafe(updates.put_nowait, update)

        async with aio.TaskGroup() as tg:
            pumping = aio.start(
                tg, asyncio.to_thread(pump), "store-watch", reraise=False, logger=log
            )
            try:
                while True:
                    update = await updates.get()
                    if update.reset:
                        records = {k: v for k, v in update.changes.items() if v is not None}
                    else:
                        for key, value in update.changes.items():
                            if value is None:
                                records.pop(key, None)
                            else:
                                records[key] = value
                    self._adopt(records)
            finally:
                watch.close()  # ends the pump's thread
                await aio.stop([pumping], title="following the store", logger=log)

    def _adopt(self, records: dict[str, bytes]) -> None:
        if self.controller.leading:
            return  # the leader's own copy is the truth; lead() read it afresh
        try:
            self.controller.state = schema.decode(records)
        except schema.SchemaError as exc:
            log.warning("cannot read the desired state from the store: %s", exc)

    # ---- `stackctl controllers` ----

    async def describe(self) -> ClusterView:
        """Every controller, the leader and its token, and each etcd member's health."""
        controller_id = self.controller.settings.controller_id
        leader: Leader | None = None
        with contextlib.suppress(StoreError):
            leader = await self.election.leader()
        try:
            members = await self.roster.members()
        except StoreError:
            members = []
        controllers = tuple(
            ControllerInfo(
                controller_id=member.controller_id,
                address=member.address,
                leader=leader is not None and member.address == leader.address,
                version=member.version,
            )
            for member in members
        )
        if not controllers:  # etcd unreadable: at least say who answered
            me = ControllerInfo(
                controller_id, self.advertise, self.controller.leading, stack.__version__
            )
            controllers = (me,)
        health = await self.election.health()
        return ClusterView(
            leader_address=leader.address if leader is not None else "",
            fencing_token=leader.token if leader is not None else 0,
            store="etcd",
            answered_by=controller_id,
            controllers=controllers,
            members=tuple(StoreMember(h.endpoint, h.healthy, h.error) for h in health),
        )


async def probe(address: str, timeout: float = 0.5) -> str:
    """ "ok" if `address` accepts a TCP connection, "refused" if it actively refuses, else
    "unknown" (a timeout or an unreachable network says nothing about the process)."""
    host, _, port = address.rpartition(":")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except ConnectionRefusedError:
        return "refused"
    except (OSError, TimeoutError, ValueError):
        return "unknown"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "ok"
