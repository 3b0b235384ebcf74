"""An agent from before the agent's own file formats is upgraded in place, with no worker lost.

Agents up to commit OLD kept their Assignment as a protobuf message (assignment.pb) and
handed their Assignment and unshipped events to a re-executed image as protobuf
(handover format 1). This agent writes its own plain JSON for both (handover format 2)
and still reads the old forms. Here a real agent of commit OLD (its code taken from
the repository's history) runs the workers; then it is replaced by this one, by a
reload (SIGHUP: the old image hands over to this one) and by a crash (kill -9: this one
adopts from the old data dir). Every worker keeps its pid, every request is answered.
"""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.agent import persist
from tests.integration.test_agent_restart import (
    Load,
    assert_every_line_is_there,
    events,
    hup_and_wait,
    last_tick,
    lines_up_to,
    numbered_lines_in_files,
    same_workers,
    start,
)
from tests.support.cluster import Cluster
from tests.support.processes import PYTHON, ROOT

OLD = "80af1d6413790bc8a4bec85db6a2205dfa7a97b2"
"""The last commit whose agent wrote assignment.pb and handover format 1."""


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `stack` package as commit OLD had it."""
    where = tmp_path_factory.mktemp("old-agent")
    archive = where / "stack.tar"
    found = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), OLD, "stack"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        pytest.skip(f"needs commit {OLD[:7]} of the repository's history: {found.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    return where


@pytest.fixture
def upgraded(tmp_path: Path, old_tree: Path) -> Iterator[tuple[Cluster, Path]]:
    """A cluster whose agent runs the code of commit OLD, through an entry file that
    an upgrade rewrites to run this code."""
    entry = tmp_path / "agent_entry.py"
    entry.write_text(_entry(old_tree))
    cluster = Cluster(tmp_path / "stack")
    assert cluster.agent.argv[:3] == [PYTHON, "-m", "stack.agent.main"]
    cluster.agent.argv[1:3] = [str(entry)]
    try:
        cluster.start()
        yield cluster, entry
    finally:
        cluster.close()


def _entry(tree: Path | None) -> str:
    first = f"import sys\nsys.path.insert(0, {str(tree)!r})\n" if tree else ""
    return f"{first}from stack.agent.main import main\n\nmain()\n"


def _old_agent_serving(cluster: Cluster) -> tuple[int, dict[int, int], Path]:
    """Two workers of the old agent serving: (their socket's port, their pids, its data dir)."""
    port, pids = start(cluster)
    data_dir = cluster.root / "agent"
    assert (data_dir / persist.LEGACY_ASSIGNMENT_FILE).exists()  # the old agent's file
    assert not (data_dir / persist.ASSIGNMENT_FILE).exists()
    return port, pids, data_dir


def test_a_reload_hands_over_from_an_agent_of_the_format_before_to_this_one(
    upgraded: tuple[Cluster, Path],
) -> None:
    cluster, entry = upgraded
    port, pids, data_dir = _old_agent_serving(cluster)
    agent_pid = cluster.agent.pid
    with Load(port).running() as load:
        entry.write_text(_entry(None))  # the upgrade: this agent's code
        hup_and_wait(cluster)
        assert cluster.agent.pid == agent_pid
        same_workers(cluster, pids)
        assert_every_line_is_there(cluster, last_tick(cluster) + 50)
    assert load.failures == [], f"{len(load.failures)} of {load.answers} requests failed"
    (reexecuted,) = events(cluster, "agent_reloaded")
    assert "2 workers kept" in reexecuted.message
    assert all(p.restarts == 0 and p.replacements == 0 for p in cluster.processes("w"))
    # what the old image applied comes through the handover: a scale works on it
    assert cluster.stackctl("scale", "w", "3", check=True).code == 0
    grown = cluster.wait_running("w", 3)
    assert {wid: grown[wid] for wid in pids} == pids
    assert persist.load_assignment(data_dir) is not None  # now kept in this agent's file


def test_a_crashed_agent_of_the_format_before_is_adopted_by_this_one(
    upgraded: tuple[Cluster, Path],
) -> None:
    """The agent of commit OLD took a pipe's bytes out before writing them to their file:
    killed between the two, it loses the lines of that one read (this agent leaves them
    in the pipe until they are written). So: the lines of each worker up to the last
    one the OLD agent wrote are all there; then at most the lines of its read in flight
    are missing, one run right after that last line; from there on, with this agent,
    every line is there. None is written twice, all are in order."""
    cluster, entry = upgraded
    port, pids, data_dir = _old_agent_serving(cluster)
    with Load(port).running() as load:
        cluster.agent.kill9()
        written = numbered_lines_in_files(data_dir / "logs", "w.out.log")
        entry.write_text(_entry(None))
        cluster.start_agent()
        same_workers(cluster, pids)
        found = lines_up_to(cluster, last_tick(cluster) + 50)
    for wid, numbers in found.items():
        assert numbers == sorted(set(numbers)), f"w[{wid}] lines out of order or twice"
        old_last = written.get(wid, [-1])[-1]
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        in_flight = list(range(old_last + 1, old_last + 1 + len(missing)))
        assert missing == in_flight, f"w[{wid}] lines missing: {missing[:20]} ({len(missing)}), "\
            f"the OLD agent wrote up to {old_last}"  # fmt: skip
    assert load.failures == [], f"{len(load.failures)} of {load.answers} requests failed"
    (restarted,) = events(cluster, "agent_restarted")
    assert "adopted 2 of 2 workers" in restarted.message
    assert all(p.restarts == 0 for p in cluster.processes("w"))
