"""Agent restart figures: a reload (SIGHUP, re-exec in place) and a crash (kill -9, adoption).

Run: .venv/bin/python bench/agent_restart.py [--rounds 7] [--workers 8]

A real controller and agent on 127.0.0.1; the workers share a socket and print a line
every 10 ms, so the agent has pipes and a socket to hand over. Each round:

(a) SIGHUP to the agent -> its new image is connected to the controller again (its Hello
    arrived: `agents` shows it ready with a new re-exec time). Split, from the agent's
    log, into the check of the new program and the rest (exec, start-up, reconnection),
    and, within the rest, the wait for the controller to take the reload notice;
(b) kill -9 of the agent, then a new agent started -> every worker adopted (the agent's
    log line), and -> connected to the controller again.

Every round also checks that no worker was restarted. The baseline, measured in the same
run, is what any Python agent pays: starting this interpreter and importing the agent
(`python -c "import stack.agent.main"`), which a reload pays twice (the check and the new
image) and a crash restart once. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.v1 import admin_pb2
from tests.support.cluster import Cluster
from tests.support.processes import ROOT, become_subreaper
from tests.support.workers import socket_stack

ADOPTED = re.compile(r"adopted (\d+) of (\d+) workers .* in (\d+) ms")
NOTICE = re.compile(r"the controller took the reload notice in ([\d.]+) ms")


def poll(check: Callable[[], object], timeout: float = 60.0, interval: float = 0.002) -> float:
    """perf_counter() when `check()` first returns something truthy."""
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)
    return time.perf_counter()


def agent_info(cluster: Cluster) -> admin_pb2.AgentInfo | None:
    reply = cluster.admin().Agents(admin_pb2.AgentsRequest(), timeout=5)
    return next((a for a in reply.agents if a.host_id == "h1"), None)


def log_time(line: str) -> float:
    """The unix time at the head of an agent log line."""
    stamp = line[:23]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def reload_round(cluster: Cluster, pids: dict[int, int]) -> tuple[float, float, float]:
    """(SIGHUP -> connected again, SIGHUP -> the check passed, the controller's taking of
    the reload notice), in seconds."""
    before = agent_info(cluster)
    assert before is not None
    offset = len(cluster.agent.output())
    sent_wall, sent = time.time(), time.perf_counter()
    os.kill(cluster.agent.pid, signal.SIGHUP)

    def back() -> bool:
        refused = [line for line in cluster.agent.output()[offset:].splitlines()
                   if "reload refused" in line]  # fmt: skip
        if refused:
            raise RuntimeError(refused[0])
        info = agent_info(cluster)
        return bool(info and info.state == "ready" and info.reexecuted_at > before.reexecuted_at)

    done = poll(back)
    checked = next(
        log_time(line)
        for line in cluster.agent.output()[offset:].splitlines()
        if "the new program checked out" in line
    )
    told = NOTICE.search(cluster.agent.output()[offset:])
    assert told is not None, "the controller did not take the reload notice"
    poll(lambda: cluster.running_pids("w") == pids, 15)
    return done - sent, checked - sent_wall, float(told.group(1)) / 1000


def crash_round(cluster: Cluster, pids: dict[int, int]) -> tuple[float, float, int]:
    """(start -> every worker adopted, start -> connected, the adoption's own ms)."""
    cluster.agent.kill9()
    offset = len(cluster.agent.output())
    found: list[re.Match[str]] = []

    def adopted() -> bool:
        match = ADOPTED.search(cluster.agent.output()[offset:])
        if match:
            found.append(match)
        return match is not None

    started = time.perf_counter()
    cluster.start_agent(wait_connected=False)
    adoption = poll(adopted)
    (match,) = found[:1]
    assert match.group(1) == match.group(2) == str(len(pids)), match.group(0)
    connected = poll(lambda: (i := agent_info(cluster)) is not None and i.state == "ready")
    poll(lambda: cluster.running_pids("w") == pids, 15)
    return adoption - started, connected - started, int(match.group(3))


def import_floor() -> float:
    """Seconds to start this interpreter and import the agent (nothing else)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import stack.agent.main"],
        check=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=8)
    ns = parser.parse_args()
    become_subreaper()
    ms = 1000.0
    med = statistics.median

    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), agent_options=("--heartbeat-interval", "0.5"))
        try:
            cluster.start()
            path = Path(tmp) / "bench.toml"
            path.write_text(
                socket_stack(cluster.tag, "--serve-fd", "$(circus.sockets.web)",
                             "--tick", "0.01", numprocesses=ns.workers, graceful_timeout=5)
            )  # fmt: skip
            cluster.stackctl("apply", str(path), check=True)
            pids = cluster.wait_running("w", ns.workers, 60)
            agent_pid = cluster.agent.pid
            floors, reloads, checks, notices = [], [], [], []
            adoptions, reconnects, own = [], [], []
            for _ in range(ns.rounds):
                floors.append(import_floor())
                took, checked, notice = reload_round(cluster, pids)
                reloads.append(took)
                checks.append(checked)
                notices.append(notice)
                assert cluster.agent.pid == agent_pid
            for _ in range(ns.rounds):
                adopted, connected, adoption_ms = crash_round(cluster, pids)
                adoptions.append(adopted)
                reconnects.append(connected)
                own.append(adoption_ms)
            kept = cluster.running_pids("w") == pids
        except BaseException:
            print(cluster.agent.output()[-6000:], file=sys.stderr)  # why, for the reader
            raise
        finally:
            cluster.close()

    floor = med(floors)
    print(f"{ns.workers} workers sharing a socket, each printing a line every 10 ms; "
          f"median of {ns.rounds} rounds")  # fmt: skip
    print(f"baseline: start Python and import the agent      {floor * ms:7.0f} ms")
    print("(a) reload (SIGHUP, re-exec in place)")
    print(f"    SIGHUP -> connected to the controller again   {med(reloads) * ms:7.0f} ms "
          f"(max {max(reloads) * ms:.0f}; target < 1000)")  # fmt: skip
    print(f"      of which the new program's --check          {med(checks) * ms:7.0f} ms")
    rest = med(r - c for r, c in zip(reloads, checks, strict=True))
    print(f"      exec, start-up, handover, reconnection      {rest * ms:7.0f} ms "
          f"(2 x baseline = {2 * floor * ms:.0f})")  # fmt: skip
    print(f"      of which telling the controller             {med(notices) * ms:7.1f} ms "
          f"(max {max(notices) * ms:.1f})")  # fmt: skip
    print("(b) crash (kill -9), then a new agent")
    print(f"    start -> every worker adopted                 {med(adoptions) * ms:7.0f} ms "
          f"(max {max(adoptions) * ms:.0f}; target < 2000)")  # fmt: skip
    print(f"      of which the adoption itself                {med(own):7.0f} ms")
    print(f"    start -> connected to the controller          {med(reconnects) * ms:7.0f} ms")
    print(f"no worker restarted in any round: {kept}")


if __name__ == "__main__":
    main()
