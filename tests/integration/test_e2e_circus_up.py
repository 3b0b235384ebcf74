"""A Circus user's file run as they would: `stackctl up circus.ini` with a socket and an
on_demand watcher whose stdout_stream is a StdoutStream. Nothing runs until a client
connects; the connection is served, and the worker's lines then show in up's own output,
prefixed with the watcher and worker id."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from pathlib import Path

from tests.support.processes import PYTHON, ROOT, STACKCTL, stack_env
from tests.support.wait import wait_for
from tests.support.workers import WORKER, read_pid

CIRCUS_INI = """\
[circus]
check_delay = 5
loglevel = info

[socket:web]
path = {sock}
family = AF_UNIX

[watcher:web]
cmd = {python} {worker} --tag {tag} --serve-fd $(circus.sockets.web) --tick 0.2
use_sockets = True
on_demand = True
stdout_stream.class = StdoutStream
"""


def _read_lines(stream: subprocess.Popen[str], into: list[str]) -> None:
    assert stream.stdout is not None
    for line in stream.stdout:
        into.append(line)


def test_up_runs_a_circus_file_on_demand_and_prints_its_stdout_stream(tmp_path: Path) -> None:
    sock = tmp_path / "web.sock"
    ini = tmp_path / "circus.ini"
    ini.write_text(
        CIRCUS_INI.format(sock=sock, python=PYTHON, worker=WORKER, tag=f"circus-up-{tmp_path.name}")
    )
    controller = f"unix:{tmp_path / 'ctl' / 'controller.sock'}"
    up = subprocess.Popen(
        [*STACKCTL, "--controller", controller, "up", str(ini), "--data-dir",
         str(tmp_path / "state"), "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=stack_env(), cwd=ROOT,
    )  # fmt: skip
    seen: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(up, seen), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("Ctrl-C stops everything" in line for line in seen) or up.poll()
                 is not None, 90, "up to settle")  # fmt: skip
        text = "".join(seen)
        assert up.poll() is None, text
        assert f"logs (debug): {tmp_path / 'state' / 'controller.log'} and " in text
        assert "not everything is running" not in text  # resting on demand is settled
        assert "0/1 running, active, on demand: waiting for a connection to web" in text
        assert "web.1 |" not in text  # nothing runs before a connection
        assert "DEBUG" in (tmp_path / "state" / "agent.log").read_text()
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(30)
            conn.connect(str(sock))
            pid = read_pid(conn)
        assert pid > 0
        wait_for(lambda: any(line.startswith("web.1 | tick 1") for line in seen), 30,
                 "the worker's lines in up's output")  # fmt: skip
    finally:
        with contextlib.suppress(ProcessLookupError):
            up.send_signal(signal.SIGINT)
        up.wait(60)
        reader.join(10)
    assert up.returncode == 0, "".join(seen)
    assert "stopping the agent" in "".join(seen)
