"""The workers tests run (tests/support/programs/worker.py), as stack files and over sockets.

Every worker's command line carries the test's tag, so `worker_processes(tag)` finds a
test's own workers and nobody else's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

from tests.support.processes import PYTHON, ROOT

PROGRAMS = ROOT / "tests" / "support" / "programs"
WORKER = PROGRAMS / "worker.py"


def watcher_toml(name: str, tag: str, *flags: str, **options: Any) -> str:
    """A [watchers.NAME] table running programs/worker.py with `flags`."""
    cmd = " ".join([PYTHON, str(WORKER), "--tag", tag, *flags])
    lines = [f"[watchers.{name}]", f"cmd = {json.dumps(cmd)}"]
    tables = {k: v for k, v in options.items() if isinstance(v, dict)}
    for key, value in options.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables.items():
        lines.append(f"[watchers.{name}.{key}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def socket_stack(tag: str, *flags: str, port: int = 0, **options: object) -> str:
    """Socket `web` on 127.0.0.1:`port` (0: the kernel picks one when the agent binds it)
    and watcher `w` (worker.py `flags`) inheriting it."""
    head = f'[sockets.web]\nhost = "127.0.0.1"\nport = {port}\n\n'
    return head + watcher_toml("w", tag, *flags, sockets=["web"], **options)


def fetch(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> int:
    """Connect to a shared socket of workers/worker.py serves and read the answering pid."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        return read_pid(conn)


def read_pid(conn: socket.socket) -> int:
    """The pid a worker answers on a connection, up to its newline."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            raise ConnectionError("closed without an answer")
        data += chunk
    return int(data)


@contextlib.contextmanager
def asking(port: int, limit: int = 100_000) -> Iterator[tuple[list[int], list[Exception]]]:
    """A client that asks workers/worker.py on `port` for its pid again and again while
    the block runs (at most `limit` times): yields (answers, failures), filled as it goes."""
    answers: list[int] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set() and len(answers) < limit:
            try:
                answers.append(fetch(port))
            except OSError as exc:
                failures.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield answers, failures
    finally:
        stop.set()
        thread.join(30)
