"""The client load: HTTP requests to the web app through every host's address, all run long.

Run inside the client's namespace (`python -m bench.chaoskit.load --out FILE h1=ADDR ...`):
one thread per host sends one request after another to ADDR:8080 and checks the answer
(`200`, and a body naming a webapp worker). Every failed request is written to FILE as a
JSON line (host, when it started and ended on the monotonic clock, what went wrong), and
so is a count of the requests per host every second and at the end (SIGTERM).

The harness then judges each failure against the documented limits (README, "Failed
requests"): `explain` says which limit allows it, or that none does.
"""

from __future__ import annotations

import argparse
import bisect
import errno
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PORT = 8080
CONNECT_TIMEOUT = 3.0
ANSWER_TIMEOUT = 6.0
PAUSE = 0.05
"""Seconds between two requests of one host's thread."""


def request(address: str) -> str:
    """One GET; "" when it was answered as it should be, else what went wrong."""
    try:
        with socket.create_connection((address, PORT), timeout=CONNECT_TIMEOUT) as conn:
            conn.settimeout(ANSWER_TIMEOUT)
            conn.sendall(b"GET / HTTP/1.0\r\nHost: chaos\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return f"error: {exc}"
    head, _, body = data.partition(b"\r\n\r\n")
    if not data:
        return "closed without an answer"
    if not head.startswith(b"HTTP/1.0 200") or b" webapp " not in body:
        return f"bad answer: {data[:80]!r}"
    return ""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("targets", nargs="+", metavar="HOST=ADDRESS")
    args = parser.parse_args(argv)
    targets = dict(t.split("=", 1) for t in args.targets)
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    lock = threading.Lock()
    ok = dict.fromkeys(targets, 0)
    failed = dict.fromkeys(targets, 0)
    stop = threading.Event()

    def write(record: Mapping[str, object]) -> None:
        with lock:
            out.write(json.dumps(record) + "\n")

    def loop(host: str, address: str) -> None:
        while not stop.is_set():
            start = time.monotonic()
            error = request(address)
            end = time.monotonic()
            if error:
                failed[host] += 1
                write({"host": host, "start": start, "end": end, "error": error})
            else:
                ok[host] += 1
            stop.wait(PAUSE)

    threads = [threading.Thread(target=loop, args=item, daemon=True) for item in targets.items()]
    for thread in threads:
        thread.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(1.0):
        write({"t": time.monotonic(), "ok": ok, "failed": failed})
    for thread in threads:
        thread.join(ANSWER_TIMEOUT + CONNECT_TIMEOUT + 1)
    write({"t": time.monotonic(), "ok": ok, "failed": failed, "final": True})
    out.close()


@dataclass(frozen=True)
class Failure:
    host: str
    start: float
    end: float
    error: str


@dataclass(frozen=True)
class Results:
    sent: int
    failures: tuple[Failure, ...]
    final: bool
    """The client wrote its last counts (it ended as it should)."""


def read(path: str) -> Results:
    sent, failures, final = 0, [], False
    try:
        lines = open(path).read().splitlines()  # noqa: SIM115
    except FileNotFoundError:
        return Results(0, (), False)
    for line in lines:
        record = json.loads(line)
        if "error" in record:
            failures.append(Failure(record["host"], record["start"], record["end"],
                                    record["error"]))  # fmt: skip
        else:
            sent = sum(record["ok"].values()) + sum(record["failed"].values())
            final = final or bool(record.get("final"))
    return Results(sent, tuple(failures), final)


# -- the documented limits --------------------------------------------------------------

CUT_OFF = "the host was cut off from the client"
NOT_BOUND = "the host runs no worker of the app: its socket is not bound"
ALL_DOWN = "every worker of the app on the host was down at once"
KILLED = "the worker serving it was killed"
SLACK = 1.5
"""Seconds around a request within which a sample or a fault counts as its cause: the
samples are half a second apart, and a connection may sit in an accept queue a moment."""


@dataclass(frozen=True)
class Sample:
    """One host's web socket at one moment, as the kernel showed it."""

    at: float
    host: str
    listening: bool
    serving: int
    """Live (running, not stopped) webapp workers on the host."""


class Samples:
    """Every host's samples in time order, to find those around a request quickly."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        by_host: dict[str, list[Sample]] = {}
        for sample in sorted(samples, key=lambda s: s.at):
            by_host.setdefault(sample.host, []).append(sample)
        self._by_host = by_host
        self._times = {host: [s.at for s in found] for host, found in by_host.items()}

    def around(self, host: str, start: float, end: float) -> list[Sample]:
        """The samples of `host` within SLACK of [start, end], and the last one before
        and the first one after that: on a loaded machine the samples may be seconds
        apart, and those two bracket the request whatever the gap."""
        times = self._times.get(host, [])
        first = max(0, bisect.bisect_left(times, start - SLACK) - 1)
        last = bisect.bisect_right(times, end + SLACK) + 1
        return self._by_host.get(host, [])[first:last]


def explain(
    failure: Failure,
    cut: Iterable[tuple[str, float, float]],
    samples: Samples,
    kills: Iterable[tuple[str, float]],
) -> str:
    """The limit that allows `failure`, or "" when none does.

    `cut` holds (host, from, to) of every partition, `kills` (host, when) of every webapp
    worker the harness killed."""
    low, high = failure.start - SLACK, failure.end + SLACK
    for host, start, end in cut:
        if host == failure.host and start <= high and (end == 0 or end >= low):
            return CUT_OFF
    around = samples.around(failure.host, failure.start, failure.end)
    if any(not s.listening for s in around):
        return NOT_BOUND
    if any(s.serving == 0 for s in around):
        return ALL_DOWN
    if failure.error in ("reset", "closed without an answer"):
        for host, when in kills:
            if host == failure.host and failure.start - 0.5 <= when <= failure.end + 0.5:
                return KILLED
    return ""


if __name__ == "__main__":
    main(sys.argv[1:])
