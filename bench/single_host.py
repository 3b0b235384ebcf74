"""Single-host figures: spawn time, respawn latency, agent footprint.

Run: .venv/bin/python bench/single_host.py [--rounds 5] [--tls]

(a) time from the Scale RPC to 100 processes running on the agent, beside a
    bare subprocess.Popen loop starting the same 100 processes (same run);
(b) respawn latency after SIGKILL of a worker: median and p95;
(c) agent RSS and idle CPU with 100 children, and where the RSS lies (smaps).
Prints medians; asserts nothing. The agent and stackctl reach the controller over its
local socket, as on a single host they do by default; with `--tls`, over mutual TLS on
127.0.0.1 instead, with certificates made by `stackctl certs`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import (
    SLEEP,
    bare_popen_loop,
    idle_cpu_percent,
    memory_breakdown,
    memory_of,
    percentile,
    poll,
    python_floor,
    sleepers_of,
)
from stack.v1 import admin_pb2, types_pb2
from tests.support.cluster import Cluster
from tests.support.processes import become_subreaper
from tests.support.tls import TlsStack, make_tls_dir

COUNT = 100
Running = Cluster | TlsStack


def stack_scale(cluster: Running) -> tuple[float, float]:
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


def respawn_latency(cluster: Running, rounds: int) -> list[float]:
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


def footprint(cluster: Running, seconds: float) -> tuple[float, float, float, dict[str, float]]:
    """(agent RSS, USS in MiB, agent CPU % over `seconds`, where the RSS lies) with 100
    idle children."""
    admin = cluster.admin()
    admin.Scale(admin_pb2.ScaleRequest(watcher="sleepers", count=COUNT), timeout=10)
    poll(lambda: len(sleepers_of(cluster.agent.pid)) >= COUNT)
    time.sleep(3)  # let start-up work and the first stats samples pass
    (cpu,) = idle_cpu_percent([cluster.agent.pid], seconds)
    memory = memory_of(cluster.agent.pid)
    return memory.rss, memory.uss, cpu, memory_breakdown(cluster.agent.pid)


def started(root: Path, tls: bool) -> tuple[Running, tuple[str, ...]]:
    """A controller and an agent with its default flags, and the options stackctl needs."""
    if not tls:
        cluster = Cluster(root, agent_options=())
        cluster.start()
        return cluster, ()
    stack = TlsStack(root, make_tls_dir(root, "h1"), agent_options=())  # the agent's defaults
    return stack.start(), ("--tls-dir", str(stack.tls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--respawns", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--tls", action="store_true", help="agent and controller over mutual TLS")
    ns = parser.parse_args()
    become_subreaper()

    with tempfile.TemporaryDirectory() as tmp:
        cluster: Running | None = None
        try:
            cluster, tls_options = started(Path(tmp), ns.tls)
            stack_file = Path(tmp) / "bench.toml"
            stack_file.write_text(
                f'[watchers.sleepers]\ncmd = "{SLEEP} 3600"\nnumprocesses = 0\n'
                "graceful_timeout = 5\n"
                "[watchers.sleepers.flapping]\nattempts = 100000\nwindow = 1\n"
            )
            cluster.stackctl(*tls_options, "apply", str(stack_file), check=True)

            bare, agent, status = [], [], []
            for _ in range(ns.rounds):
                bare.append(bare_popen_loop(COUNT))
                on_agent, in_status = stack_scale(cluster)
                agent.append(on_agent)
                status.append(in_status)
            respawns = sorted(respawn_latency(cluster, ns.respawns))
            rss, uss, cpu, parts = footprint(cluster, ns.idle_seconds)
        finally:
            if cluster is not None:
                cluster.close()

    med = statistics.median
    p95 = percentile(respawns, 0.95)
    print(f"(a) {COUNT} processes, median of {ns.rounds} rounds")
    print(f"    bare Popen loop                   {med(bare) * 1000:8.1f} ms")
    print(f"    Scale -> {COUNT} running on the agent  {med(agent) * 1000:8.1f} ms "
          f"({med(agent) / med(bare):.2f}x the bare loop)")  # fmt: skip
    print(f"    Scale -> {COUNT} running in status     {med(status) * 1000:8.1f} ms")
    print(f"(b) respawn after SIGKILL, {len(respawns)} samples")
    print(f"    median {med(respawns) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    print(f"(c) agent with {COUNT} idle children over {ns.idle_seconds:.0f} s, "
          f"TLS {'on' if ns.tls else 'off'}")  # fmt: skip
    print(f"    RSS {rss:.1f} MiB (USS {uss:.1f} MiB), CPU {cpu:.2f} %")
    print("    RSS by mapping: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in parts.items()))
    floor = python_floor("import grpc")
    lean = python_floor("import stack.agent.lean\nstack.agent.lean.keep_out_openssl()\nimport grpc")
    print(f"    for scale: python3 with only grpc imported has RSS {floor:.1f} MiB; "
          f"{lean:.1f} MiB with OpenSSL kept out as the agent keeps it out")  # fmt: skip


if __name__ == "__main__":
    main()
