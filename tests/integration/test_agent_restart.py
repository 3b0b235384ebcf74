"""The agent restarts, upgrades and crashes while every worker keeps running and serving.

A real controller and agent (cluster.py); two workers share a socket that a client
requests in a loop, and print a numbered line every 10 ms. Whatever happens to the
agent (SIGHUP re-executions, kill -9 and a new agent, a broken new program), no
request fails, the workers keep their pids and every numbered line reaches the log.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest

from stack.agent.output import parse_line
from stack.security import certs
from stack.security.layout import CertDir, Role
from stack.v1 import admin_pb2, types_pb2
from tests.support.cluster import Cluster
from tests.support.processes import AGENT, PYTHON, ROOT, ended, stack_env, worker_processes
from tests.support.wait import wait_for
from tests.support.workers import fetch, socket_stack, watcher_toml

TICK = "0.01"
"""Seconds between the workers' numbered lines."""


@contextlib.contextmanager
def in_thread(run: Callable[[], None], stop: threading.Event, name: str) -> Iterator[None]:
    """Run `run` in a thread meanwhile; then set `stop` and wait for it to end."""
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)


@dataclass
class Load:
    """A client requesting the shared socket in a loop, from a thread."""

    port: int
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                fetch(self.port)
                self.answers += 1
            except OSError as exc:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
            time.sleep(0.002)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        with in_thread(self._run, self._stop, "client load"):
            yield self


def serving_stack(cluster: Cluster) -> None:
    cluster.apply(
        socket_stack(cluster.tag, "--serve-fd", "$(circus.sockets.web)", "--tick", TICK,
                     numprocesses=2, graceful_timeout=5)
    )  # fmt: skip


def agent_info(cluster: Cluster) -> admin_pb2.AgentInfo | None:
    try:
        reply = cluster.admin().Agents(admin_pb2.AgentsRequest(), timeout=2)
    except grpc.RpcError:
        return None
    return next((a for a in reply.agents if a.host_id == "h1"), None)


@dataclass
class Watch:
    """What the controller shows of the agent and its workers, polled from a thread:
    each agent state and each process state `status` gave."""

    cluster: Cluster
    agent_states: set[str] = field(default_factory=set)
    process_states: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            info = agent_info(self.cluster)
            if info is not None:
                self.agent_states.add(info.state)
            with contextlib.suppress(grpc.RpcError):
                self.process_states.update(p.state for p in self.cluster.processes("w"))
            time.sleep(0.02)

    @contextlib.contextmanager
    def running(self) -> Iterator[Watch]:
        with in_thread(self._run, self._stop, "controller watch"):
            yield self


def hup_and_wait(cluster: Cluster) -> float:
    """SIGHUP the agent and wait until its new image is connected; the re-exec time."""
    before = agent_info(cluster)
    assert before is not None
    os.kill(cluster.agent.pid, signal.SIGHUP)

    def reexecuted() -> float:
        info = agent_info(cluster)
        if info and info.state == "ready" and info.reexecuted_at > before.reexecuted_at:
            return info.reexecuted_at
        return 0.0

    try:
        return wait_for(reexecuted, 20, "the agent to re-execute and reconnect")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.agent.output()[-3000:]}") from None


def ticks(cluster: Cluster) -> dict[int, list[int]]:
    """wid -> the numbers of the "tick N" lines `stackctl logs` has, in order."""
    reply = cluster.stackctl("-o", "json", "logs", "w", "-n", "10000", "--stream", "out")
    assert reply.code == 0, reply
    found: dict[int, list[int]] = {}
    for line in reply.json()["lines"]:
        if line["text"].startswith("tick "):
            found.setdefault(int(line["wid"]), []).append(int(line["text"].split()[1]))
    return found


def lines_up_to(cluster: Cluster, at_least: int) -> dict[int, list[int]]:
    """ticks() once both workers' lines reach number `at_least`."""

    def enough() -> dict[int, list[int]] | None:
        found = ticks(cluster)
        return found if len(found) == 2 and all(n[-1] >= at_least for n in found.values()) else None

    return wait_for(enough, 20, f"lines numbered up to {at_least}", interval=0.2)


