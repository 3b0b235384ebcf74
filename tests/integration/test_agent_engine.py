"""The agent engine with real processes: scaling, respawn, flapping, stopping, spawn errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from stack.agent import persist
from stack.agent.engine import Engine
from stack.agent.handover import Handover, from_bytes, to_bytes
from stack.spec.model import FlappingSpec
from stack.v1 import types_pb2
from tests.support.engine import (
    assignment,
    python_cmd,
    run,
    running_pids,
    settings,
    statuses,
    watcher,
)
from tests.support.wait import until

SLEEP = "sleep 300"


def test_scale_up_and_down_follows_the_wid_list(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1, 2]), generation=1))
            first = await until(
                lambda: (
                    len(running_pids(engine.observed(), "w")) == 2
                    and running_pids(engine.observed(), "w")
                ),
                what="2 workers",
            )
            engine.apply(assignment(watcher("w", SLEEP, [1, 2, 3, 4]), generation=2))
            grown = await until(
                lambda: (
                    len(running_pids(engine.observed(), "w")) == 4
                    and running_pids(engine.observed(), "w")
                ),
                what="4 workers",
            )
            assert grown[1] == first[1] and grown[2] == first[2], "scaling up restarted workers"
            engine.apply(assignment(watcher("w", SLEEP, [2]), generation=3))
            await until(lambda: set(statuses(engine.observed(), "w")) == {2}, what="only wid 2")
            for wid in (1, 3, 4):
                await until(
                    lambda pid=grown[wid]: not psutil.pid_exists(pid), what=f"wid {wid} gone"
                )
            assert running_pids(engine.observed(), "w") == {2: first[2]}
            assert engine.observed().generation == 3

    run(scenario())


def test_sigkilled_worker_is_respawned_within_a_second(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1])))
            old = (await until(lambda: running_pids(engine.observed(), "w"), what="worker"))[1]
            killed_at = time.monotonic()
            os.kill(old, signal.SIGKILL)
            new = await until(
                lambda: (
                    running_pids(engine.observed(), "w").get(1, old) != old
                    and running_pids(engine.observed(), "w")[1]
                ),
                timeout=1.0,
                what="a new pid for wid 1",
            )
            assert time.monotonic() - killed_at < 1.0
            status = statuses(engine.observed(), "w")[1]
            assert status.restarts == 1
            assert status.last_exit.signal == signal.SIGKILL
            assert status.last_exit.reason == types_pb2.EXIT_REASON_CRASHED
            assert psutil.Process(new).is_running()
            kinds = [e.kind for e in engine.take_events()]
            assert kinds.count("spawn") == 2 and "exit" in kinds

    run(scenario())


def test_flapping_worker_backs_off_then_retries_then_is_fatal_and_reset_clears_it(
    tmp_path: Path,
) -> None:
    flap = FlappingSpec(attempts=1, window=5.0, retry_in=0.3, max_retry=1)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", "sh -c 'exit 3'", [1], flapping=flap)))

            def phase() -> int:
                return engine.observed().watchers[0].phase

            await until(lambda: phase() == types_pb2.WATCHER_PHASE_FLAPPING, what="flapping")
            observed = engine.observed()
            assert observed.watchers[0].message == "flapping, retry in 1s"
            assert statuses(observed, "w")[1].state == types_pb2.PROCESS_STATE_BACKOFF
            assert statuses(observed, "w")[1].last_exit.code == 3
            await until(lambda: phase() == types_pb2.WATCHER_PHASE_FATAL, what="fatal")
            observed = engine.observed()
            assert observed.watchers[0].message == "fatal: still flapping after 1 retry"
            assert statuses(observed, "w")[1].state == types_pb2.PROCESS_STATE_FATAL
            kinds = [e.kind for e in engine.take_events()]
            assert kinds.index("flapping") < kinds.index("retry") < kinds.index("fatal")
            engine.apply(assignment(watcher("w", SLEEP, [1], reset_token=1, flapping=flap)))
            await until(lambda: running_pids(engine.observed(), "w"), what="running after reset")
            assert phase() == types_pb2.WATCHER_PHASE_ACTIVE
            assert "reset" in [e.kind for e in engine.take_events()]

    run(scenario())


def test_sigterm_ignoring_worker_is_sigkilled_after_graceful_timeout(tmp_path: Path) -> None:
    cmd, args = python_cmd(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", cmd, [1], args=args, graceful_timeout=0.5)))
            await until(lambda: engine.tail("w", "out", 1), what="worker ready")
            pid = running_pids(engine.observed(), "w")[1]
            asked = time.monotonic()
            engine.apply(
                assignment(
                    watcher("w", cmd, [1], args=args, graceful_timeout=0.5, active=False),
                    generation=2,
                )
            )
            stopped = await until(
                lambda: (
                    statuses(engine.observed(), "w")[1].state == types_pb2.PROCESS_STATE_STOPPED
                    and statuses(engine.observed(), "w")[1]
                ),
                what="stopped",
            )
            elapsed = time.monotonic() - asked
            assert 0.5 <= elapsed < 2.5
            assert stopped.last_exit.reason == types_pb2.EXIT_REASON_KILLED
            assert stopped.last_exit.signal == signal.SIGKILL
            assert not psutil.pid_exists(pid)

    run(scenario())


def _descendants(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def _gone(pid: int) -> bool:
    """Gone for good: not even a zombie is left."""
    return not psutil.pid_exists(pid)


def test_stop_leaves_no_zombie_and_no_orphan_grandchild(tmp_path: Path) -> None:
    cmd = "sh -c 'sleep 300 & setsid sleep 301 & sleep 302'"

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", cmd, [1], stop_children=True)))
            pid = (await until(lambda: running_pids(engine.observed(), "w"), what="worker"))[1]
            family = await until(
                lambda: len(_descendants(pid)) == 3 and _descendants(pid), what="3 grandchildren"
            )
            assert any(os.getpgid(p) != pid for p in family), "setsid child left the group"
            engine.apply(assignment(generation=2))
            for member in [pid, *family]:
                await until(lambda member=member: _gone(member), what=f"pid {member} gone")
            zombies = [c for c in psutil.Process().children() if c.status() == "zombie"]
            assert zombies == []

    run(scenario())


def test_orphaned_grandchild_dies_with_its_crashed_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", "sh -c 'sleep 300 & sleep 300'", [1])))
            pid = (await until(lambda: running_pids(engine.observed(), "w"), what="worker"))[1]
            family = await until(
                lambda: len(_descendants(pid)) == 2 and _descendants(pid), what="grandchildren"
            )
            os.kill(pid, signal.SIGKILL)
            for member in family:
                await until(lambda member=member: _gone(member), what=f"orphan {member} gone")

    run(scenario())


def test_missing_command_is_a_spawn_error_in_status_and_events(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(
                assignment(watcher("bad", "nope-not-a-command", [1]), watcher("good", SLEEP, [1]))
            )
            status = await until(
                lambda: (
                    statuses(engine.observed(), "bad").get(1)
                    if statuses(engine.observed(), "bad").get(1, None)
                    and statuses(engine.observed(), "bad")[1].last_exit.reason
                    == types_pb2.EXIT_REASON_SPAWN_ERROR
                    else None
                ),
                what="spawn error",
            )
            assert status.last_exit.message == (
                "spawn error: [Errno 2] No such file or directory: 'nope-not-a-command'"
            )
            assert status.pid == 0
            events = engine.take_events()
            assert any(e.kind == "spawn_error" and e.watcher == "bad" for e in events)
            assert any(e.kind == "flapping" and e.watcher == "bad" for e in events)
            assert all(e.host_id == "test-host" for e in events)
            assert running_pids(engine.observed(), "good")

    run(scenario())


def test_a_command_that_never_starts_is_fatal_after_max_retry_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            never = FlappingSpec(attempts=1000, window=1.0)  # flapping must not hide max_retry
            engine.apply(assignment(watcher("bad", "nope-not-a-command", [1], max_retry=2,
                                            flapping=never)))  # fmt: skip

            def fatal() -> types_pb2.WatcherObserved | None:
                (observed,) = engine.observed().watchers
                return observed if observed.phase == types_pb2.WATCHER_PHASE_FATAL else None

            observed = await until(fatal, what="the watcher to give up")
            assert observed.message.startswith("fatal: could not start after 2 attempts:")
            events = [e.kind for e in engine.take_events() if e.watcher == "bad"]
            assert events.count("spawn_error") == 2 and events[-1] == "fatal"

    run(scenario())


def test_bad_working_dir_and_unknown_user_are_spawn_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(
                assignment(
                    watcher(
                        "cwd", SLEEP, [1], working_dir=str(tmp_path / "missing"), respawn=False
                    ),
                    watcher("user", SLEEP, [1], uid="no-such-user-here", respawn=False),
                )
            )

            def message(name: str) -> str:
                found = statuses(engine.observed(), name).get(1)
                return found.last_exit.message if found else ""

            await until(lambda: message("cwd") and message("user"), what="both spawn errors")
            assert "No such file or directory" in message("cwd")
            assert message("user") == "spawn error: unknown user 'no-such-user-here'"

    run(scenario())


def test_restart_token_replaces_every_worker_and_graceful_starts_new_first(tmp_path: Path) -> None:
    def replaced(engine: Engine, old: dict[int, int]) -> dict[int, int]:
        now = running_pids(engine.observed(), "w")
        return now if len(now) == 2 and set(now.values()).isdisjoint(old.values()) else {}

    def order(engine: Engine) -> list[tuple[str, int]]:
        return [(e.kind, e.wid) for e in engine.take_events() if e.kind in ("spawn", "stopped")]

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1, 2])))
            first = await until(
                lambda: (
                    len(running_pids(engine.observed(), "w")) == 2
                    and running_pids(engine.observed(), "w")
                ),
                what="2 workers",
            )
            engine.take_events()
            engine.apply(assignment(watcher("w", SLEEP, [1, 2], restart_token=1, graceful=True)))
            second = await until(lambda: replaced(engine, first), what="reloaded")
            for pid in first.values():
                await until(lambda pid=pid: not psutil.pid_exists(pid), what="old worker gone")
            await until(lambda: not engine.watchers["w"].stopping(), what="old workers reaped")
            # reload: each new worker is spawned before the old one of its wid is stopped
            events = order(engine)
            for wid in (1, 2):
                assert events.index(("spawn", wid)) < events.index(("stopped", wid))
            engine.apply(assignment(watcher("w", SLEEP, [1, 2], restart_token=2)))
            third = await until(lambda: replaced(engine, second), what="restarted")
            # restart: the old worker of each wid is stopped before the new one starts
            await until(lambda: not engine.watchers["w"].stopping(), what="old workers reaped")
            events = order(engine)
            for wid in (1, 2):
                assert events.index(("stopped", wid)) < events.index(("spawn", wid))
            assert statuses(engine.observed(), "w")[1].last_exit.reason == (
                types_pb2.EXIT_REASON_RESTARTED
            )
            # numprocesses-only change: nothing replaced
            engine.apply(assignment(watcher("w", SLEEP, [1, 2, 3], restart_token=2)))
            await until(lambda: len(running_pids(engine.observed(), "w")) == 3, what="3 workers")
            assert {k: v for k, v in running_pids(engine.observed(), "w").items() if k < 3} == third
            # a spec change replaces every worker
            engine.apply(assignment(watcher("w", "sleep 299", [1, 2], restart_token=2)))
            await until(lambda: replaced(engine, third), what="replaced after a spec change")

    run(scenario())


def test_lower_fencing_token_is_ignored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            assert engine.apply(assignment(watcher("w", SLEEP, [1]), fencing_token=5))
            pids = await until(lambda: running_pids(engine.observed(), "w"), what="worker")
            assert not engine.apply(assignment(generation=2, fencing_token=4))
            assert engine.observed().generation == 1
            await asyncio.sleep(0.1)  # give a wrongly applied empty assignment time to act
            assert running_pids(engine.observed(), "w") == pids

    run(scenario())


def test_max_age_recycles_a_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], max_age=0.3, max_age_variance=0)))
            old = (await until(lambda: running_pids(engine.observed(), "w"), what="worker"))[1]
            await until(
                lambda: running_pids(engine.observed(), "w").get(1, old) != old,
                timeout=3,
                what="recycled",
            )
            await until(
                lambda: (
                    statuses(engine.observed(), "w")[1].last_exit.reason
                    == types_pb2.EXIT_REASON_MAX_AGE
                ),
                what="reason max_age",
            )

    run(scenario())


def test_watchers_start_by_priority_and_warmup_delay_spaces_only_its_own_spawns(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(
                assignment(
                    watcher("b-low", SLEEP, [1]),
                    watcher("a-low", SLEEP, [1]),
                    watcher("high", SLEEP, [1, 2], priority=10, warmup_delay=0.2),
                )
            )
            await until(
                lambda: (
                    len(engine.observed().processes) == 4
                    and all(
                        p.state == types_pb2.PROCESS_STATE_RUNNING
                        for p in engine.observed().processes
                    )
                ),
                what="all running",
            )
            spawns = [e for e in engine.take_events() if e.kind == "spawn"]
            # the high priority watcher starts first; its warm-up holds up none but itself
            assert [(e.watcher, e.wid) for e in spawns] == [
                ("high", 1),
                ("a-low", 1),
                ("b-low", 1),
                ("high", 2),
            ]
            assert spawns[3].at - spawns[0].at >= 0.2

    run(scenario())


def test_a_respawned_worker_is_running_once_its_warmup_delay_is_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1], warmup_delay=2)))
            up = await until(lambda: running_pids(engine.observed(), "w"), 15, what="up")
            first = up[1]
            os.kill(first, signal.SIGKILL)

            def state() -> tuple[int, int]:
                status = statuses(engine.observed(), "w")[1]
                return status.pid, status.state

            await until(lambda: state()[0] not in (0, first), what="the respawn")
            assert state()[1] == types_pb2.PROCESS_STATE_STARTING
            await until(lambda: state()[1] == types_pb2.PROCESS_STATE_RUNNING, 15, what="warm")

    run(scenario())


def test_inactive_watcher_is_stopped_and_start_brings_it_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1, 2])))
            old = await until(
                lambda: len(r := running_pids(engine.observed(), "w")) == 2 and r, what="2 workers"
            )
            engine.apply(assignment(watcher("w", SLEEP, [1, 2], active=False), generation=2))
            await until(
                lambda: (
                    {p.state for p in engine.observed().processes}
                    == {types_pb2.PROCESS_STATE_STOPPED}
                ),
                what="stopped",
            )
            observed = engine.observed()
            assert observed.watchers[0].phase == types_pb2.WATCHER_PHASE_STOPPED
            assert all(
                p.pid == 0 and p.last_exit.reason == types_pb2.EXIT_REASON_STOPPED
                for p in observed.processes
            )
            assert not any(psutil.pid_exists(pid) for pid in old.values())
            engine.apply(assignment(watcher("w", SLEEP, [1, 2], reset_token=1), generation=3))
            await until(lambda: len(running_pids(engine.observed(), "w")) == 2, what="started")

    run(scenario())


def test_spawn_errors_reach_max_retry_across_flapping_backoffs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            flap = FlappingSpec(retry_in=0.2)  # default attempts and window: it flaps first
            engine.apply(assignment(watcher("bad", "nope-not-a-command", [1], max_retry=3,
                                            flapping=flap)))  # fmt: skip

            def fatal() -> types_pb2.WatcherObserved | None:
                (observed,) = engine.observed().watchers
                return observed if observed.phase == types_pb2.WATCHER_PHASE_FATAL else None

            observed = await until(fatal, what="the watcher to give up")
            assert observed.message.startswith("fatal: could not start after 3 attempts:")
            events = [e.kind for e in engine.take_events() if e.watcher == "bad"]
            assert events.count("spawn_error") == 3
            assert events.index("flapping") < events.index("retry") < events.index("fatal")

    run(scenario())


ORPHAN_MAKER = "sh -c 'setsid sleep 777 & sleep 888 & wait'"


async def _setsid_grandchild(pid: int) -> int:
    """The `setsid sleep 777` child of worker `pid`, once it left the worker's group."""

    def find() -> int:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if child.cmdline() == ["sleep", "777"] and os.getpgid(child.pid) != pid:
                    return child.pid
            except (psutil.Error, OSError):
                continue
        return 0

    return await until(find, what="the setsid grandchild")


