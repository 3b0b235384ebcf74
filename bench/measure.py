"""What the bench scripts measure a process manager with, read from /proc and psutil.

Every script compares a manager against an anchor taken in the same run; the
helpers here are the one way they poll, find a manager's workers, and read its
CPU and memory, so that the figures of different scripts mean the same thing.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

SLEEP = shutil.which("sleep") or "/bin/sleep"


def poll(
    check: Callable[[], bool],
    timeout: float = 60.0,
    interval: float = 0.001,
    what: str = "condition",
) -> float:
    """Seconds until `check()` is true, polling every `interval`; TimeoutError past `timeout`."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
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


def bare_popen_loop(count: int) -> float:
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


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def idle_cpu_percent(pids: Sequence[int], seconds: float) -> list[float]:
    """CPU % of one core used by each of `pids` over the same window of `seconds`."""
    before = [cpu_seconds(pid) for pid in pids]
    start = time.perf_counter()
    time.sleep(seconds)  # the measurement window itself
    elapsed = time.perf_counter() - start
    return [(cpu_seconds(pid) - b) / elapsed * 100 for pid, b in zip(pids, before, strict=True)]


@dataclass(frozen=True)
class Memory:
    rss: float
    """Resident set size in MiB, shared library pages included."""
    uss: float
    """Memory that would be freed if the process exited, in MiB."""


def memory_of(pid: int) -> Memory:
    info = psutil.Process(pid).memory_full_info()
    return Memory(rss=info.rss / 2**20, uss=info.uss / 2**20)


def python_floor(imports: str = "") -> float:
    """RSS in MiB of this Python after `imports` ("import grpc"): where a manager starts from.
    Read from /proc/self/statm, not with psutil, whose import would add its own 1.5 MiB."""
    code = (
        f"{imports}\nimport os\n"
        "print(int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout) / 2**20


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `samples` (`fraction` 0.95 for p95)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered), max(1, math.ceil(len(ordered) * fraction))) - 1]


def memory_breakdown(pid: int) -> dict[str, float]:
    """Where a process's RSS lies, in MiB, from /proc/PID/smaps: grpcio's library, Python's,
    OpenSSL's (libcrypto, libssl), the other libraries and files, and anonymous memory
    (the heap, Python's arenas, thread stacks)."""
    groups = {"grpcio": 0.0, "libpython": 0.0, "openssl": 0.0, "other files": 0.0, "anonymous": 0.0}
    where = "anonymous"
    with open(f"/proc/{pid}/smaps") as handle:
        for line in handle:
            first = line.split(maxsplit=1)[0]
            if "-" in first and first[0] in "0123456789abcdef" and not first.endswith(":"):
                fields = line.split()
                path = fields[5] if len(fields) > 5 else ""
                if "cygrpc" in path:
                    where = "grpcio"
                elif "libpython" in path:
                    where = "libpython"
                elif "libcrypto" in path or "libssl" in path:
                    where = "openssl"
                elif path.startswith("/"):
                    where = "other files"
                else:
                    where = "anonymous"
            elif first == "Rss:":
                groups[where] += int(line.split()[1]) / 1024
    return groups
