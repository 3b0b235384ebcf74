"""What each stream class costs the agent per chunk of output it writes.

Run: .venv/bin/python bench/streams.py [--rounds 7] [--chunks 20000]

Each round writes the same chunks (one 100-byte line each, as a worker printing a line
at a time gives them) through the agent's RotatingFile as FileStream (the baseline:
one write(2) a chunk), WatchedFileStream (one fstatat more a chunk, to see whether the
file was moved) and TimedRotatingFileStream (a comparison with the next deadline), and
through LogHub (stamps, shipping buffer) as FileStream and as StdoutStream, whose
printing adds a rendering and a queue put on the event loop and a thread that writes to
stdout (here a pipe drained by another thread), which shares the interpreter with it.
Prints the median microseconds per chunk of each, beside a bare os.write to an
O_APPEND file measured in the same run. Asserts nothing.

The last two cases start from a pipe, as a worker's output does: a line is written to it
and the event loop turns until the line is handled. The baseline reads the pipe (taking
the bytes out) and appends them to a file; LogHub peeks (tee(2)), writes the stamped line,
then takes the bytes out, with its write intent recorded around the write (see
output_intents), so that a kill -9 of the agent neither loses nor repeats a line.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import statistics
import struct
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.agent.console import Console
from stack.agent.log_files import RotatingFile
from stack.agent.output import LogHub, prefix
from stack.spec.model import StreamSpec

LINE = b"x" * 99 + b"\n"


def _timed(chunks: int, write: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(chunks):
        write()
    return (time.perf_counter() - start) / chunks * 1e6


def _bare(folder: Path, chunks: int) -> float:
    fd = os.open(folder / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return _timed(chunks, lambda: os.write(fd, prefix(time.time(), 1) + LINE))
    finally:
        os.close(fd)


def _file(folder: Path, chunks: int, watched: bool = False, rotate_when: str = "") -> float:
    rotating = RotatingFile(folder / "f.log", 0, 5, watched=watched, rotate_when=rotate_when)
    try:
        return _timed(chunks, lambda: rotating.write_lines([prefix(time.time(), 1) + LINE]))
    finally:
        rotating.close()


def _hub(folder: Path, chunks: int, kind: str) -> float:
    read_end, write_end = os.pipe()
    drain = threading.Thread(
        target=lambda: [None for _ in iter(lambda: os.read(read_end, 1 << 20), b"")]
    )
    drain.start()
    hub = LogHub(folder, ship_lines=1000, max_line=65536, console=Console(write_end))
    hub.configure("w", StreamSpec(class_=kind, max_bytes=0), StreamSpec())
    try:
        return _timed(chunks, lambda: hub._emit("w", 1, "out", [LINE[:-1]]))
    finally:
        hub.close()
        os.close(write_end)
        drain.join()
        os.close(read_end)


async def _pipe_to(chunks: int, attach: Callable[[int], None]) -> float:
    """Per chunk: one line written to a pipe, read from the event loop by what `attach`
    set up (until the line was handled: the pipe is empty again)."""
    read_end, write_end = os.pipe()
    attach(read_end)
    try:
        start = time.perf_counter()
        for _ in range(chunks):
            os.write(write_end, LINE)
            while True:  # one turn of the loop reads it; a peek may take a second
                await asyncio.sleep(0)
                if not _unread(read_end):
                    break
        return (time.perf_counter() - start) / chunks * 1e6
    finally:
        os.close(write_end)


def _unread(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _bare_capture(folder: Path, chunks: int) -> float:
    """The baseline of the capture path: a reader that takes the bytes out of the pipe
    (read(2)) and appends them to a file (write(2)), nothing else."""
    out = os.open(folder / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def attach(fd: int) -> None:
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, lambda: os.write(out, os.read(fd, 1 << 18)))

    async def run() -> float:
        return await _pipe_to(chunks, attach)

    try:
        return asyncio.run(run())
    finally:
        os.close(out)


def _capture(folder: Path, chunks: int) -> float:
    """A worker's pipe through LogHub into a FileStream: the agent's whole capture path."""
    hub = LogHub(folder, ship_lines=1000, max_line=65536)
    hub.configure("w", StreamSpec(max_bytes=0), StreamSpec())

    async def run() -> float:
        return await _pipe_to(chunks, lambda fd: hub.attach("w", 1, "out", fd))

    try:
        return asyncio.run(run())
    finally:
        hub.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=20_000)
    args = parser.parse_args()
    cases: dict[str, Callable[[Path, int], float]] = {
        "bare os.write (baseline)": _bare,
        "FileStream": _file,
        "WatchedFileStream": lambda d, n: _file(d, n, watched=True),
        "TimedRotatingFileStream (H)": lambda d, n: _file(d, n, rotate_when="H"),
        "LogHub, FileStream (baseline below)": lambda d, n: _hub(d, n, "FileStream"),
        "LogHub, StdoutStream": lambda d, n: _hub(d, n, "StdoutStream"),
        "pipe read(2) + write(2) (baseline)": _bare_capture,
        "pipe -> LogHub -> FileStream": _capture,
    }
    found: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            with tempfile.TemporaryDirectory() as folder:
                found[name].append(case(Path(folder), args.chunks))
    print(f"median of {args.rounds} rounds, {args.chunks} chunks of one line each:")
    for name, times in found.items():
        print(f"  {name:36s} {statistics.median(times):6.2f} us per chunk")


if __name__ == "__main__":
    main()