def _zombie_children() -> list[int]:
    found = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def test_stop_kills_a_grandchild_that_left_the_group_without_stop_children(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", ORPHAN_MAKER, [1])))
            pid = (await until(lambda: running_pids(engine.observed(), "w"), what="worker"))[1]
            orphan = await _setsid_grandchild(pid)
            engine.apply(assignment(watcher("w", ORPHAN_MAKER, [1], active=False), generation=2))
            await until(
                lambda: (
                    statuses(engine.observed(), "w")[1].state == types_pb2.PROCESS_STATE_STOPPED
                ),
                what="stopped",
            )
            await until(lambda: _gone(orphan), what=f"setsid grandchild {orphan} gone")
            await until(lambda: not _zombie_children(), what="no zombie child")
            assert statuses(engine.observed(), "w")[1].last_exit.reason == (
                types_pb2.EXIT_REASON_STOPPED
            )

    run(scenario())


def test_crashed_worker_leaves_no_setsid_grandchild_and_other_workers_live_on(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(watcher("w", ORPHAN_MAKER, [1]), watcher("other", SLEEP, [1])))
            pid = (await until(lambda: running_pids(engine.observed(), "w"), what="worker"))[1]
            other = await until(lambda: running_pids(engine.observed(), "other"), what="other")
            orphan = await _setsid_grandchild(pid)
            os.kill(pid, signal.SIGKILL)
            await until(lambda: _gone(orphan), what=f"setsid grandchild {orphan} gone")
            new = await until(
                lambda: (
                    running_pids(engine.observed(), "w").get(1, pid) != pid
                    and running_pids(engine.observed(), "w")[1]
                ),
                what="the worker respawned",
            )
            await _setsid_grandchild(new)  # the respawned worker's own family was spared
            await until(lambda: not _zombie_children(), what="no zombie child")
            assert running_pids(engine.observed(), "other") == other
            assert psutil.Process(other[1]).status() != psutil.STATUS_ZOMBIE

    run(scenario())


def test_spawned_workers_are_on_disk_before_the_next_flush_tick(tmp_path: Path) -> None:
    """A kill -9 of the agent right after a spawn must not leave an unrecorded worker."""

    async def scenario() -> None:
        # A flush tick far away: only the save scheduled by the spawn itself can record them.
        async with Engine(settings(tmp_path, flush_interval=3600)) as engine:
            engine.note_fencing_token(7)  # as the session does for every message
            engine.apply(assignment(watcher("w", SLEEP, [1, 2]), fencing_token=7))
            pids = await until(lambda: len(p := running_pids(engine.observed(), "w")) == 2 and p,
                               what="2 workers")  # fmt: skip
            await asyncio.sleep(0)  # the save runs right after the spawns' loop turn
            records = persist.load_state(engine.settings.data_dir)
            assert records.fencing_token == 7
            assert {(r.wid, r.pid) for r in records.workers} == set(pids.items())

    run(scenario())


@dataclass
class SmallDisk:
    """A 1 MiB tmpfs mounted on `where`: `fill` it, `free` it again."""

    where: Path

    @property
    def filler(self) -> Path:
        return self.where / "filler"

    def fill(self) -> None:
        with contextlib.suppress(OSError), self.filler.open("wb") as out:
            while True:
                out.write(b"\0" * 65536)
                out.flush()

    def free(self) -> None:
        self.filler.unlink()


@contextlib.asynccontextmanager
async def engine_on(disk: SmallDisk) -> AsyncIterator[Engine]:
    """An engine whose data dir is `disk`, filled once the engine has started."""
    async with Engine(settings(disk.where.parent, data_dir=disk.where)) as engine:
        disk.fill()
        yield engine


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[SmallDisk]:
    where.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(where)],
                   check=True)  # fmt: skip
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root")
def test_a_full_data_dir_changes_nothing_the_agent_does_and_saving_resumes(
    tmp_path: Path,
) -> None:
    # The data dir fills up (another program's files): an assignment is still applied and
    # its workers run, one event says why nothing is saved, and once space is back the
    # assignment and the worker records reach the disk without anything else happening.
    data_dir = tmp_path / "agent"

    async def scenario(disk: SmallDisk) -> None:
        async with engine_on(disk) as engine:
            engine.note_fencing_token(3)
            assert engine.apply(assignment(watcher("w", SLEEP, [1, 2]), generation=5,
                                           fencing_token=3))  # fmt: skip
            pids = await until(lambda: len(p := running_pids(engine.observed(), "w")) == 2 and p,
                               what="2 workers")  # fmt: skip
            events = [e for e in engine.take_events() if e.kind.startswith("save_")]
            assert [e.kind for e in events] == ["save_failed"], events
            assert "No space left on device" in events[0].message
            assert persist.load_assignment(data_dir) is None

            disk.free()
            await until(lambda: (a := persist.load_assignment(data_dir)) is not None
                        and a.generation == 5, what="the assignment saved")  # fmt: skip
            await until(
                lambda: (
                    {(r.wid, r.pid) for r in persist.load_state(data_dir).workers}
                    == set(pids.items())
                ),
                what="the worker records saved",
            )
            await until(lambda: "save_works" in {e.kind for e in engine.take_events()},
                        what="an event that saving works again")  # fmt: skip
            assert running_pids(engine.observed(), "w") == pids

    with small_disk(data_dir) as disk:
        run(scenario(disk))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root")
def test_an_assignment_the_previous_image_could_not_save_is_saved_by_the_next(
    tmp_path: Path,
) -> None:
    # A reload while the disk is full: the next image has the assignment from its
    # handover; what the disk has is older, so the next image saves it at once.
    data_dir = tmp_path / "agent"

    async def first_life(disk: SmallDisk) -> Handover:
        async with engine_on(disk) as engine:
            engine.apply(assignment(watcher("w", SLEEP, [1]), generation=8))
            await until(lambda: running_pids(engine.observed(), "w"), what="the worker")
            return engine.hand_over(0.0, "", "")

    async def second_life(handover: Handover) -> None:
        async with Engine(settings(tmp_path, data_dir=data_dir), handover) as engine:
            saved = persist.load_assignment(data_dir)
            assert saved is not None and saved.generation == 8
            assert set(running_pids(engine.observed(), "w")) == {1}

    with small_disk(data_dir) as disk:
        handover = run(first_life(disk))
        assert persist.load_assignment(data_dir) is None
        disk.free()
        run(second_life(from_bytes(to_bytes(handover))))
