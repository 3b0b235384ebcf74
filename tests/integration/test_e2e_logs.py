"""Output capture: timestamped lines in rotated files, tailed and followed with stackctl."""

from __future__ import annotations

import json
import subprocess

from tests.support.cluster import Cluster
from tests.support.processes import STACKCTL, stack_env
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def test_output_is_captured_rotated_and_tailed(cluster: Cluster) -> None:
    stream = {"max_bytes": 20_000, "backup_count": 2}
    cluster.apply(watcher_toml("w", cluster.tag, "--lines", "2000", "--err-lines", "3",
                               "--line-size", "100", stdout_stream=stream))  # fmt: skip
    cluster.wait_running("w", 1)
    logs = cluster.root / "agent" / "logs"

    def rotated() -> list[str]:
        names = sorted(p.name for p in logs.glob("w.out.log*"))
        return names if names == ["w.out.log", "w.out.log.1", "w.out.log.2"] else []

    wait_for(rotated, 10, "the stdout file to rotate twice")

    def last_line_written() -> str:
        lines = (logs / "w.out.log").read_text().splitlines()
        return lines[-1] if lines and "line 1999" in lines[-1] else ""

    last = wait_for(last_line_written, 10, "the last line in the current file")
    for path in logs.glob("w.out.log*"):
        assert path.stat().st_size <= 20_000 + 200
    assert last.endswith("line 1999".ljust(100, "x"))
    assert "[1]" in last and last[:4].isdigit()

    def tail() -> list[str]:
        out = cluster.stackctl("logs", "w", "-n", "5", "--stream", "out", check=True).out
        lines = out.splitlines()
        return lines if len(lines) == 5 and "line 1999" in lines[-1] else []

    lines = wait_for(tail, 10, "stackctl logs to tail the last lines")
    assert all("w[1]" in line for line in lines)
    assert "line 1995" in lines[0]

    err = cluster.stackctl("-o", "json", "logs", "w", "-n", "10", "--stream", "err", check=True)
    texts = [line["text"] for line in err.json()["lines"]]
    assert [t.rstrip("x") for t in texts] == ["err 0", "err 1", "err 2"]


def test_logs_follow_streams_new_lines(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--tick", "0.1", numprocesses=2))
    cluster.wait_running("w", 2)
    follower = subprocess.Popen(
        [*STACKCTL, "--controller", cluster.address, "-o", "json",
         "logs", "w", "-f", "-n", "0"],
        stdout=subprocess.PIPE, text=True, env=stack_env(),
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        got = [json.loads(follower.stdout.readline()) for _ in range(20)]
    finally:
        follower.terminate()
        follower.wait(10)
    assert {g["watcher"] for g in got} == {"w"} and {g["host_id"] for g in got} == {"h1"}
    assert {g["wid"] for g in got} == {1, 2}
    ticks = [int(g["text"].split()[1]) for g in got if g["wid"] == 1]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
