"""A configurable worker for the integration tests (standard library only).

--tag T          ignored; lets a test find its processes by command line
--ignore-term    ignore SIGTERM (to test the SIGKILL after graceful_timeout)
--grandchild     start a long sleeping grandchild in the same process group
--setsid-child   start a grandchild that leaves our process group (a session of its own)
                 and ignores SIGTERM: this program again, with --tag TAG-child
--lines N        print N numbered lines to stdout, then keep running
--err-lines N    print N numbered lines to stderr
--line-size B    pad each printed line to B bytes
--exit CODE      exit at once with CODE (a crashing or flapping worker)
--serve-fd FD    accept on the inherited listening socket FD, answer "<pid>\n" per connection
--serve-count N  with --serve-fd: exit 0 once N connections were answered
--serve-listen   like --serve-fd, from the systemd variables (LISTEN_FDS/LISTEN_PID, fd 3)
--tick S         print "tick N" every S seconds, forever (also while serving)
--burst K        with --tick (not serving): print K numbered lines each time, one write each
--split          with --burst: write each line in two writes, "tick N" then its newline
--report FILE    write the pid, LISTEN_* and STACK_* variables as JSON to FILE.<pid>
--freeze-agent   on SIGTERM, SIGSTOP our parent (the agent) and exit: the agent can
                 then neither reap us nor save anything after its stop signal
--hostile        print HOSTILE_LINE: terminal escape sequences (clipboard, link, clear
                 screen) and carriage-return and backspace tricks
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

HOSTILE_LINE = (
    "clipboard:\x1b]52;c;cm0gLXJmIH4=\x07 link:\x1b]8;;https://evil.example/\x1b\\docs\x1b]8;;\x1b\\"
    " clear:\x1b[2J\x1b[H cr:safe\rEVIL bs:ok\x08\x08NO"
)


def serve(fd: int, tick: float = 0.0, limit: int = 0) -> None:
    """Answer each connection with our pid; on SIGTERM finish the current one and exit 0.

    With `tick`, also print "tick N" every `tick` seconds; with `limit`, exit 0 once
    that many connections were answered."""
    listener = socket.socket(fileno=fd)
    listener.setblocking(False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the wakeup fd carries it to the loop
    reply = f"{os.getpid()}\n".encode()
    count = served = 0
    next_tick = time.monotonic() + tick
    while True:
        timeout = max(0.0, next_tick - time.monotonic()) if tick else None
        readable, _, _ = select.select([listener, wake_r], [], [], timeout)
        if tick and time.monotonic() >= next_tick:
            print(f"tick {count}", flush=True)
            count += 1
            next_tick += tick
        if wake_r in readable:
            sys.exit(0)
        if listener not in readable:
            continue
        try:
            conn, _ = listener.accept()
        except BlockingIOError:  # another worker took it
            continue
        with conn:
            conn.setblocking(True)
            conn.sendall(reply)
        served += 1
        if limit and served >= limit:
            sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--setsid-child", action="store_true")
    parser.add_argument("--lines", type=int, default=0)
    parser.add_argument("--err-lines", type=int, default=0)
    parser.add_argument("--line-size", type=int, default=0)
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--serve-fd", type=int, default=None)
    parser.add_argument("--serve-count", type=int, default=0)
    parser.add_argument("--serve-listen", action="store_true")
    parser.add_argument("--report", default="")
    parser.add_argument("--tick", type=float, default=0.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--split", action="store_true")
    parser.add_argument("--hostile", action="store_true")
    parser.add_argument("--freeze-agent", action="store_true")
    ns = parser.parse_args()

    if ns.report:
        info = {
            "pid": os.getpid(),
            "listen_fds": os.environ.get("LISTEN_FDS"),
            "listen_pid": os.environ.get("LISTEN_PID"),
            "listen_fdnames": os.environ.get("LISTEN_FDNAMES"),
            "wid": os.environ.get("STACK_WID"),
            "watcher": os.environ.get("STACK_WATCHER"),
        }
        with open(f"{ns.report}.{os.getpid()}", "w") as out:
            json.dump(info, out)
    if ns.exit is not None:
        sys.exit(ns.exit)
    if ns.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ns.freeze_agent:

        def freeze_and_exit(*_: object) -> None:
            os.kill(os.getppid(), signal.SIGSTOP)
            os._exit(0)

        signal.signal(signal.SIGTERM, freeze_and_exit)
    if ns.grandchild:
        subprocess.Popen(["sleep", "3600"])  # same group: stopped with us
    if ns.setsid_child:  # not in our group: an orphan when we exit, unless it is killed
        argv = [sys.executable, __file__, "--tag", f"{ns.tag}-child", "--ignore-term"]
        subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)  # fmt: skip
    for i in range(ns.lines):
        print(f"line {i}".ljust(ns.line_size, "x"), flush=False)
    if ns.hostile:
        print(HOSTILE_LINE)
    for i in range(ns.err_lines):
        print(f"err {i}".ljust(ns.line_size, "x"), file=sys.stderr)
    sys.stdout.flush()
    if ns.serve_fd is not None:
        serve(ns.serve_fd, ns.tick, ns.serve_count)
    if ns.serve_listen:
        assert os.environ["LISTEN_PID"] == str(os.getpid())
        serve(3)
    tick = 0
    while True:
        if ns.tick:
            time.sleep(ns.tick)
            for _ in range(ns.burst):
                if ns.split:  # the agent may see "tick N" alone: a partial line
                    os.write(1, f"tick {tick}".encode())
                    os.write(1, b"\n")
                else:
                    os.write(1, f"tick {tick}\n".encode())
                tick += 1
        else:
            time.sleep(3600)


if __name__ == "__main__":
    main()
