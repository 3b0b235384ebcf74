"""The root agent's files in directories another user controls (issue 16, items 1 and 3).

Each test runs the real engine as root with a throwaway user as the workers' user. The
attacks are the ones that worked before: the worker's user swaps the log file for a
symlink (before the agent opens it, and racing a rotation), symlinks a parent
directory, or plants a symlinked backup for a `logs` tail to read. The root-only file
they aim at must never change or be read, the worker keeps running, an event says why
the file is not written, and the lines still ship to the controller.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.agent.engine import Engine
from stack.controller.store.sqlite import SqliteStore
from stack.spec.assignment import WatcherAssignment
from stack.spec.model import StreamSpec
from stack.spec.reports import Event
from stack.v1 import types_pb2
from tests.support.engine import assignment, run, settings, statuses, watcher
from tests.support.users import User, needs_root
from tests.support.wait import until

pytestmark = needs_root

SYSTEM_PYTHON = "/usr/bin/python3"
"""The worker's user cannot reach the test's virtualenv (under /root)."""
SECRET = b"2026-01-01T00:00:00.000Z [1] the root-only secret\n"
FAST_WRITER = "i=0; while :; do echo line $i; i=$((i+1)); done"


@pytest.fixture
def place(user: User) -> Iterator[Path]:
    """A directory the user can reach: `home/` is theirs, `root/` holds a root-only
    `secret` and is root's (0755, like /etc)."""
    base = Path(tempfile.mkdtemp(prefix="stack-files-"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        os.chown(home, user.uid, user.gid)
        system = base / "root"
        system.mkdir(mode=0o755)
        secret = system / "secret"
        secret.write_bytes(SECRET)
        secret.chmod(0o600)
        yield base
    finally:
        shutil.rmtree(base)


def _untouched(secret: Path) -> None:
    assert secret.read_bytes() == SECRET
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_uid == 0


def _writer(name: str, user: User, filename: Path, **stream: int) -> WatcherAssignment:
    return watcher(
        name, f"sh -c '{FAST_WRITER}'", [1], uid=user.name,
        stdout_stream=StreamSpec(filename=str(filename), **stream),
    )  # fmt: skip


def _events(engine: Engine, seen: list[Event], kind: str) -> list[Event]:
    seen.extend(engine.take_events(10_000))
    return [event for event in seen if event.kind == kind]


async def _lines_ship(engine: Engine, name: str, count: int) -> None:
    """At least `count` lines of `name` are shipped from now on."""
    got = 0

    def shipped() -> bool:
        nonlocal got
        got += sum(1 for line in engine.take_logs(10_000) if line.watcher == name)
        return got >= count

    await until(shipped, 15, f"{count} lines of {name} shipped")


def _running(engine: Engine, name: str) -> bool:
    status = statuses(engine.observed(), name).get(1)
    return status is not None and status.state == types_pb2.PROCESS_STATE_RUNNING


# -- item 1: log files ---------------------------------------------------------------


def test_a_log_file_the_user_replaced_with_a_symlink_is_not_followed(
    tmp_path: Path, user: User, place: Path
) -> None:
    secret, log_file = place / "root" / "secret", place / "home" / "app.log"
    log_file.symlink_to(secret)
    os.chown(log_file, user.uid, user.gid, follow_symlinks=False)

    async def scenario() -> None:
        seen: list[Event] = []
        async with Engine(settings(tmp_path, ship_rate=0)) as engine:
            engine.apply(assignment(_writer("app", user, log_file)))
            (event,) = await until(lambda: _events(engine, seen, "log_file_error"), 10, "event")
            assert event.watcher == "app" and event.severity == types_pb2.SEVERITY_ERROR
            assert event.message == (
                f"{log_file}: is a symlink; not followed; its output still ships"
            )
            await _lines_ship(engine, "app", 1000)
            assert _running(engine, "app")
            assert engine.tail("app", "out", 10) == []  # nothing read through the link

    run(scenario())
    _untouched(place / "root" / "secret")
    assert log_file.is_symlink()


def test_racing_a_rotation_with_symlinks_never_writes_through_one(
    tmp_path: Path, user: User, place: Path
) -> None:
    """The worker's user swaps app.log for a symlink to a root-only file as fast as it
    can while the agent rotates every few lines; before, the agent appended to the
    root file within a few thousand lines."""
    secret, home = place / "root" / "secret", place / "home"
    swapper = watcher(
        "swapper", SYSTEM_PYTHON, [1], uid=user.name,
        args=("-c", _SWAPPER, str(home), str(secret)),
    )  # fmt: skip
    writer = _writer("app", user, home / "app.log", max_bytes=300, backup_count=3)

    async def scenario() -> None:
        seen: list[Event] = []
        async with Engine(settings(tmp_path, ship_rate=0)) as engine:
            engine.apply(assignment(writer))
            await until(lambda: (home / "app.log.3").exists(), 10, "a few rotations")
            engine.apply(assignment(writer, swapper, generation=2))
            await until(lambda: (home / "swapping").exists(), 10, "the swapper to start")
            await _lines_ship(engine, "app", 20_000)
            _untouched(secret)
            (event,) = _events(engine, seen, "log_file_error")
            # Refused either way: the agent's open met the symlink, or it created the new
            # file just before the swapper replaced it (then unlinked: no link left).
            refusals = ("is a symlink; not followed", "has 0 hard links")
            assert event.message.endswith(tuple(f"{r}; its output still ships" for r in refusals))
            assert _running(engine, "app") and _running(engine, "swapper")

    run(scenario(), timeout=60)
    _untouched(secret)


_SWAPPER = """
import os, sys
home, target = sys.argv[1], sys.argv[2]
os.chdir(home)
open("swapping", "w").close()
while True:
    try:
        os.symlink(target, "link.tmp")
        os.replace("link.tmp", "app.log")
    except OSError:
        pass
"""


def test_a_symlinked_parent_directory_of_a_log_file_is_refused(
    tmp_path: Path, user: User, place: Path
) -> None:
    (place / "home" / "logs").symlink_to(place / "root")
    os.chown(place / "home" / "logs", user.uid, user.gid, follow_symlinks=False)
    log_file = place / "home" / "logs" / "app.log"

    async def scenario() -> None:
        seen: list[Event] = []
        async with Engine(settings(tmp_path, ship_rate=0)) as engine:
            engine.apply(assignment(_writer("app", user, log_file)))
            (event,) = await until(lambda: _events(engine, seen, "log_file_error"), 10, "event")
            assert event.message == (
                f"{place / 'home' / 'logs'}: is a symlink in a directory that other users can"
                " write; not followed; its output still ships"
            )
            await _lines_ship(engine, "app", 1000)
            assert _running(engine, "app")

    run(scenario())
    assert sorted(path.name for path in (place / "root").iterdir()) == ["secret"]
    _untouched(place / "root" / "secret")


def test_a_tail_reads_no_symlinked_or_hard_linked_backup(
    tmp_path: Path, user: User, place: Path
) -> None:
    secret, home = place / "root" / "secret", place / "home"
    (home / "app.log.1").symlink_to(secret)
    other = place / "root" / "other"
    other.write_bytes(SECRET.replace(b"secret", b"other secret"))
    other.chmod(0o600)
    os.link(other, home / "app.log.2")  # as if fs.protected_hardlinks were off
    cmd = "sh -c 'echo one; echo two; exec sleep 300'"
    spec = watcher(
        "app", cmd, [1], uid=user.name,
        stdout_stream=StreamSpec(filename=str(home / "app.log"), backup_count=3),
    )  # fmt: skip

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(spec))
            await until(lambda: len(engine.tail("app", "out", 10)) == 2, 10, "two lines")
            assert [line.text for line in engine.tail("app", "out", 100)] == ["one", "two"]

    run(scenario())
    _untouched(secret)


def test_an_existing_log_file_of_another_user_or_with_two_links_is_not_written(
    tmp_path: Path, user: User, place: Path
) -> None:
    home = place / "home"
    foreign = home / "foreign.log"
    foreign.write_bytes(b"")
    os.chown(foreign, 1, 1)  # daemon: neither the agent nor the worker's user
    os.link(place / "root" / "secret", home / "linked.log")
    own = home / "own.log"
    own.write_bytes(b"")
    os.chown(own, user.uid, user.gid)  # the worker's user's own file may be used

    async def scenario() -> None:
        seen: list[Event] = []
        async with Engine(settings(tmp_path, ship_rate=0)) as engine:
            engine.apply(
                assignment(
                    _writer("foreign", user, foreign),
                    _writer("linked", user, home / "linked.log"),
                    _writer("own", user, own),
                )
            )
            found = await until(
                lambda: len(_events(engine, seen, "log_file_error")) >= 2, 10, "two events"
            )
            assert found
            messages = {e.watcher: e.message for e in _events(engine, seen, "log_file_error")}
            assert messages == {
                "foreign": f"{foreign}: is owned by uid 1; its output still ships",
                "linked": f"{home / 'linked.log'}: has 2 hard links; its output still ships",
            }
            await until(lambda: own.stat().st_size > 0, 10, "the user's own file written")

    run(scenario())
    assert foreign.read_bytes() == b""
    _untouched(place / "root" / "secret")


# -- item 3: permissions -------------------------------------------------------------


def test_agent_files_are_private_and_looser_ones_are_tightened_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "agent"
    (data / "logs").mkdir(parents=True)
    data.chmod(0o755)
    (data / "logs").chmod(0o755)
    old_log = data / "logs" / "app.out.log"
    old_backup = data / "logs" / "app.out.log.1"
    old_state = [data / "assignment.pb", data / "agent-state.json"]
    for path in (old_log, old_backup, *old_state):
        path.write_bytes(b"")
        path.chmod(0o644)
    spec = watcher("app", "sh -c 'echo hello; exec sleep 300'", [1])

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            assert [stat.S_IMODE(path.stat().st_mode) for path in old_state] == [0o600] * 2
            engine.apply(assignment(spec))
            await until(lambda: engine.tail("app", "out", 10), 10, "a line")

    with caplog.at_level(logging.WARNING):
        run(scenario())
    modes = {
        path.relative_to(data).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [data, *data.rglob("*")]
    }
    assert modes == {
        ".": 0o700,
        "logs": 0o700,
        "assignment.pb": 0o600,
        "assignment.json": 0o600,
        "agent-state.json": 0o600,
        "output.intents": 0o600,
        "logs/app.out.log": 0o600,
        "logs/app.out.log.1": 0o600,
        "logs/app.err.log": 0o600,
    }
    tightened = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    assert tightened == [
        f"tightened the permissions of {data} from 0755 to 0700",
        f"tightened the permissions of {data / 'assignment.pb'} to 0600",
        f"tightened the permissions of {data / 'agent-state.json'} to 0600",
        f"tightened the permissions of {data / 'logs'} from 0755 to 0700",
    ]


def test_log_files_are_0640_with_the_group_the_operator_names(tmp_path: Path, user: User) -> None:
    spec = watcher("app", "sh -c 'echo hello; exec sleep 300'", [1])

    async def scenario() -> None:
        async with Engine(settings(tmp_path, log_group=user.gid)) as engine:
            engine.apply(assignment(spec))
            await until(lambda: engine.tail("app", "out", 10), 10, "a line")

    run(scenario())
    for stream in ("out", "err"):
        info = (tmp_path / "agent" / "logs" / f"app.{stream}.log").stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 0, user.gid)


def test_the_controller_database_and_its_wal_are_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = ["controller.db", "controller.db-wal", "controller.db-shm"]
    old = tmp_path / "old"
    old.mkdir()
    old.chmod(0o755)
    for name in names:
        (old / name).write_bytes(b"")
        (old / name).chmod(0o644)
    with caplog.at_level(logging.WARNING):
        stores = [SqliteStore(tmp_path / "fresh" / "controller.db"), SqliteStore(old / names[0])]
    try:
        for store in stores:
            store.commit(store.acquire_term(), {"k": b"v"}, [])
            folder = store.path.parent
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
            assert modes == dict.fromkeys(names, 0o600), folder
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        for store in stores:
            store.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"tightened the permissions of {old} from 0755 to 0700",
        *(f"tightened the permissions of {old / name} to 0600" for name in names),
    ]
