"""The store interface: a fenced key/value map with atomic multi-key commits.

Kept small on purpose so that an etcd store can implement it too: a term
(the fencing token) acquired at start, a prefix read, and one atomic commit
of puts and deletes that a store refuses when a newer term exists.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol


class StoreError(Exception):
    """The store could not be opened, read or written."""


class StaleTerm(StoreError):
    """A commit carried a term lower than the store's: another controller took over."""


class Store(Protocol):
    """Durable desired state. Every method blocks; call from a thread in async code."""

    def acquire_term(self) -> int:
        """Bump the store's term and return it: the caller's fencing token from now on."""
        ...

    def load(self, prefix: str) -> dict[str, bytes]:
        """Every key starting with `prefix`, with its value."""
        ...

    def commit(self, term: int, puts: Mapping[str, bytes], deletes: Collection[str]) -> None:
        """Write `puts` and remove `deletes` atomically and durably.

        Raises StaleTerm (and writes nothing) when `term` is lower than the
        store's current term.
        """
        ...

    def close(self) -> None:
        """Release the store."""
        ...