def assert_every_line_is_there(cluster: Cluster, at_least: int) -> None:
    """Every numbered line of each worker, from 0 on, with none missing or repeated."""
    found = lines_up_to(cluster, at_least)
    for wid, numbers in found.items():
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        assert not missing, f"w[{wid}] lines missing: {missing[:20]} ({len(missing)})"
        assert numbers == list(range(numbers[-1] + 1)), f"w[{wid}] lines out of order or twice"


def last_tick(cluster: Cluster) -> int:
    return max((numbers[-1] for numbers in ticks(cluster).values()), default=0)


def events(cluster: Cluster, kind: str, wid: int | None = None) -> list[types_pb2.Event]:
    """The controller's events of `kind` (of worker `wid`), once there is one."""

    def found() -> list[types_pb2.Event]:
        stream = cluster.admin().Events(admin_pb2.EventsRequest(), timeout=5)
        return [e for e in stream if e.kind == kind and wid in (None, e.wid)]

    return wait_for(found, 15, f"a {kind} event")


def start(cluster: Cluster) -> tuple[int, dict[int, int]]:
    serving_stack(cluster)
    pids = cluster.wait_running("w", 2)
    port = cluster.socket_port()
    wait_for(lambda: last_tick(cluster) > 10, 20, "numbered lines", interval=0.2)
    return port, pids


def same_workers(cluster: Cluster, pids: dict[int, int]) -> dict[int, int]:
    return wait_for(
        lambda: cluster.running_pids("w") == pids and pids, 15, "the same workers to be reported"
    )


def test_three_hups_in_a_row_keep_the_agent_the_workers_every_request_and_every_line(
    cluster: Cluster,
) -> None:
    port, pids = start(cluster)
    agent_pid = cluster.agent.pid
    with Load(port).running() as load, Watch(cluster).running() as watch:
        for _ in range(3):
            hup_and_wait(cluster)
            assert cluster.agent.alive() and cluster.agent.pid == agent_pid
            same_workers(cluster, pids)
        after = last_tick(cluster)
        assert_every_line_is_there(cluster, after + 50)
    assert load.failures == [], f"{len(load.failures)} of {load.answers} requests failed"
    assert load.answers > 100
    assert {p.pid for p in worker_processes(cluster.tag)} == set(pids.values())
    # The controller was told each time: the host never went down, its workers never
    # showed as unknown, and each reload is one agent_reloaded event.
    assert "down" not in watch.agent_states, watch.agent_states
    assert watch.process_states == {types_pb2.PROCESS_STATE_RUNNING}, watch.process_states
    reloaded = wait_for(lambda: len(r := events(cluster, "agent_reloaded")) == 3 and r, 15,
                        "three agent_reloaded events")  # fmt: skip
    assert all("2 workers kept" in event.message for event in reloaded)
    kinds = [e.kind for e in cluster.admin().Events(admin_pb2.EventsRequest(), timeout=5)]
    assert kinds.count("agent_down") == 0 and kinds.count("agent_up") == 1, kinds
    # SIGTERM keeps its meaning after re-executions: every worker stops, then the agent.
    assert cluster.agent.stop() == 0
    wait_for(lambda: not worker_processes(cluster.tag), 10, "the workers to stop")


def test_kill_9_then_a_new_agent_3_s_later_adopts_every_worker_and_every_line(
    cluster: Cluster,
) -> None:
    port, pids = start(cluster)
    with Load(port).running() as load:
        cluster.agent.kill9()
        time.sleep(3)  # the agent is away for 3 s: the workers serve and write on
        assert {p.pid for p in worker_processes(cluster.tag)} == set(pids.values())
        cluster.start_agent()
        same_workers(cluster, pids)
        assert_every_line_is_there(cluster, last_tick(cluster) + 50)
    assert load.failures == [], f"{len(load.failures)} of {load.answers} requests failed"
    assert load.answers > 100
    statuses = {p.wid: p for p in cluster.processes("w")}
    assert all(p.restarts == 0 for p in statuses.values())
    (restarted,) = events(cluster, "agent_restarted")
    assert "adopted 2 of 2 workers" in restarted.message
    assert cluster.agent.stop() == 0
    wait_for(lambda: not worker_processes(cluster.tag), 10, "the adopted workers to stop")


