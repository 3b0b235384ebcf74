"""The controller at fleet scale: one real controller, 1,000 simulated agents.

Run: .venv/bin/python bench/many_agents.py [--agents 1000] [--workers 4] [--rounds 5]
     [--scrapes 50] [--metric-pairs 3] [--storms-only] [--no-baseline]

The controller is the real daemon (`python -m stack.controller.main`). The agents
are simulated: `--workers` processes, each one asyncio loop holding its share of
the agents, each agent one AgentService.Connect stream speaking the real
protocol (Hello first; Observed with the applied generation after every
Assignment; Observed again as a heartbeat at the interval the Welcome names).
An agent "applies" an Assignment at once: its next Observed reports every
assigned wid RUNNING with a made-up pid. By default each agent has its own
channel and so its own TCP connection, as real agents do.

Figures (printed; nothing is asserted):
(a) connect storm: every agent dials at the same instant; time until all were
    welcomed and until all had applied their first Assignment; failed attempts; the
    CPU seconds the server and the simulating workers used over it;
(b) a watcher with placement "each" (one process per agent), scaled 1 -> 2 and
    back: time from the Scale call to each agent receiving the Assignment that
    carries the new count (median, p99, max over every agent of every round),
    and to the controller's Status showing the new total RUNNING;
(c) the controller's CPU over (b), and RSS and CPU idle with every agent
    heartbeating; the simulating workers' CPU beside it;
(d) reconnect storm: every agent drops its stream and dials again at once;
(e) /metrics with 10 processes per agent (10,000 with 1,000 agents), whose CPU time and
    memory change at every heartbeat as real ones do: how long a scrape takes (median
    and p99 of `--scrapes`, the first one apart), and the controller's CPU while
    Prometheus would scrape it every second, beside windows unscraped (`--metric-pairs`
    pairs of windows side by side, so that other jobs' drifting load touches both).
The baseline of (a) and (d), measured first in the same run unless --no-baseline: the
same worker processes and agents, on as many channels (one TCP connection each), dial a
bare gRPC server (its own process, the controller's server options) that answers each
Hello at once with a Welcome and one fixed Assignment and then only reads: no placement,
no store, the least a controller can do in Python gRPC. It names the heartbeat interval
the controller names once the whole fleet is ready (20 s at 10,000 agents), so that in
the storm its agents send a Hello and one Observed each.
Everything talks over 127.0.0.1 (the controller with --insecure: plaintext TCP, as the
simulated agents need no certificates); every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Before gRPC is loaded (the spawned workers inherit it): stopping the baseline's server
# makes its agents' channels log one line each at gRPC's default verbosity.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stack
from bench.measure import cpu_seconds, percentile, poll
from stack.controller.agent_service import Context
from stack.controller.heartbeats import Cadence
from stack.controller.main import GC_THRESHOLDS, SERVER_OPTIONS
from stack.controller.settings import ControllerSettings
from stack.spec.assignment import Assignment, WatcherAssignment
from stack.spec.load import load_stack
from stack.spec.session import Welcome
from stack.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, types_pb2
from stack.wire.agent import controller_message_to_proto
from tests.support.fake_agent import running_observed
from tests.support.ports import reserve_port

ROOT = Path(__file__).resolve().parents[1]
WATCHER = "fleet"
STACK_FILE = f"""[watchers.{WATCHER}]
cmd = "/bin/sleep 3600"
numprocesses = 1

[watchers.{WATCHER}.placement]
mode = "each"
"""
RUNNING = types_pb2.PROCESS_STATE_RUNNING
STORM_DEADLINE = 45.0
"""Seconds a storm may take before the agents still out are counted as failed."""
PHASE_DEADLINE = 20.0
"""Seconds any other phase may take before it is reported as not reached."""
AGENT_TIMEOUT = 30.0
"""The controller's --agent-timeout here (the heartbeat interval it names follows it)."""


