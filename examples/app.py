"""A tiny HTTP app for the demo: several workers share one inherited listening socket.

    python3 -m examples.app --fd 5      # serve on an inherited socket, fd 5
    python3 -m examples.app             # systemd-style: LISTEN_FDS / LISTEN_PID, fd 3

`GET /` answers `hello from worker 2 (pid 1234)` (GREETING and STACK_WID from the
environment). Each request is logged as one line on stdout. SIGTERM (or SIGINT)
lets the request in progress finish, then the worker exits 0. Standard library
only, so it runs with any python3.
"""

from __future__ import annotations

import argparse
import http.server
import os
import select
import signal
import socket
import sys
from typing import Any

SD_LISTEN_FDS_START = 3
"""The first fd systemd-style socket activation passes (LISTEN_FDS counts from here)."""


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers one request per connection and logs it to stdout."""

    server_version = "stack-example/1"
    timeout = 10

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/":
            self.send_error(404, "not found")
            return
        greeting = os.environ.get("GREETING", "hello")
        wid = os.environ.get("STACK_WID", "?")
        body = f"{greeting} from worker {wid} (pid {os.getpid()})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        wid = os.environ.get("STACK_WID", "?")
        print(f"worker {wid} pid {os.getpid()}: {self.address_string()} {format % args}",
              flush=True)  # fmt: skip


def listening_fd(fd: int | None) -> int:
    """The fd given with --fd, else the first one from socket activation."""
    if fd is not None:
        return fd
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")):
        return SD_LISTEN_FDS_START
    raise SystemExit("examples.app: no socket: pass --fd N or start it with LISTEN_FDS/LISTEN_PID")


def serve(sock: socket.socket) -> None:
    """Accept and answer connections until SIGTERM/SIGINT, finishing the current one."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Workers share the socket: each waits until it is readable and tries to accept;
    # a worker that loses the race gets BlockingIOError and waits again.
    sock.setblocking(False)
    while not stopping:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 512)
            continue
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError):
            continue
        with conn:
            conn.setblocking(True)
            conn.settimeout(Handler.timeout)
            try:
                Handler(conn, address or ("local", 0), None)  # type: ignore[arg-type]
            except OSError as err:
                print(f"connection error: {err}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m examples.app")
    parser.add_argument(
        "--fd", type=int, help="an inherited listening socket (default: LISTEN_FDS, fd 3)"
    )
    args = parser.parse_args(argv)
    fd = listening_fd(args.fd)
    try:
        sock = socket.socket(fileno=fd)
    except OSError as err:
        raise SystemExit(f"examples.app: fd {fd} is not a socket: {err.strerror}") from None
    wid = os.environ.get("STACK_WID", "?")
    print(f"worker {wid} pid {os.getpid()}: serving on fd {fd}", flush=True)
    serve(sock)
    print(f"worker {wid} pid {os.getpid()}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