def numbered_lines_in_files(logs: Path, name: str) -> dict[int, list[int]]:
    """wid -> the numbers of the "tick N" lines of file `name` and its backups, oldest
    first (what `stackctl logs` reads, without its cap of lines)."""
    files = sorted(logs.glob(f"{name}.*"), key=lambda path: -int(path.suffix[1:]))
    found: dict[int, list[int]] = {}
    for path in [*files, logs / name]:
        for raw in path.read_bytes().splitlines():
            line = parse_line(raw, "w", "out")
            words = line.text.split() if line else []
            numbered = line is not None and len(words) == 2 and words[1].isdigit()
            assert line is not None and numbered, f"a broken line in {path.name}: {raw[:200]!r}"
            found.setdefault(line.wid, []).append(int(words[1]))
    return found


def test_kill_9_at_random_instants_of_fast_output_loses_no_line_and_writes_none_twice(
    cluster: Cluster,
) -> None:
    """Two workers print numbered lines as fast as a 1 ms tick lets them (bursts of 5,
    each line in two writes: the agent also sees partial lines), the agent is killed
    at a random instant 12 times, a new one started each time: every line is in the
    files exactly once, in order. The files rotate on the way (128 KiB each)."""
    stream = {"max_bytes": 128 * 1024, "backup_count": 1000}
    cluster.apply(watcher_toml("w", cluster.tag, "--tick", "0.001", "--burst", "5", "--split",
                               numprocesses=2, stdout_stream=stream))  # fmt: skip
    pids = cluster.wait_running("w", 2)
    logs = cluster.root / "agent" / "logs"
    rounds = random.Random()

    def written() -> int:
        count = 0
        for path in logs.glob("w.out.log*"):
            with contextlib.suppress(FileNotFoundError):  # rotated on since the listing
                count += path.read_bytes().count(b"\n")
        return count

    def more_lines(count: int) -> None:
        target = written() + count
        wait_for(lambda: written() >= target, 20, f"{count} more lines in the files")

    for _ in range(12):
        more_lines(rounds.randrange(3000))  # the random instant of the kill, in lines
        cluster.agent.kill9()
        cluster.start_agent()
        same_workers(cluster, pids)
    more_lines(500)  # more lines, through the last agent
    assert cluster.agent.stop() == 0  # the workers stop; what their pipes held is written
    found = numbered_lines_in_files(logs, "w.out.log")
    assert set(found) == {1, 2}
    for wid, numbers in found.items():
        assert len(numbers) > 1000, f"w[{wid}] printed only {len(numbers)} lines"
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        assert not missing, f"w[{wid}] lines missing: {missing[:20]} ({len(missing)})"
        twice = sorted(n for n, times in collections.Counter(numbers).items() if times > 1)
        assert not twice, f"w[{wid}] lines written twice: {twice[:20]} ({len(twice)})"
        assert numbers == list(range(numbers[-1] + 1)), f"w[{wid}] lines out of order"


