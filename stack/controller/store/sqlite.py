"""The embedded store: SQLite in the controller's data dir.

WAL with synchronous=FULL, so a commit is on disk when `commit` returns and an
acknowledged change survives kill -9. The term lives in the same database and
is checked inside the write transaction, so a stale controller cannot write.

The database holds every watcher's environment, secrets included: its directory is
0700 and the file 0600 before SQLite first opens it (SQLite gives its -wal and -shm
files the database's mode); looser files left by an older version are tightened.

The event history has its own tables, written through a second connection with
synchronous=NORMAL (no fsync per batch: events are never acknowledged to anyone)
in short transactions that take the same lock as admin commits, so an admin
commit waits for at most one small event batch, never for SQLite's busy retries.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Collection, Mapping
from pathlib import Path

from stack.controller.events import EventWrite, StoredEvents
from stack.controller.store.base import StaleTerm, StoreError
from stack.security.safe_files import opened_dir, private_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER NOT NULL);
INSERT OR IGNORE INTO fence (id, term) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS event_seq (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL);
INSERT OR IGNORE INTO event_seq (id, next) VALUES (1, 0);
"""


def _private_database(path: Path) -> None:
    """Create `path` 0600 in a 0700 directory, and tighten what is there already."""
    names = [path.name, f"{path.name}-wal", f"{path.name}-shm"]
    private_dir(path.parent, names)
    with opened_dir(path.parent) as dir_fd:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(path.name, flags, 0o600, dir_fd=dir_fd))


class SqliteStore:
    """A `Store` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            _private_database(path)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._events_db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._events_db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc

    def acquire_term(self) -> int:
        with self._lock, self._write():
            (term,) = self._db.execute("SELECT term FROM fence WHERE id = 1").fetchone()
            self._db.execute("UPDATE fence SET term = ? WHERE id = 1", (term + 1,))
            return int(term) + 1

    def term(self) -> int:
        """The store's current term."""
        with self._lock:
            (term,) = self._db.execute("SELECT term FROM fence WHERE id = 1").fetchone()
            return int(term)

    def load(self, prefix: str) -> dict[str, bytes]:
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.path}: {exc}") from exc
        return {str(key): bytes(value) for key, value in rows}

    def commit(self, term: int, puts: Mapping[str, bytes], deletes: Collection[str]) -> None:
        with self._lock, self._write():
            (current,) = self._db.execute("SELECT term FROM fence WHERE id = 1").fetchone()
            if term < current:
                raise StaleTerm(f"term {term} is stale: the store is at term {current}")
            self._db.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in deletes])
            self._db.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(puts.items()),
            )

    def load_events(self) -> StoredEvents:
        with self._lock:
            try:
                rows = self._events_db.execute("SELECT seq, record FROM events").fetchall()
                (next_seq,) = self._events_db.execute(
                    "SELECT next FROM event_seq WHERE id = 1"
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read events from {self.path}: {exc}") from exc
        return StoredEvents({int(seq): bytes(record) for seq, record in rows}, int(next_seq))

    def write_events(self, term: int, write: EventWrite) -> None:
        with self._lock, _Transaction(self._events_db, self.path):
            (current,) = self._events_db.execute("SELECT term FROM fence WHERE id = 1").fetchone()
            if term < current:
                raise StaleTerm(f"term {term} is stale: the store is at term {current}")
            self._events_db.executemany(
                "DELETE FROM events WHERE seq = ?", [(seq,) for seq in write.deletes]
            )
            self._events_db.executemany(
                "INSERT OR REPLACE INTO events (seq, record) VALUES (?, ?)",
                list(write.puts.items()),
            )
            self._events_db.execute(
                "UPDATE event_seq SET next = max(next, ?) WHERE id = 1", (write.next_seq,)
            )

    def close(self) -> None:
        with self._lock:
            self._events_db.close()
            self._db.close()

    def _write(self) -> _Transaction:
        return _Transaction(self._db, self.path)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store {self._path}: {exc}") from exc

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot write store {self._path}: {exc}") from exc
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StoreError(f"cannot write store {self._path}: {exc}") from exc
