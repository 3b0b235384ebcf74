"""The store a controller runs on, and how it comes to lead: alone, or elected on etcd.

With the embedded SQLite store the controller leads from the start, with the
store's next term as its fencing token. With `--store etcd://...` it joins the
group of controllers on that etcd prefix (see ha.py): it follows until elected.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stack.controller.controller import Controller
from stack.controller.settings import ControllerSettings
from stack.controller.store import BadStoreUrl, EtcdLocation, parse_store_url
from stack.controller.store.base import Store, StoreError

if TYPE_CHECKING:  # etcd's client is imported only by controllers that use etcd
    from stack.controller.ha import HighAvailability

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


@dataclass
class ControlPlane:
    """A controller with its store, and its place in a group of controllers (if any)."""

    controller: Controller
    store: Store
    ha: HighAvailability | None = None

    @classmethod
    async def open(cls, settings: ControllerSettings) -> ControlPlane:
        """Open the store `settings.store` names; StoreError (one line) if it cannot be."""
        try:
            location = parse_store_url(settings.store)
        except BadStoreUrl as exc:
            raise StoreError(str(exc)) from None
        if isinstance(location, EtcdLocation):
            return cls._on_etcd(settings, location)
        from stack.controller.store.sqlite import SqliteStore

        store = SqliteStore(settings.store_path)
        try:
            term = await asyncio.to_thread(store.acquire_term)
            controller = Controller(settings, store, term)
            await controller.load()
        except BaseException:
            store.close()
            raise
        return cls(controller, store)

    @classmethod
    def _on_etcd(cls, settings: ControllerSettings, location: EtcdLocation) -> ControlPlane:
        from stack.controller.election import Election
        from stack.controller.ha import HighAvailability
        from stack.controller.roster import Roster
        from stack.controller.store.etcd import EtcdStore
        from stack.controller.store.etcd_client import EtcdTls, leader_key

        advertise = settings.advertise or settings.listen
        host, _, port = advertise.rpartition(":")
        if host in _WILDCARDS or port in ("", "0"):
            raise StoreError(
                f"with an etcd store, give --advertise HOST:PORT: the address agents and "
                f"stackctl reach this controller at ({advertise!r} is not one)"
            )
        endpoints = list(location.endpoints)
        tls = None
        if settings.etcd_ca is not None:
            tls = EtcdTls(settings.etcd_ca, settings.etcd_cert, settings.etcd_key)
        store = EtcdStore(endpoints, location.prefix, tls=tls)
        try:
            election = Election(
                endpoints, leader_key(location.prefix), advertise, settings.lease_ttl, tls=tls
            )
            roster = Roster(
                endpoints,
                location.prefix,
                settings.controller_id,
                advertise,
                settings.lease_ttl,
                tls=tls,
            )
        except (StoreError, ValueError) as exc:
            store.close()
            raise StoreError(str(exc)) from None
        controller = Controller(settings, store, 0)
        return cls(controller, store, HighAvailability(controller, store, election, roster))

    async def run(self) -> None:
        """The controller's background work until cancelled: lead alone, or take part."""
        if self.ha is None:
            await self.controller.watch_agents()
        else:
            await self.ha.run()

    def close(self) -> None:
        """Release the store and the election's clients (after `run` was cancelled)."""
        if self.ha is not None:
            with contextlib.suppress(Exception):
                self.ha.election.close()
            with contextlib.suppress(Exception):
                self.ha.roster.close()
        self.store.close()
