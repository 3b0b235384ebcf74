"""Controller failover on etcd: kill -9 of the leader to the first write acknowledged by the next.

Run: .venv/bin/python bench/failover.py [--trials 10] [--controllers 3] [--lease-ttl 5]
                                         [--pause]

One etcd member and N controllers on 127.0.0.1 (the default lease TTL unless
told otherwise), one agent running 4 workers. Each trial kills the leader with
SIGKILL and at once starts sending a Scale (of a stopped watcher, so no process
churns) through a client that knows every controller, until one is
acknowledged; the time between the two is the failover. The killed controller
is started again before the next trial. With --pause the leader is SIGSTOPped
instead (a hung leader: nothing refuses, its lease must run out) and continued
after the write. Prints each trial, the median and the max, and whether any
worker was restarted in any trial. Asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.cli.client import ClientSettings, CommandError, StackClient
from tests.support.etcd import etcd_cluster
from tests.support.ha import HaCluster
from tests.support.processes import become_subreaper, worker_processes
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml

WORKERS = 4


def stack_file(tag: str) -> str:
    knob = watcher_toml("knob", tag, numprocesses=1, autostart=False)
    return watcher_toml("w", tag, numprocesses=WORKERS) + knob


def worker_pids(tag: str) -> set[int]:
    return {p.pid for p in worker_processes(tag)}  # knob is stopped: these are w's


def acknowledged_write(client: StackClient, count: int, deadline: float) -> float:
    """Send Scale until a controller acknowledges it; the monotonic time it did."""
    while time.monotonic() < deadline:
        try:
            client.scale("knob", count, relative=False)
            return time.monotonic()
        except CommandError:
            time.sleep(0.02)
    raise TimeoutError("no controller acknowledged a write")


def trial(cluster: HaCluster, count: int, pause: bool) -> tuple[float, bool]:
    """One failover: (seconds from the kill to an acknowledged write, workers untouched)."""
    before = worker_pids(cluster.tag)
    leader = cluster.leader()
    daemon = cluster.daemon_at(leader)
    assert daemon.proc is not None
    settings = ClientSettings(address=",".join(cluster.addresses), timeout=1.0)
    with StackClient(settings) as client:
        killed = time.monotonic()
        if pause:
            daemon.proc.send_signal(signal.SIGSTOP)
        else:
            daemon.kill9()
        try:
            written = acknowledged_write(client, count, killed + 60)
        finally:
            if pause:
                daemon.proc.send_signal(signal.SIGCONT)  # it finds itself fenced: follows
    if not pause:
        daemon.start()  # back as a follower for the next trial
    new = cluster.wait_leader(30)
    wait_for(lambda: cluster.agent_state() == "ready", 30, "the agent on the new leader")
    wait_for(lambda: len(cluster.running_pids("w")) == WORKERS, 30, "the workers in status")
    cluster.wait_following(new)
    assert new != leader
    return written - killed, worker_pids(cluster.tag) == before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument("--pause", action="store_true", help="SIGSTOP the leader, not kill -9")
    args = parser.parse_args()
    become_subreaper()
    with etcd_cluster(1) as etcd, tempfile.TemporaryDirectory(prefix="stack-failover-") as root:
        cluster = HaCluster(Path(root), etcd, args.controllers, lease_ttl=args.lease_ttl)
        try:
            cluster.start()
            cluster.apply(stack_file(cluster.tag))
            wait_for(lambda: len(worker_pids(cluster.tag)) == WORKERS, 30, "the workers")
            cluster.wait_following(cluster.leader())
            times, untouched = [], True
            for number in range(1, args.trials + 1):
                seconds, same = trial(cluster, 2 + number % 2, args.pause)
                times.append(seconds)
                untouched = untouched and same
                state = "workers untouched" if same else "A WORKER WAS RESTARTED"
                print(f"trial {number:2d}: {seconds * 1000:7.0f} ms  ({state})", flush=True)
        except BaseException:
            print(cluster.logs(), file=sys.stderr)
            raise
        finally:
            cluster.close()
    how = "SIGSTOP" if args.pause else "kill -9"
    print(f"{how} of the leader; lease TTL {args.lease_ttl:g} s, {args.controllers} controllers")
    median, worst = statistics.median(times) * 1000, max(times) * 1000
    print(f"failover median {median:.0f} ms, max {worst:.0f} ms")
    print("no worker restarted in any trial" if untouched else "SOME WORKER WAS RESTARTED")


if __name__ == "__main__":
    main()