# ---- the simulated agents (inside the worker processes) ----------------------------


@dataclass
class SimAgent:
    """One simulated host: its stream, what it was assigned, when things reached it."""

    host_id: str
    pid_base: int
    channel: grpc.aio.Channel
    generation: int = 0
    fencing_token: int = 0
    wids: dict[str, list[int]] = field(default_factory=dict)
    started_at: dict[tuple[str, int], float] = field(default_factory=dict)
    received: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, total wids) of every Assignment, in arrival order."""
    welcomed_at: float = 0.0
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    heartbeat: float = 2.0
    task: asyncio.Task[None] | None = None

    def observed(self) -> agent_pb2.Observed:
        for name, wids in self.wids.items():
            for wid in wids:
                self.started_at.setdefault((name, wid), time.time())
        out = running_observed(
            self.wids, self.generation, self.pid_base, self.host_id, self.started_at
        )
        # Figures that move at every heartbeat, as a real agent's stats do: the
        # controller accounts for each report, and a scrape writes every host again.
        now = time.time()
        for proc in out.processes:
            proc.cpu_seconds = (now - proc.started_at) * 0.01
            proc.rss_bytes = 20 * 2**20 + random.randrange(4096) * 4096
        return out

    def apply(self, assignment: agent_pb2.Assignment) -> None:
        self.generation = assignment.generation
        self.fencing_token = max(self.fencing_token, assignment.fencing_token)
        self.wids = {w.spec.name: sorted(w.wids) for w in assignment.watchers if w.active}
        live = {(name, wid) for name, wids in self.wids.items() for wid in wids}
        self.started_at = {k: v for k, v in self.started_at.items() if k in live}

    async def run(self, start_at: float) -> None:
        """Dial at `start_at` (monotonic), then stay connected, reconnecting with backoff."""
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        backoff = 0.2
        while True:
            try:
                await self._serve()
                self.errors.append("the controller ended the stream")
            except grpc.aio.AioRpcError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None  # our own cancel, as gRPC saw it
                self.errors.append(f"{exc.code().name}: {exc.details()}")
            self.failures += 1
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, 5.0)

    async def _serve(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)  # type: ignore[no-untyped-call]
        call = stub.Connect()
        hello = agent_pb2.Hello(
            host_id=self.host_id, version=stack.__version__, last_generation=self.generation,
            last_fencing_token=self.fencing_token, observed=self.observed(), address=self.host_id,
        )  # fmt: skip
        changed = asyncio.Event()
        try:
            await call.write(agent_pb2.AgentMessage(hello=hello))
            writer = asyncio.create_task(self._write(call, changed))
            try:
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        return
                    body = msg.WhichOneof("body")
                    if body == "welcome":
                        self.welcomed_at = time.monotonic()
                        if msg.welcome.heartbeat_interval > 0:
                            self.heartbeat = msg.welcome.heartbeat_interval
                    elif body == "assignment":
                        total = sum(len(w.wids) for w in msg.assignment.watchers)
                        self.received.append((time.monotonic(), total))
                        self.apply(msg.assignment)
                        changed.set()
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await writer
        finally:
            call.cancel()

    async def _write(self, call: Any, changed: asyncio.Event) -> None:
        """Observed after each applied Assignment, and as a heartbeat."""
        last = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, last + self.heartbeat - time.monotonic())):
                    await changed.wait()
            changed.clear()
            await call.write(agent_pb2.AgentMessage(observed=self.observed()))
            last = time.monotonic()


class Worker:
    """A share of the agents in one process, driven by commands over a pipe."""

    def __init__(self, address: str, first: int, count: int, per_channel: int) -> None:
        self.address = address
        self.first, self.count, self.per_channel = first, count, per_channel
        self.channels: list[grpc.aio.Channel] = []
        self.agents: list[SimAgent] = []

    def _channel(self) -> grpc.aio.Channel:
        # A local subchannel pool: otherwise gRPC shares one TCP connection
        # between every channel of the process that has the same target.
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
        channel = grpc.aio.insecure_channel(self.address, options=options)
        self.channels.append(channel)
        return channel

    def _dial(self, address: str) -> None:
        """New agents (nothing assigned yet) on new channels to `address`; none dials yet."""
        self.address = address
        for i in range(self.count):
            if i % self.per_channel == 0:
                channel = self._channel()
            index = self.first + i
            self.agents.append(SimAgent(f"sim{index:05d}", 100_000 + index * 1000, channel))

    async def serve(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        self._dial(self.address)
        conn.send(("ready", os.getpid()))
        while True:
            command, *args = await loop.run_in_executor(None, conn.recv)
            if command == "connect":
                conn.send(await self.storm(*args))
            elif command == "await":
                conn.send(await self.await_count(*args))
            elif command == "redial":  # from the baseline's server to the controller
                await self.stop()
                self.channels.clear()
                self.agents.clear()
                self._dial(*args)
                conn.send("redialed")
            elif command == "stop":
                await self.stop()
                conn.send("stopped")
                return

    async def storm(self, start_at: float, reconnect: bool) -> dict[str, Any]:
        """Every agent (re)dials at `start_at`; wait until each applied an Assignment."""
        if reconnect:
            await self._cancel_all()
        for agent in self.agents:
            agent.welcomed_at = 0.0
            agent.failures = 0
            agent.errors.clear()
            agent.received.clear()
            agent.task = asyncio.create_task(agent.run(start_at))
        deadline = start_at + STORM_DEADLINE
        while time.monotonic() < deadline:
            if all(a.received for a in self.agents):
                break
            await asyncio.sleep(0.01)
        return {
            "welcomed": [a.welcomed_at - start_at for a in self.agents if a.welcomed_at],
            "assigned": [a.received[0][0] - start_at for a in self.agents if a.received],
            "failures": sum(a.failures for a in self.agents),
            "errors": Counter(e for a in self.agents for e in a.errors),
            "missing": sum(1 for a in self.agents if not a.received),
        }

    async def await_count(self, since: float, total: int, timeout: float) -> dict[str, Any]:
        """Latency from `since` to the first Assignment carrying `total` wids, per agent."""

        def arrival(agent: SimAgent) -> float | None:
            for at, wids in agent.received:
                if at >= since and wids == total:
                    return at - since
            return None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(arrival(a) is not None for a in self.agents):
                break
            await asyncio.sleep(0.01)
        found = [arrival(a) for a in self.agents]
        return {
            "latencies": [t for t in found if t is not None],
            "missing": sum(1 for t in found if t is None),
            "failures": sum(a.failures for a in self.agents),
        }

    async def _cancel_all(self) -> None:
        tasks = [a.task for a in self.agents if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        await self._cancel_all()
        for channel in self.channels:
            await channel.close()


def worker_main(conn: Connection, address: str, first: int, count: int, per_channel: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    asyncio.run(Worker(address, first, count, per_channel).serve(conn))


# ---- the baseline: a bare AgentService, in its own process ------------------------------


class BareAgentService(agent_pb2_grpc.AgentServiceServicer):
    """Welcome and one fixed Assignment for every Hello, then reading until the agent goes."""

    def __init__(self, heartbeat: float) -> None:
        spec = load_stack(STACK_FILE, "bench.toml").watchers[WATCHER]
        share = Assignment(1, 1, (WatcherAssignment(spec, (1,)),))
        # Built once by the controller's own encoder; gRPC serializes it at every write.
        self.welcome = controller_message_to_proto(Welcome("baseline", 1, heartbeat), 1)
        self.assignment = controller_message_to_proto(share, 1)

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> None:
        messages = aiter(request_iterator)
        try:
            await anext(messages)  # the Hello, taken as it comes
        except StopAsyncIteration:
            return
        await context.write(self.welcome)
        await context.write(self.assignment)
        async for _ in messages:
            pass


async def serve_baseline(conn: Connection, heartbeat: float) -> None:
    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareAgentService(heartbeat), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conn.send(("ready", port))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    await server.stop(None)
    conn.send("stopped")


def baseline_main(conn: Connection, heartbeat: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    gc.set_threshold(*GC_THRESHOLDS)  # as the controller's, which also sets them at start
    gc.freeze()
    asyncio.run(serve_baseline(conn, heartbeat))


# ---- the orchestrating process ---------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def peak_rss(pid: int) -> float:
    """VmHWM of `pid` in MiB: the largest RSS it has had."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, ns: argparse.Namespace, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.port = reserve_port()  # the simulated agents are told it
        self.address = f"127.0.0.1:{self.port.port}"
        self.controller: subprocess.Popen[bytes] | None = None
        self.baseline: tuple[multiprocessing.process.BaseProcess, Connection] | None = None
        self.workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self.channel: grpc.Channel | None = None

    # -- processes --

    def start_controller(self) -> None:
        log = (self.tmp / "controller.log").open("ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "stack.controller.main", "--listen", self.address, "--insecure",
             "--data-dir", str(self.tmp / "controller"), "--agent-timeout", f"{AGENT_TIMEOUT:g}",
             "--metrics-listen", "127.0.0.1:0", "--log-level", self.ns.log_level],
            stdout=log, stderr=log, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.channel = grpc.insecure_channel(self.address)

        def answers() -> bool:
            try:
                self.admin().Agents(admin_pb2.AgentsRequest(), timeout=1)
            except grpc.RpcError:
                return False
            return True

        poll(answers, 15, 0.05, "the controller to answer")

    def start_baseline(self) -> tuple[str, int]:
        """The bare AgentService's process: (its address, its pid)."""
        parent, child = multiprocessing.get_context("spawn").Pipe()
        proc = multiprocessing.get_context("spawn").Process(
            target=baseline_main, args=(child, heartbeat_interval(self.ns.agents)),
            name="bare-grpc-baseline", daemon=True,
        )  # fmt: skip
        proc.start()
        child.close()
        self.baseline = (proc, parent)
        if not parent.poll(30):
            raise TimeoutError("the baseline's server did not start")
        _, port = parent.recv()
        assert proc.pid is not None
        return f"127.0.0.1:{port}", proc.pid

    def stop_baseline(self) -> None:
        if self.baseline is None:
            return
        proc, conn = self.baseline
        self.baseline = None
        with contextlib.suppress(OSError):
            conn.send("stop")
            conn.poll(15)
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        conn.close()

    def start_workers(self, address: str) -> None:
        context = multiprocessing.get_context("spawn")
        share, extra = divmod(self.ns.agents, self.ns.workers)
        first = 0
        for i in range(self.ns.workers):
            count = share + (1 if i < extra else 0)
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, args=(child, address, first, count, self.ns.per_channel),
                name=f"sim-agents-{i}", daemon=True,
            )  # fmt: skip
            proc.start()
            child.close()
            self.workers.append((proc, parent))
            first += count
        for worker, conn in self.workers:
            if not conn.poll(30):
                raise TimeoutError(f"worker {worker.name} did not start")
            conn.recv()

    def ask(self, *command: Any, timeout: float = 120.0) -> list[Any]:
        """Send `command` to every worker at once; their replies, in worker order."""
        for _, conn in self.workers:
            conn.send(command)
        replies = []
        for proc, conn in self.workers:
            if not conn.poll(timeout):
                raise TimeoutError(f"worker {proc.name} did not answer {command[0]}")
            replies.append(conn.recv())
        return replies

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("stop", timeout=15)
        self.stop_baseline()
        for proc, conn in self.workers:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            conn.close()
        if self.channel is not None:
            self.channel.close()
        if self.controller is not None and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(15)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait(5)
        self.port.close()

    # -- controller API --

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        assert self.channel is not None
        return admin_pb2_grpc.AdminServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def ready_agents(self) -> int:
        """Agents the controller calls ready; -1 when it does not answer in time."""
        try:
            reply = self.admin().Agents(admin_pb2.AgentsRequest(), timeout=5)
        except grpc.RpcError:
            return -1
        return sum(1 for a in reply.agents if a.state == "ready")

    def running(self) -> int:
        """RUNNING processes in the controller's Status; -1 when it does not answer in time."""
        try:
            reply = self.admin().Status(admin_pb2.StatusRequest(watcher=WATCHER), timeout=5)
        except grpc.RpcError:
            return -1
        return sum(1 for w in reply.watchers for p in w.processes if p.state == RUNNING)

    # -- figures --

    def worker_pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.workers if proc.pid is not None]

    def storm(self, reconnect: bool, server: int) -> dict[str, Any]:
        """(a) or (d) against the server whose pid is `server`, and the CPU it took."""
        cpu0, workers0 = self.cpu_seconds([server]), self.cpu_seconds(self.worker_pids())
        start_at = time.monotonic() + 1.0  # every worker has the command by then
        replies = self.ask("connect", start_at, reconnect, timeout=STORM_DEADLINE + 30)
        cpu, workers = self.cpu_seconds([server]) - cpu0, self.cpu_seconds(self.worker_pids())
        welcomed = [t for r in replies for t in r["welcomed"]]
        assigned = [t for r in replies for t in r["assigned"]]
        complete = len(assigned) == self.ns.agents
        return {
            "welcomed": max(welcomed) if len(welcomed) == self.ns.agents else None,
            "assigned": max(assigned) if complete else None,
            "assigned_median": statistics.median(assigned) if complete else None,
            "failures": sum(r["failures"] for r in replies),
            "errors": sum((r["errors"] for r in replies), Counter()),
            "missing": sum(r["missing"] for r in replies),
            "cpu": cpu,
            "workers_cpu": workers - workers0,
        }

    def scale_round(self, count: int) -> tuple[list[float], int, float | None]:
        """(per-agent latencies, agents that never got it, seconds until Status shows all)."""
        since = time.monotonic()
        self.admin().Scale(admin_pb2.ScaleRequest(watcher=WATCHER, count=count), timeout=30)
        replies = self.ask("await", since, count, PHASE_DEADLINE, timeout=PHASE_DEADLINE + 30)
        latencies = [t for r in replies for t in r["latencies"]]
        missing = sum(r["missing"] for r in replies)
        want = count * self.ns.agents
        try:
            poll(lambda: self.running() == want, PHASE_DEADLINE, 0.02, "Status")
        except TimeoutError:
            return latencies, missing, None
        return latencies, missing, time.monotonic() - since

    def cpu_seconds(self, pids: list[int]) -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    def metrics_url(self) -> str:
        """The controller's /metrics, at the port it printed."""
        found: list[str] = []

        def printed() -> bool:
            text = (self.tmp / "controller.log").read_text(errors="replace")
            found[:] = re.findall(r"serving the metrics on (\S+:\d+) ", text)
            return bool(found)

        poll(printed, 15, 0.05, "the controller to print its metrics port")
        return f"http://{found[-1]}/metrics"


