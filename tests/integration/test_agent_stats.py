"""Workers' figures (cpu, memory, fds) are sampled as often as someone looks, from /proc.

Nobody looking, the agent samples every `stats_rest_interval`; a status or a metrics
scrape makes the controller send StatsWanted, and the agent samples at once and then
every `stats_interval` for that long.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from stack.agent.engine import Engine
from stack.spec.observed import Observed, ProcessStatus
from stack.v1 import admin_pb2, types_pb2
from tests.support.cluster import running_cluster
from tests.support.engine import assignment, python_cmd, run, running_pids, settings, watcher
from tests.support.processes import PYTHON
from tests.support.wait import until, wait_for

MIB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")
HOG = "import time; block = bytearray(40 * 2**20); block[::4096] = b'x' * (len(block) // 4096)\n"
SPIN = HOG + "while True: pass\n"
"""A worker that holds 40 MiB (touched, so resident) and keeps a core busy."""


def _only(observed: Observed) -> ProcessStatus:
    (status,) = [p for p in observed.processes if p.watcher == "w"]
    return status


def _resident(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def test_figures_wait_at_rest_and_come_at_once_then_often_when_wanted(tmp_path: Path) -> None:
    async def scenario() -> None:
        at_rest = settings(tmp_path, stats_interval=0.2, stats_rest_interval=3600)
        go = tmp_path / "go"
        wait_for_go = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        async with Engine(at_rest) as engine:
            cmd, args = python_cmd(wait_for_go + SPIN)
            engine.apply(assignment(watcher("w", cmd, [1], args=args)))
            pids = await until(lambda: running_pids(engine.observed(), "w"), what="the worker")
            go.touch()
            await until(lambda: _resident(pids[1]) >= 40 * MIB, what="the worker's 40 MiB")
            # At rest the sampler sleeps an hour after its sample at start: ten fast
            # intervals later the figures still predate the worker's 40 MiB.
            await asyncio.sleep(2.0)
            assert _only(engine.observed()).rss_bytes < 40 * MIB, "sampled while nobody looked"

            engine.want_stats(30.0)
            first = await until(
                lambda: (s := _only(engine.observed())).rss_bytes >= 40 * MIB and s,
                what="figures right after they were wanted",
                timeout=5.0,
            )
            assert first.num_fds >= 3
            # The next samples follow at the fast interval: cpu is measured between two.
            busy = await until(
                lambda: (s := _only(engine.observed())).cpu_percent >= 20 and s,
                what="a busy worker's cpu from the fast samples",
                timeout=10.0,
            )
            assert busy.rss_bytes >= 40 * MIB

    run(scenario())


def test_a_status_makes_the_agent_sample_its_workers(tmp_path: Path) -> None:
    """With the agent at rest for an hour, the status read itself brings the figures."""
    options = ("--stats-interval", "0.5", "--stats-rest-interval", "3600",
               "--heartbeat-interval", "0.5")  # fmt: skip
    with running_cluster(tmp_path, agent_options=options) as cluster:
        script = tmp_path / "hog.py"
        script.write_text(HOG + "time.sleep(3600)\n")
        stack_file = tmp_path / "hog.toml"
        stack_file.write_text(
            f'[watchers.w]\ncmd = "{PYTHON}"\nargs = ["{script}"]\nnumprocesses = 1\n'
        )
        cluster.stackctl("apply", str(stack_file), check=True)

        def rss() -> int:
            reply = cluster.admin().Status(admin_pb2.StatusRequest(watcher="w"))
            processes = [p for w in reply.watchers for p in w.processes]
            running = [p for p in processes if p.state == types_pb2.PROCESS_STATE_RUNNING]
            return running[0].rss_bytes if running else 0

        wait_for(lambda: rss() >= 40 * MIB, timeout=30.0, what="the worker's memory in status")
