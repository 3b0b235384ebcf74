"""The store interface: a fenced key/value map with atomic multi-key commits, and events.

Kept small on purpose so that an etcd store can implement it too: a prefix read,
and one atomic commit of puts and deletes that a store refuses when it has seen a
newer term (the fencing token) than the writer's. How a writer gets its term is the
backend's: the SQLite store bumps one (SqliteStore.acquire_term), etcd's is the
leader key's create revision that the election wins (election.py).

The event history has a range of its own beside the desired state (a table in
SQLite, a key prefix in etcd): written often and in bulk by the leader's event
writer, never in the same transaction as an admin change, fenced the same way. Its
records and writes are the event history's own types (events.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from stack.controller.events import EventWrite, StoredEvents


class StoreError(Exception):
    """The store could not be opened, read or written."""


class StaleTerm(StoreError):
    """A commit carried a term lower than the store's: another controller took over."""

    def __init__(self, message: str, maybe_written: bool = False) -> None:
        super().__init__(message)
        self.maybe_written = maybe_written
        """An earlier attempt of the same commit got no answer: the store may have taken
        it before the term went stale (the refusal is of the retry only)."""


EVENT_WRITE_OPS = 100
"""Operations one EventWrite may carry: etcd caps a transaction (--max-txn-ops, 128 by
default), and a short SQLite transaction keeps admin writes waiting for at most that."""


class Store(Protocol):
    """Durable desired state. Every method blocks; call from a thread in async code."""

    def load(self, prefix: str) -> dict[str, bytes]:
        """Every key starting with `prefix`, with its value."""
        ...

    def commit(self, term: int, puts: Mapping[str, bytes], deletes: Collection[str]) -> None:
        """Write `puts` and remove `deletes` atomically and durably.

        Raises StaleTerm (and writes nothing) when `term` is lower than the
        store's current term.
        """
        ...

    def load_events(self) -> StoredEvents:
        """The stored event history."""
        ...

    def write_events(self, term: int, write: EventWrite) -> None:
        """Apply `write` to the event history atomically (durable soon, not necessarily
        at return: losing the last ones in a power cut is acceptable for events).

        Raises StaleTerm (and writes nothing) when `term` is lower than the store's.
        """
        ...

    def close(self) -> None:
        """Release the store."""
        ...