def scrape_seconds(url: str) -> tuple[float, int]:
    """Seconds one GET of the whole page took, and its size."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = answer.read()
    return time.perf_counter() - started, len(body)


def measure_metrics(bench: Bench, controller: psutil.Process, window: float) -> list[str]:
    """(e): scrape latency at 10 processes per agent, and the CPU of scraping each second.

    The CPU is measured over `--metric-pairs` pairs of windows, each an unscraped window
    then a scraped one of `window / pairs` seconds: on a shared machine the other jobs'
    load drifts, and windows side by side see the same drift. Printed: the sums over
    every window of each kind, and the median of the pairs' differences."""
    per_agent = 10
    want = per_agent * bench.ns.agents
    _, missing, in_status = bench.scale_round(per_agent)
    if missing or in_status is None:
        return [f"(e) skipped: {want} processes were not all RUNNING within {PHASE_DEADLINE:g} s"]
    url = bench.metrics_url()
    first, size = scrape_seconds(url)
    time.sleep(2)
    times = [scrape_seconds(url)[0] for _ in range(bench.ns.scrapes)]
    time.sleep(2)
    pid = [controller.pid]
    pairs = max(1, bench.ns.metric_pairs)
    span = window / pairs
    quiet_cpu = scraped_cpu = quiet_wall = scraped_wall = 0.0
    costs = []
    for _ in range(pairs):
        cpu0, wall0 = bench.cpu_seconds(pid), time.monotonic()
        time.sleep(span)
        quiet = (bench.cpu_seconds(pid) - cpu0, time.monotonic() - wall0)
        cpu0, wall0 = bench.cpu_seconds(pid), time.monotonic()
        tick = wall0
        while time.monotonic() - wall0 < span:
            scrape_seconds(url)
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))
        scraped = (bench.cpu_seconds(pid) - cpu0, time.monotonic() - wall0)
        quiet_cpu, quiet_wall = quiet_cpu + quiet[0], quiet_wall + quiet[1]
        scraped_cpu, scraped_wall = scraped_cpu + scraped[0], scraped_wall + scraped[1]
        costs.append((scraped[0] / scraped[1] - quiet[0] / quiet[1]) * 100)
    quiet_rate = quiet_cpu / quiet_wall * 100
    scraped_rate = scraped_cpu / scraped_wall * 100
    if times:
        timed = (
            f"then median {fmt_ms(statistics.median(times))}, "
            f"p99 {fmt_ms(percentile(times, 0.99))} ({len(times)} scrapes)"
        )
    else:
        timed = "no timed scrapes (--scrapes 0): no median, no p99"
    return [
        f"(e) /metrics with {bench.ns.agents} agents and {want} processes ({size / 2**20:.1f} MiB "
        f"page): first scrape {fmt_ms(first)}, {timed}",
        f"    controller CPU over {window:.0f} s each, agents heartbeating, in {pairs} pairs of "
        f"windows: {quiet_rate:.1f} % unscraped, {scraped_rate:.1f} % scraped every second "
        f"(the scrapes cost {scraped_rate - quiet_rate:.1f} %; median of the pairs "
        f"{statistics.median(costs):.1f} %: {', '.join(f'{c:.1f}' for c in costs)})",
    ]


