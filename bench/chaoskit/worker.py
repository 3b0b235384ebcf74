"""The program the chaos stack runs as workers (standard library only).

With `--fd N` it serves HTTP/1.0 on the inherited listening socket N, answering every
request with `PID WATCHER WID VERSION` (and `/health` the same way, for the agent's http
check); without, it only waits. Either way SIGTERM ends it gracefully: the connection in
hand is answered, then it exits 0. The client load reads the pid and version to tell which
worker served it.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys


def answer(conn: socket.socket, body: bytes) -> None:
    """Read the request head (up to a blank line, or 8 KiB) and send the response."""
    conn.settimeout(5.0)
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = conn.recv(4096)
        if not chunk:
            return
        head += chunk
    conn.sendall(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="", help="ignored; marks the run's processes")
    parser.add_argument("--fd", type=int, default=None, help="the listening socket to serve")
    ns = parser.parse_args()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the wakeup fd carries it to the loop
    watched: list[int | socket.socket] = [wake_r]
    listener = None
    if ns.fd is not None:
        listener = socket.socket(fileno=ns.fd)
        listener.setblocking(False)
        watched.append(listener)
    env = os.environ
    body = " ".join(
        [str(os.getpid()), env.get("STACK_WATCHER", "?"), env.get("STACK_WID", "?"),
         env.get("CHAOS_VERSION", "?")]
    ).encode() + b"\n"  # fmt: skip
    while True:
        readable, _, _ = select.select(watched, [], [])
        if wake_r in readable:
            sys.exit(0)
        assert listener is not None
        try:
            conn, _ = listener.accept()
        except BlockingIOError:  # another worker took it
            continue
        with conn:
            try:
                answer(conn, body)
            except OSError:
                pass  # the client left; the next one matters


if __name__ == "__main__":
    main()
