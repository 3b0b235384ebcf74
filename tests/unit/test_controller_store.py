"""The SQLite store: durable atomic commits, reopen, and term fencing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stack.controller.store.base import StaleTerm
from stack.controller.store.sqlite import SqliteStore


def test_committed_records_are_there_after_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    term = store.acquire_term()
    store.commit(term, {"stack/a": b"1", "stack/b": b"2", "other/c": b"3"}, [])
    store.commit(term, {"stack/a": b"10"}, ["stack/b"])
    store.close()
    reopened = SqliteStore(tmp_path / "c.db")
    assert reopened.load("stack/") == {"stack/a": b"10"}
    assert reopened.load("") == {"stack/a": b"10", "other/c": b"3"}
    reopened.close()


def test_each_start_gets_a_higher_term(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "c.db")
    assert first.acquire_term() == 1
    first.close()
    second = SqliteStore(tmp_path / "c.db")
    assert second.acquire_term() == 2
    assert second.term() == 2
    second.close()


def test_a_commit_from_a_lower_term_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    old = SqliteStore(tmp_path / "c.db")
    old_term = old.acquire_term()
    old.commit(old_term, {"stack/a": b"old"}, [])
    new = SqliteStore(tmp_path / "c.db")
    new_term = new.acquire_term()
    with pytest.raises(StaleTerm):
        old.commit(old_term, {"stack/a": b"stale", "stack/z": b"stale"}, [])
    assert new.load("stack/") == {"stack/a": b"old"}
    new.commit(new_term, {"stack/a": b"new"}, [])
    assert old.load("stack/") == {"stack/a": b"new"}
    old.close()
    new.close()


def test_a_commit_survives_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from stack.controller.store.sqlite import SqliteStore\n"
        "s = SqliteStore(Path(sys.argv[1]))\n"
        "s.commit(s.acquire_term(), {'stack/k': b'v'}, [])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert proc.returncode == -9
    store = SqliteStore(path)
    assert store.load("stack/") == {"stack/k": b"v"}
    assert store.acquire_term() == 2
    store.close()


def test_the_store_uses_wal_with_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