def heartbeat_interval(agents: int) -> float:
    """The heartbeat interval the controller tells `agents` agents (its --agent-timeout here)."""
    settings = ControllerSettings()
    cadence = Cadence(settings.heartbeat_interval, AGENT_TIMEOUT, settings.max_heartbeats)
    return cadence.interval(agents)


def fmt_ms(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds * 1000:.0f} ms"


def fmt_s(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.2f} s"


def storm_line(name: str, storm: dict[str, Any]) -> str:
    return (
        f"    {name}: welcomed in {fmt_s(storm['welcomed'])}, all applied their Assignment "
        f"in {fmt_s(storm['assigned'])} (median agent {fmt_s(storm['assigned_median'])}); "
        f"failed attempts {storm['failures']}, never got an Assignment {storm['missing']}; "
        f"CPU over it: the server {storm['cpu']:.1f} s, the simulating workers "
        f"{storm['workers_cpu']:.1f} s"
        + "".join(f"\n        {n} x {error}" for error, n in storm["errors"].most_common(3))
    )


def established(pid: int) -> int:
    """TCP connections of `pid` that are established (one per agent channel)."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)


def measure_baseline(bench: Bench) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(a) and (d) against the bare AgentService, then the workers' agents redialed at
    the controller's address (not dialing yet) and the bare server stopped."""
    address, server = bench.start_baseline()
    bench.start_workers(address)
    connect = bench.storm(reconnect=False, server=server)
    connections = established(server)
    time.sleep(3)  # as the controller's storms are apart: the tail passes
    reconnect = bench.storm(reconnect=True, server=server)
    bench.ask("redial", bench.address, timeout=60)
    bench.stop_baseline()
    return connect, reconnect, f"{connections} at the bare gRPC baseline's server"


