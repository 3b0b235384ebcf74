"""Single-host figures: spawn time, respawn latency, agent footprint.

Run: .venv/bin/python bench/single_host.py [--rounds 5]

(a) time from the Scale RPC to 100 processes running on the agent, beside a
    bare subprocess.Popen loop starting the same 100 processes (same run);
(b) respawn latency after SIGKILL of a worker: median and p95;
(c) agent RSS and idle CPU with 100 children.
Prints medians; asserts nothing. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.v1 import admin_pb2, types_pb2
from tests.integration.cluster import Cluster, become_subreaper

SLEEP = shutil.which("sleep") or "/bin/sleep"
COUNT = 100


def poll(check: Callable[[], bool], timeout: float = 60.0, interval: float = 0.001) -> float:
    """Seconds until `check()` is true, polling every `interval`."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(interval)
    return time.perf_counter() - start


def sleepers_of(pid: int) -> list[int]:
    """Children of `pid` that have exec'd sleep (a child still before exec does not count).

    Reads /proc directly (the children list of the main thread, then each
    child's comm): scanning every process with psutil on each poll would steal
    the CPU the spawner under test needs.
    """
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = handle.read().split()
    except FileNotFoundError:
        return []
    found = []
    for child in children:
        try:
            with open(f"/proc/{child}/stat") as handle:
                stat = handle.read()
        except (FileNotFoundError, ProcessLookupError):  # reaped meanwhile
            continue
        name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if name == "sleep" and state != "Z":
            found.append(int(child))
    return found


def bare_popen_loop(count: int = COUNT) -> float:
    """Seconds for `count` plain Popen calls until every child has exec'd sleep."""
    start = time.perf_counter()
    procs = [subprocess.Popen([SLEEP, "3600"]) for _ in range(count)]
    poll(lambda: len(sleepers_of(os.getpid())) >= count)
    took = time.perf_counter() - start
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()
    return took


def stack_scale(cluster: Cluster) -> tuple[float, float]:
    """(to 100 exec'd on the agent, to 100 RUNNING in the controller's status)."""
    admin = cluster.admin()
    start = time.perf_counter()
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=COUNT), timeout=10)
    poll(lambda: len(sleepers_of(cluster.agent.pid)) >= COUNT)
    on_agent = time.perf_counter() - start

    def all_running() -> bool:
        procs = cluster.processes("sleepers")
        return sum(p.state == types_pb2.PROCESS_STATE_RUNNING for p in procs) == COUNT

    poll(all_running, interval=0.005)
    in_status = time.perf_counter() - start
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=0), timeout=10)
    poll(lambda: not sleepers_of(cluster.agent.pid), interval=0.01)
    poll(lambda: not cluster.processes("sleepers"), interval=0.01)
    return on_agent, in_status


def respawn_latency(cluster: Cluster, rounds: int) -> list[float]:
    admin = cluster.admin()
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=1), timeout=10)
    poll(lambda: len(sleepers_of(cluster.agent.pid)) == 1)
    samples = []
    for _ in range(rounds):
        (old,) = sleepers_of(cluster.agent.pid)
        start = time.perf_counter()
        os.kill(old, signal.SIGKILL)

        def replaced(old_pid: int = old) -> bool:
            now = sleepers_of(cluster.agent.pid)
            return len(now) == 1 and now[0] != old_pid

        poll(replaced, interval=0.0002)
        samples.append(time.perf_counter() - start)
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=0), timeout=10)
    poll(lambda: not sleepers_of(cluster.agent.pid), interval=0.01)
    return samples


def footprint(cluster: Cluster, seconds: float) -> tuple[float, float, float]:
    """(agent RSS, USS in MiB, agent CPU % over `seconds`) with 100 idle children."""
    admin = cluster.admin()
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=COUNT), timeout=10)
    poll(lambda: len(sleepers_of(cluster.agent.pid)) >= COUNT)
    agent = psutil.Process(cluster.agent.pid)
    time.sleep(3)  # let start-up work and the first stats samples pass
    before = agent.cpu_times()
    wall = time.perf_counter()
    time.sleep(seconds)  # the measurement window itself
    after = agent.cpu_times()
    elapsed = time.perf_counter() - wall
    cpu = (after.user + after.system - before.user - before.system) / elapsed * 100
    memory = agent.memory_full_info()
    return memory.rss / 2**20, memory.uss / 2**20, cpu


def grpc_floor() -> float:
    """RSS in MiB of a bare Python that only imports grpc: what any gRPC agent starts from."""
    code = "import grpc, psutil; print(psutil.Process().memory_info().rss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--respawns", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    ns = parser.parse_args()
    become_subreaper()

    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), agent_options=())  # the agent's defaults
        try:
            cluster.start()
            stack_file = Path(tmp) / "bench.toml"
            stack_file.write_text(
                f'[watchers.sleepers]\ncmd = "{SLEEP} 3600"\nnumprocesses = 0\n'
                "graceful_timeout = 5\n"
                "[watchers.sleepers.flapping]\nattempts = 100000\nwindow = 1\n"
            )
            cluster.stackctl("apply", str(stack_file), check=True)

            bare, agent, status = [], [], []
            for _ in range(ns.rounds):
                bare.append(bare_popen_loop())
                on_agent, in_status = stack_scale(cluster)
                agent.append(on_agent)
                status.append(in_status)
            respawns = sorted(respawn_latency(cluster, ns.respawns))
            rss, uss, cpu = footprint(cluster, ns.idle_seconds)
        finally:
            cluster.close()

    med = statistics.median
    p95 = respawns[max(0, int(len(respawns) * 0.95) - 1)]
    print(f"(a) {COUNT} processes, median of {ns.rounds} rounds")
    print(f"    bare Popen loop                   {med(bare) * 1000:8.1f} ms")
    print(f"    Scale -> {COUNT} running on the agent  {med(agent) * 1000:8.1f} ms "
          f"({med(agent) / med(bare):.2f}x the bare loop)")  # fmt: skip
    print(f"    Scale -> {COUNT} running in status     {med(status) * 1000:8.1f} ms")
    print(f"(b) respawn after SIGKILL, {len(respawns)} samples")
    print(f"    median {med(respawns) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    print(f"(c) agent with {COUNT} idle children over {ns.idle_seconds:.0f} s")
    print(f"    RSS {rss:.1f} MiB (USS {uss:.1f} MiB), CPU {cpu:.2f} %")
    print(f"    for scale: python3 with only grpc imported has RSS {grpc_floor():.1f} MiB")


if __name__ == "__main__":
    main()