def test_a_worker_killed_while_the_agent_is_down_is_respawned_when_it_comes_back(
    cluster: Cluster,
) -> None:
    port, pids = start(cluster)
    started = {p.wid: p.started_at for p in cluster.processes("w")}
    cluster.agent.kill9()
    os.kill(pids[2], signal.SIGKILL)
    # Its parent now (this test process, the subreaper) reaps it, as init would: its exit
    # status is then gone for good.
    wait_for(lambda: os.waitpid(pids[2], os.WNOHANG)[0] == pids[2], 5, "w[2] reaped")
    began = time.time()
    cluster.start_agent()

    def respawned() -> types_pb2.ProcessStatus | None:
        found = {p.wid: p for p in cluster.processes("w")}.get(2)
        ok = found and found.state == types_pb2.PROCESS_STATE_RUNNING and found.pid != pids[2]
        return found if ok else None

    w2 = wait_for(respawned, 15, "w[2] respawned")
    assert w2.restarts == 1
    assert w2.last_exit.code_unknown
    assert w2.last_exit.message == "exited while the agent was down"
    w1 = {p.wid: p for p in cluster.processes("w")}[1]
    assert (w1.pid, w1.restarts, w1.started_at) == (pids[1], 0, started[1])
    (exit_event,) = events(cluster, "exit", wid=2)
    assert f"pid {pids[2]} exited while the agent was down" in exit_event.message
    spawn = events(cluster, "spawn", wid=2)[-1]
    # Respawned as the new agent started (its interpreter's start-up included), and
    # within 1 s of the start of its work (its adoption of what runs).
    assert spawn.at - began < 5.0, spawn.at - began
    (restarted,) = events(cluster, "agent_restarted")
    assert spawn.at - restarted.at < 1.0, (restarted.at, spawn.at)
    shown = cluster.stackctl("status", "w", "-o", "wide", check=True).out
    assert "exit status unknown (crashed, exited while the agent was down)" in shown
    assert fetch(port) in {pids[1], w2.pid}


def test_a_new_program_that_cannot_start_leaves_the_old_agent_running(
    tmp_path: Path,
) -> None:
    entry = tmp_path / "agent_entry.py"
    entry.write_text("from stack.agent.main import main\n\nmain()\n")
    cluster = Cluster(tmp_path / "stack")
    # The agent's command line is this entry point: replacing it is an upgrade.
    assert cluster.agent.argv[:3] == [PYTHON, "-m", "stack.agent.main"]
    cluster.agent.argv[1:3] = [str(entry)]
    try:
        cluster.start()
        port, pids = start(cluster)
        agent_pid = cluster.agent.pid
        entry.write_text("import stack_agent_no_such_module\n")
        with Load(port).running() as load:
            os.kill(agent_pid, signal.SIGHUP)
            failed = events(cluster, "reload_failed")
            assert cluster.agent.alive() and cluster.agent.pid == agent_pid
            same_workers(cluster, pids)
            info = agent_info(cluster)
            assert info is not None and info.state == "ready" and info.reexecuted_at == 0
        assert load.failures == []
        assert "No module named 'stack_agent_no_such_module'" in failed[0].message
        assert failed[0].message.startswith("the new program failed its check (exit code 1)")
        said = [line for line in cluster.agent.output().splitlines() if "reload refused" in line]
        assert len(said) == 1, said
        # Fixed: the next reload goes through, and the workers still stay.
        entry.write_text("from stack.agent.main import main\n\nmain()\n")
        hup_and_wait(cluster)
        assert cluster.agent.pid == agent_pid
        same_workers(cluster, pids)
    finally:
        cluster.close()


def test_a_reload_reads_the_flags_file_again_and_refuses_a_broken_one(tmp_path: Path) -> None:
    flags = tmp_path / "agent.flags"
    flags.write_text("# labels of this host\n--label zone=a\n")
    cluster = Cluster(tmp_path / "stack")
    cluster.agent.argv += ["--flags-file", str(flags)]
    try:
        cluster.start()
        info = agent_info(cluster)
        assert info is not None and dict(info.labels) == {"zone": "a"}
        flags.write_text("--label zone=b\n--label role=web\n")
        hup_and_wait(cluster)
        info = agent_info(cluster)
        assert info is not None and dict(info.labels) == {"zone": "b", "role": "web"}
        flags.write_text("--label zone=c\n--ship-rate lots\n")
        os.kill(cluster.agent.pid, signal.SIGHUP)
        (failed,) = events(cluster, "reload_failed")
        assert f"{flags}: line 2: argument --ship-rate: invalid int value: 'lots'" in failed.message
        info = agent_info(cluster)
        assert info is not None and dict(info.labels) == {"zone": "b", "role": "web"}
    finally:
        cluster.close()