def measure_rounds(bench: Bench, rounds: int) -> list[str]:
    """Scale 1 -> 2 -> 1 `rounds` times; the printed lines of (b)."""
    med = statistics.median
    agents = bench.ns.agents
    samples: dict[int, list[float]] = {2: [], 1: []}
    last: dict[int, list[float]] = {2: [], 1: []}
    status: dict[int, list[float | None]] = {2: [], 1: []}
    missed = 0
    done = 0
    for _ in range(rounds):
        for count in (2, 1):
            latencies, missing, in_status = bench.scale_round(count)
            samples[count] += latencies
            last[count].append(max(latencies) if not missing else float("inf"))
            status[count].append(in_status)
            missed += missing
        done += 1
        if missed:
            break  # a saturated controller: further rounds only repeat the timeout
    lines = [f"(b) Scale each 1 -> 2 -> 1 ({agents} <-> {2 * agents} processes), {done} rounds"]
    for count, label in ((2, "1 -> 2"), (1, "2 -> 1")):
        got = samples[count]
        reached = [t for t in status[count] if t is not None]
        in_status = med(reached) if len(reached) == len(status[count]) else None
        if got:
            lines.append(
                f"    {label}: Scale call -> agent has it: median {fmt_ms(med(got))}, "
                f"p99 {fmt_ms(percentile(got, 0.99))}, max {fmt_ms(max(got))} "
                f"({len(got)} samples); last agent (median of rounds) "
                f"{fmt_ms(med(last[count]) if med(last[count]) != float('inf') else None)}; "
                f"all RUNNING in Status {fmt_ms(in_status)}"
            )
        else:
            lines.append(f"    {label}: no agent received it within {PHASE_DEADLINE:g} s")
    lines.append(f"    agent assignments not received within {PHASE_DEADLINE:g} s: {missed}")
    return lines


