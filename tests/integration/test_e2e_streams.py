"""Circus's stream classes with real workers: a file rotated by another tool is reopened,
a timed file rotates every second and `stackctl logs` reads its backups, and lines of a
StdoutStream reach the agent's own stdout."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One stack for these tests: each applies a file of its own watcher alone."""
    with running_cluster(tmp_path_factory.mktemp("streams") / "stack") as running:
        yield running


def _ticks(path: Path) -> list[int]:
    return [int(n) for n in re.findall(r"\] tick (\d+)$", path.read_text(), re.M)]


def test_a_watched_file_moved_away_by_logrotate_is_opened_again(
    shared: Cluster, tmp_path: Path
) -> None:
    log = tmp_path / "w.log"
    stream = {"class": "WatchedFileStream", "filename": str(log)}
    shared.apply(watcher_toml("watched", shared.tag, "--tick", "0.05", stdout_stream=stream))
    wait_for(lambda: log.exists() and len(_ticks(log)) >= 3, 20, "ticks in the file")
    moved = tmp_path / "w.log.1"
    subprocess.run(["mv", str(log), str(moved)], check=True)
    wait_for(lambda: log.exists() and len(_ticks(log)) >= 3, 20, "ticks in a new file")
    old, new = _ticks(moved), _ticks(log)
    assert old and new
    assert max(old) < min(new), (old, new)
    assert new == list(range(min(new), max(new) + 1))  # none lost, none twice
    assert min(new) == max(old) + 1


def test_a_timed_file_rotates_each_second_and_logs_reads_its_backups(
    shared: Cluster, tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    stream = {
        "class": "TimedRotatingFileStream",
        "filename": str(log),
        "rotate_when": "S",
        "rotate_interval": 1,
        "backup_count": 3,
    }
    shared.apply(watcher_toml("timed", shared.tag, "--tick", "0.1", stdout_stream=stream))
    backups = [tmp_path / f"t.log.{n}" for n in (1, 2, 3)]
    wait_for(lambda: all(path.exists() for path in backups), 30, "three backups")
    assert not (tmp_path / "t.log.4").exists()
    assert len(_ticks(backups[0])) >= 5  # about a second of 0.1 s ticks each

    def tailed() -> list[int]:
        out = shared.stackctl("logs", "timed", "-n", "25", "--stream", "out", check=True).out
        ticks = [int(n) for n in re.findall(r"tick (\d+)$", out, re.M)]
        return ticks if len(ticks) == 25 and len(_ticks(log)) < 25 else []

    ticks = wait_for(tailed, 20, "a tail of 25 lines")
    assert ticks == list(range(ticks[0], ticks[0] + 25))


def test_stdout_stream_lines_reach_the_agents_stdout(shared: Cluster) -> None:
    stream = {"class": "FancyStdoutStream", "color": "cyan"}
    shared.apply(watcher_toml("loud", shared.tag, "--tick", "0.1", stdout_stream=stream))
    wait_for(
        lambda: "\x1b[36mloud.1 | \x1b[0mtick 2" in shared.agent.log.read_text(),
        20,
        "the coloured lines in the agent's output",
    )
    tail = shared.stackctl("logs", "loud", "-n", "3", check=True).out  # and its file too
    assert "tick" in tail