def test_a_sigterm_during_the_exec_is_kept_for_the_new_image_which_stops_every_worker(
    cluster: Cluster,
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    pids = cluster.wait_running("w", 2)
    os.kill(cluster.agent.pid, signal.SIGHUP)
    # Committed to the exec: from here a TERM waits for the new image's handlers.
    wait_for(lambda: "re-executing" in cluster.agent.output(), 30, "the re-execution")
    os.kill(cluster.agent.pid, signal.SIGTERM)
    assert cluster.agent.proc is not None
    assert cluster.agent.proc.wait(30) == 0, cluster.agent.output()[-3000:]
    text = cluster.agent.output()
    assert "agent_reloaded" in text, "the new image took over, then stopped"
    wait_for(lambda: not worker_processes(cluster.tag), 10, "every worker stopped")
    assert all(f"pid {pid} stopped" in text for pid in pids.values())


CONTROL_BITS = {signal.SIGHUP: "HUP", signal.SIGINT: "INT", signal.SIGTERM: "TERM"}


def blocked_signals(pid: int, tid: int | None = None) -> set[str]:
    """Which of HUP, INT and TERM the thread `tid` of `pid` (its main thread) blocks."""
    status = Path(f"/proc/{pid}/task/{tid or pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    mask = int(line.split()[1], 16)
    return {name for signum, name in CONTROL_BITS.items() if mask & (1 << (signum - 1))}


def test_no_thread_of_the_agent_takes_hup_term_or_int_and_no_worker_blocks_them(
    cluster: Cluster,
) -> None:
    """A thread that does not block them would take them from the agent's signalfd:
    one of grpcio's threads once took a TERM sent during a re-execution, and it was lost.
    The agent runs no library's threads now (its stream is h2_stream's), but the ones it
    starts itself (helper pools, a rare blocking call) must block them too: every thread
    there is is checked, in both images."""
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    pids = cluster.wait_running("w", 2)
    agent = cluster.agent.pid
    for _ in range(2):  # the first image, then one started by a re-execution
        threads = [int(tid) for tid in os.listdir(f"/proc/{agent}/task")]
        assert agent in threads
        for tid in threads:
            assert blocked_signals(agent, tid) == {"HUP", "INT", "TERM"}, f"thread {tid}"
        for wid, pid in pids.items():
            assert blocked_signals(pid) == set(), f"w[{wid}] pid {pid} blocks signals"
        hup_and_wait(cluster)
        same_workers(cluster, pids)
    # A worker spawned by the new image does not inherit the agent's mask either.
    cluster.stackctl("scale", "w", "3", check=True)
    new = set(cluster.wait_running("w", 3).values()) - set(pids.values())
    assert [blocked_signals(pid) for pid in new] == [set()]


def _check_child(agent: int) -> bool:
    for path in Path(f"/proc/{agent}/task").glob("*/children"):
        for pid in path.read_text().split():
            with contextlib.suppress(OSError):
                if b"--check" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    return True
    return False


def _execed(agent: int) -> bool:
    return b"STACK_AGENT_HANDOVER=" in Path(f"/proc/{agent}/environ").read_bytes()


STAGES = {
    # stage: (reached, still there once the agent is paused)
    "checking": (
        lambda c: _check_child(c.agent.pid),
        lambda c: "re-executing" not in c.agent.output(),
    ),
    "committed": (
        lambda c: "re-executing" in c.agent.output(),
        lambda c: not _execed(c.agent.pid),
    ),
    "execed": (
        lambda c: _execed(c.agent.pid),
        lambda c: "agent_reloaded" not in c.agent.output(),
    ),
    "taken over": (lambda c: "agent_reloaded" in c.agent.output(), lambda c: True),
}
"""The points of a re-execution: the new program's check runs; the agent committed to the
exec (its old image winds down, gRPC's threads still run); the new image was exec'd and
starts (imports, nothing listens yet); the new image took over the workers."""


def signal_at(cluster: Cluster, stage: str, signum: int) -> None:
    """HUP the agent and send `signum` when the reload is at `stage`: the agent is paused
    (SIGSTOP) the moment the stage is seen, gets the signal, and goes on (SIGCONT)."""
    reached, still_there = STAGES[stage]
    agent = cluster.agent.pid
    os.kill(agent, signal.SIGHUP)
    wait_for(lambda: reached(cluster), 60, f"the reload to reach {stage}", interval=0.001)
    os.kill(agent, signal.SIGSTOP)
    try:
        assert still_there(cluster), f"the agent was paused past {stage}"
        os.kill(agent, signum)
    finally:
        os.kill(agent, signal.SIGCONT)


@pytest.mark.parametrize(
    ("signum", "stage"),
    [(signal.SIGTERM, stage) for stage in STAGES]
    + [(signal.SIGINT, "committed"), (signal.SIGINT, "execed")],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else None,
)
def test_a_stop_signal_at_any_point_of_a_reload_stops_every_worker_once_and_the_agent(
    cluster: Cluster, signum: int, stage: str
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    pids = cluster.wait_running("w", 2)
    signal_at(cluster, stage, signum)
    assert cluster.agent.proc is not None
    assert cluster.agent.proc.wait(60) == 0, cluster.agent.output()[-3000:]
    text = cluster.agent.output()
    assert text.count("stopping: stopping every worker") == 1, text[-3000:]
    for pid in pids.values():
        assert text.count(f"pid {pid} stopped") == 1, f"pid {pid}: {text[-3000:]}"
    assert not worker_processes(cluster.tag)
    # A stop asked for before the agent committed to the exec wins: it does not exec.
    assert ("agent_reloaded" in text) == (stage != "checking"), text[-3000:]


@pytest.mark.parametrize("stage", ["checking", "committed"])
def test_a_second_hup_during_a_reload_makes_the_new_image_reload_again(
    cluster: Cluster, stage: str
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    pids = cluster.wait_running("w", 2)
    agent = cluster.agent.pid
    signal_at(cluster, stage, signal.SIGHUP)
    wait_for(lambda: cluster.agent.output().count("agent_reloaded") == 2, 60, "a second reload")
    assert cluster.agent.pid == agent and cluster.agent.alive()
    same_workers(cluster, pids)
    assert cluster.agent.stop() == 0


def _loads_cryptography(argv: list[str]) -> bool:
    """Whether `argv` (a Python command line) imports cryptography; it must succeed."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True, text=True, env=stack_env(), cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return any(line.split("|")[-1].strip().startswith("cryptography") for line in
               proc.stderr.splitlines())  # fmt: skip


def test_neither_the_agent_nor_its_reload_check_loads_cryptography_even_with_tls_files(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Importing cryptography costs each reload 50-70 ms twice (the check, the new image),
    and the agent about 10 MiB of RSS: its TLS files are checked by a child process."""
    agent = cluster.agent.pid
    assert "cryptography" not in Path(f"/proc/{agent}/maps").read_text()
    assert "libcrypto.so" not in Path(f"/proc/{agent}/maps").read_text()  # asyncio's ssl
    hup_and_wait(cluster)
    assert "cryptography" not in Path(f"/proc/{agent}/maps").read_text()
    assert cluster.agent.argv[:3] == list(AGENT)
    assert not _loads_cryptography([*cluster.agent.argv, "--check"])
    tls = tmp_path / "tls"
    certs.init_dir(tls, ["localhost"])
    certs.issue_into(tls, Role.agent, "h1")
    assert not _loads_cryptography([*cluster.agent.argv, "--tls-dir", str(tls), "--check"])
    # The child that checks them does import it (the measure above can see an import).
    layout = CertDir(tls)
    cert, key = layout.pair(Role.agent, "h1")
    probe = [PYTHON, "-m", "stack.security.tls_probe", "check", "agent", str(layout.ca_cert),
             str(cert), str(key)]  # fmt: skip
    assert _loads_cryptography(probe)


def _phase(cluster: Cluster) -> int:
    return next(w.phase for w in cluster.status().watchers if w.name == "w")


def _spawns(cluster: Cluster) -> list[types_pb2.Event]:
    return [e for e in cluster.events("spawn") if e.watcher == "w"]


def _kill9_and_restart_the_agent(cluster: Cluster) -> None:
    """kill -9 the agent, start a new one, and wait until the controller has a report the
    new agent sent 1 s (two heartbeats) after it started: whatever its restore led to
    (events of spawns included) was sent before."""
    old = cluster.agent_info().started_at
    cluster.agent.kill9()
    cluster.start_agent()
    started = wait_for(lambda: (t := cluster.agent_info().started_at) > old and t, 30, "it")
    wait_for(lambda: cluster.agent_info().last_seen > started + 1.0, 30, "a later report")


@pytest.mark.parametrize(
    ("max_retry", "phase"),
    [(1, types_pb2.WATCHER_PHASE_FLAPPING), (0, types_pb2.WATCHER_PHASE_FATAL)],
    ids=["flapping", "fatal"],
)
def test_a_slot_that_flaps_or_gave_up_stays_so_when_the_agent_is_killed_and_restarted(
    cluster: Cluster, max_retry: int, phase: int
) -> None:
    flaps = {"attempts": 2, "window": 600, "retry_in": 600, "max_retry": max_retry}
    cluster.apply(watcher_toml("w", cluster.tag, "--exit", "3", flapping=flaps))
    wait_for(lambda: _phase(cluster) == phase, 30, "the worker to flap")
    (before,) = cluster.processes("w")
    spawns = len(_spawns(cluster))
    _kill9_and_restart_the_agent(cluster)
    # Not started again: a new agent does not give a crash-looping worker a fresh budget.
    assert len(_spawns(cluster)) == spawns
    assert _phase(cluster) == phase
    (after,) = cluster.processes("w")
    assert (after.state, after.restarts) == (before.state, before.restarts)
    expected = "flapping, retry in " if phase == types_pb2.WATCHER_PHASE_FLAPPING else "fatal: "
    assert after.message.startswith(expected), after.message


def test_a_crash_looping_worker_keeps_the_starts_of_its_window_when_the_agent_crashes(
    cluster: Cluster,
) -> None:
    flaps = {"attempts": 3, "window": 600, "retry_in": 600, "max_retry": 1}
    cluster.apply(watcher_toml("w", cluster.tag, flapping=flaps))

    def killed_and_replaced(pid: int) -> int:
        os.kill(pid, signal.SIGKILL)
        return wait_for(lambda: (p := cluster.running_pids("w").get(1)) != pid and p, 30,
                        "the worker respawned")  # fmt: skip

    first = cluster.wait_running("w", 1)[1]
    second = killed_and_replaced(first)  # 2 starts in the window
    _kill9_and_restart_the_agent(cluster)
    same_workers(cluster, {1: second})
    third = killed_and_replaced(second)  # 3 starts: the budget
    os.kill(third, signal.SIGKILL)  # one more would be a 4th start within the window

    def flapped_or_respawned() -> bool:
        respawned = cluster.running_pids("w").get(1, third) != third
        return respawned or _phase(cluster) == types_pb2.WATCHER_PHASE_FLAPPING

    wait_for(flapped_or_respawned, 30, "the worker to flap (or be respawned)")
    assert _phase(cluster) == types_pb2.WATCHER_PHASE_FLAPPING, cluster.processes("w")


GRACE = 4.0
"""graceful_timeout of the stops that go on across a restart of the agent."""


def _restart(cluster: Cluster, how: str) -> None:
    if how == "reload":
        hup_and_wait(cluster)
    else:
        cluster.agent.kill9()
        cluster.start_agent()


def _killed_at_the_stop_deadline(cluster: Cluster, child: psutil.Process, asked: float) -> None:
    """`child` is SIGKILLed at the deadline of the stop of `w` asked at `asked`, not
    before, and then `w` is stopped with nothing of it left."""
    wait_for(lambda: ended(child), GRACE + 30,
             "the setsid child to be killed at the stop's deadline")  # fmt: skip
    assert time.monotonic() - asked >= GRACE, "killed before the stop's deadline"
    stopped = [types_pb2.PROCESS_STATE_STOPPED]
    wait_for(lambda: [p.state for p in cluster.processes("w")] == stopped, 30, "stopped")
    assert not worker_processes(cluster.tag)


def _the_child(cluster: Cluster) -> psutil.Process:
    """The setsid grandchild of the test's worker (worker.py --setsid-child)."""
    found = wait_for(lambda: worker_processes(f"{cluster.tag}-child"), 30, "the setsid child")
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("worker", ["exits on TERM", "ignores TERM"])
@pytest.mark.parametrize("how", ["reload", "crash"])
def test_a_graceful_stop_goes_on_across_an_agent_restart_with_its_stop_children(
    cluster: Cluster, how: str, worker: str
) -> None:
    """stop_children: the setsid child got the stop signal (it ignores it); a new agent
    (or image) still waits for it until the stop's deadline, then SIGKILLs it."""
    flags = ["--setsid-child"] + (["--ignore-term"] if worker == "ignores TERM" else [])
    cluster.apply(watcher_toml("w", cluster.tag, *flags, stop_children=True,
                               graceful_timeout=GRACE))  # fmt: skip
    (pid,) = cluster.wait_running("w", 1).values()
    child = _the_child(cluster)
    asked = time.monotonic()
    cluster.stackctl("stop", "w", check=True)
    stopping = [types_pb2.PROCESS_STATE_STOPPING]
    wait_for(lambda: [p.state for p in cluster.processes("w")] == stopping, 30, "the stop")
    if worker == "exits on TERM":
        wait_for(lambda: ended(pid), 30, "the worker to exit")
    _restart(cluster, how)
    assert child.is_running(), "the stop's deadline is not there yet"
    _killed_at_the_stop_deadline(cluster, child, asked)


def test_a_stop_is_on_disk_with_its_deadline_and_children_before_its_signal(
    cluster: Cluster,
) -> None:
    """The worker freezes its agent (SIGSTOP) when the stop signal comes, then exits: that
    agent neither reaps it nor saves anything after sending the signal, and is killed
    (kill -9) so. Its records must already hold the stop's deadline and the setsid child,
    for the next agent to kill the child at that deadline. Before, the save of the turn
    that asked for the stop ran first, without them, and the child was left for good."""
    cluster.apply(watcher_toml("w", cluster.tag, "--setsid-child", "--freeze-agent",
                               stop_children=True, graceful_timeout=GRACE))  # fmt: skip
    (pid,) = cluster.wait_running("w", 1).values()
    child = _the_child(cluster)
    asked = time.monotonic()
    cluster.stackctl("stop", "w", check=True)
    agent = psutil.Process(cluster.agent.pid)
    wait_for(lambda: agent.status() == psutil.STATUS_STOPPED, 30, "the worker to freeze the agent")
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30, "the worker's exit")
    state = json.loads((cluster.root / "agent" / "agent-state.json").read_text())
    (stopping,) = [worker["stopping"] for worker in state["workers"] if worker["pid"] == pid]
    assert [child_pid for child_pid, _ in stopping["children"]] == [child.pid]
    assert stopping["deadline"] > 0
    cluster.agent.kill9()
    cluster.start_agent()
    _killed_at_the_stop_deadline(cluster, child, asked)


@pytest.mark.parametrize("end", ["crash", "stop"])
def test_an_adopted_worker_leaves_no_orphan_when_it_exits(cluster: Cluster, end: str) -> None:
    """The setsid child of a worker adopted after kill -9 of the agent goes to init when
    the worker exits, not to the agent: it is killed all the same, as an orphan of the
    agent's own worker is."""
    cluster.apply(watcher_toml("w", cluster.tag, "--setsid-child", graceful_timeout=GRACE))
    pids = cluster.wait_running("w", 1)
    child = _the_child(cluster)
    cluster.agent.kill9()
    cluster.start_agent()
    same_workers(cluster, pids)
    if end == "crash":
        os.kill(pids[1], signal.SIGKILL)
    else:
        cluster.stackctl("stop", "w", check=True)
    wait_for(lambda: ended(child), 30,
             "the orphan to be killed")  # fmt: skip
    if end == "crash":  # respawned: the new worker's own child is spared
        wait_for(lambda: cluster.running_pids("w").get(1, pids[1]) != pids[1], 30, "respawn")
        assert _the_child(cluster).pid != child.pid