def measure_idle(
    bench: Bench, controller: psutil.Process, worker_pids: list[int], rss_connected: float
) -> list[str]:
    """The controller's CPU and RSS over `--idle-seconds` of heartbeats only."""
    agents = bench.ns.agents
    cpu0, wcpu0 = bench.cpu_seconds([controller.pid]), bench.cpu_seconds(worker_pids)
    wall0 = time.monotonic()
    time.sleep(bench.ns.idle_seconds)  # the idle window itself: agents only heartbeat
    idle_wall = time.monotonic() - wall0
    idle_cpu = (bench.cpu_seconds([controller.pid]) - cpu0) / idle_wall * 100
    worker_cpu = (bench.cpu_seconds(worker_pids) - wcpu0) / idle_wall * 100
    rss_idle = controller.memory_info().rss / 2**20
    return [
        f"    controller idle, {agents} agents heartbeating, over {idle_wall:.0f} s: "
        f"CPU {idle_cpu:.0f} %, RSS {rss_idle:.1f} MiB (after the storm {rss_connected:.1f} MiB)",
        f"    simulating workers meanwhile: CPU {worker_cpu:.0f} % (together)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="processes simulating agents")
    parser.add_argument("--per-channel", type=int, default=1, help="agents sharing a channel")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--scrapes", type=int, default=50, help="timed scrapes of /metrics")
    parser.add_argument(
        "--metric-pairs", type=int, default=3,
        help="pairs of unscraped and scraped windows the --idle-seconds of (e) are cut into",
    )  # fmt: skip
    parser.add_argument("--log-level", default="WARNING", help="the controller's log level")
    parser.add_argument(
        "--storms-only", action="store_true",
        help="only (a) and (d): the connect and reconnect storms, nothing between them",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", action=argparse.BooleanOptionalAction, default=True,
        help="first (a) and (d) against a bare gRPC AgentService (default: on)",
    )  # fmt: skip
    ns = parser.parse_args()
    raise_fd_limit(ns.agents * 2 + 1024)

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stack-many-agents-") as tmp:
        bench = Bench(ns, Path(tmp))
        try:
            base_a = base_d = None
            base_connections = "no baseline run"
            if ns.baseline:
                base_a, base_d, base_connections = measure_baseline(bench)
            bench.start_controller()
            assert bench.controller is not None
            controller = psutil.Process(bench.controller.pid)
            bench.admin().Apply(admin_pb2.ApplyRequest(filename="bench.toml", content=STACK_FILE))
            if not bench.workers:
                bench.start_workers(bench.address)
            worker_pids = bench.worker_pids()

            lines.append("(a) connect storm")
            if base_a is not None:
                lines.append(storm_line("bare gRPC baseline", base_a))
            lines.append(storm_line("controller", bench.storm(False, controller.pid)))
            settled = True
            try:
                poll(lambda: bench.ready_agents() == ns.agents, PHASE_DEADLINE, 0.1, "agents ready")
                poll(lambda: bench.running() == ns.agents, PHASE_DEADLINE, 0.1, "agents running")
            except TimeoutError:
                settled = False
                lines.append(
                    f"    {PHASE_DEADLINE:g} s after the storm the controller shows "
                    f"{bench.ready_agents()} of {ns.agents} agents ready and {bench.running()} "
                    "processes RUNNING (-1: it did not answer within 5 s)"
                )
            heartbeat = heartbeat_interval(ns.agents)
            lines.insert(
                0,
                f"{ns.agents} simulated agents in {ns.workers} processes, {ns.per_channel} "
                f"agent(s) per gRPC channel; TCP connections established after the storm: "
                f"{established(controller.pid)} at the controller, {base_connections}; "
                "heartbeat at the interval the controller tells (its default: 2 s up to "
                f"1,000 agents, agents / 500 beyond: {heartbeat:g} s; the baseline tells "
                f"{heartbeat:g} s from the start)",
            )
            rss_connected = controller.memory_info().rss / 2**20
            time.sleep(3)  # let the storm's tail pass

            skipped = "--storms-only" if ns.storms_only else "the agents never all settled"
            if settled and not ns.storms_only:
                cpu0, wall0 = bench.cpu_seconds([controller.pid]), time.monotonic()
                lines += measure_rounds(bench, ns.rounds)
                busy_wall = time.monotonic() - wall0
                busy_cpu = (bench.cpu_seconds([controller.pid]) - cpu0) / busy_wall * 100
                lines.append(
                    f"(c) controller CPU over (b): {busy_cpu:.0f} % of one core ({busy_wall:.1f} s)"
                )
                time.sleep(3)
            else:
                lines.append(f"(b) skipped: {skipped}")
                lines.append("(c)")

            if not ns.storms_only:
                lines += measure_idle(bench, controller, worker_pids, rss_connected)

            lines.append("(d) reconnect storm")
            if base_d is not None:
                lines.append(storm_line("bare gRPC baseline", base_d))
            if settled:
                lines.append(storm_line("controller", bench.storm(True, controller.pid)))
            else:
                lines.append("    controller: skipped, the agents never all settled")
            if settled and not ns.storms_only:
                time.sleep(3)
                lines += measure_metrics(bench, controller, ns.idle_seconds)
            else:
                lines.append(f"(e) skipped: {skipped}")
            lines.append(
                f"    controller peak RSS over the whole run {peak_rss(controller.pid):.1f} MiB"
            )
        finally:
            bench.close()
    lines.append(f"    machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
