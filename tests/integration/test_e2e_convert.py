"""A Circus INI file and a supervisord.conf applied to a real controller and agent: the
workers the files describe run, as numbered as the files number them, on the socket
they name."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import psutil

from tests.support.cluster import Cluster
from tests.support.processes import PYTHON, worker_processes
from tests.support.wait import wait_for
from tests.support.workers import WORKER, fetch


def test_a_circus_ini_runs_its_watchers_on_its_socket(
    cluster: Cluster, tmp_path: Path, reserved_port: int
) -> None:
    port = reserved_port  # the INI names it
    report = tmp_path / "report"
    ini = cluster.root / "circus.ini"
    (cluster.root / "conf.d").mkdir()
    ini.write_text(
        "[circus]\n"
        "endpoint = tcp://127.0.0.1:5555   ; circusd's, ignored with a note\n"
        "include_dir = conf.d\n\n"
        f"[env]\nWEB_PORT = {port}\n\n"
        "[socket:Web]\nhost = 127.0.0.1\nport = $(circus.env.WEB_PORT)\n\n"
        "[watcher:web]\n"
        f"cmd = {PYTHON} {WORKER} --tag {cluster.tag} --report {report}\n"
        "args = --serve-fd ((circus.sockets.web))\n"
        "numprocesses = 3\nuse_sockets = True\n\n"
        "[env:w*]\nGREETING = hello\n"
    )
    (cluster.root / "conf.d" / "ticker.ini").write_text(
        f"[watcher:ticker]\ncmd = {PYTHON} {WORKER} --tag {cluster.tag} --tick 0.5\n"
    )
    result = cluster.stackctl("apply", "--yes", str(ini))
    assert result.code == 0, result
    assert "note: " in result.err and "[circus] endpoint" in result.err
    pids = set(cluster.wait_running("web", 3).values())
    cluster.wait_running("ticker", 1)
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while seen != pids and time.monotonic() < deadline:
        seen.add(fetch(port))
    assert seen == pids
    reports = [json.loads(path.read_text()) for path in tmp_path.glob("report.*")]
    assert sorted(r["wid"] for r in reports) == ["1", "2", "3"]
    exported = cluster.stackctl("export", check=True).out
    assert "GREETING" in exported and f"port = {port}" in exported


def test_a_supervisord_conf_runs_its_programs_numbered_as_it_numbers_them(
    cluster: Cluster,
) -> None:
    conf = cluster.root / "supervisord.conf"
    tag = cluster.tag
    conf.write_text(
        "[supervisord]\nlogfile=/tmp/ignored.log\n\n"
        "[program:pool]\n"
        f"command={PYTHON} {WORKER} --tag {tag}-pool\n"
        "process_name=%(program_name)s_%(process_num)02d\nnumprocs=3\n\n"
        "[program:shard]\n"
        f"command={PYTHON} {WORKER} --tag {tag}-shard-%(process_num)d\n"
        "process_name=shard%(process_num)d\nnumprocs=2\nnumprocs_start=1\n\n"
        "[program:port]\n"
        f"command={PYTHON} {WORKER} --tag {tag}-port-80%(process_num)02d\n"
        "process_name=port%(process_num)d\nnumprocs=2\n"
    )
    result = cluster.stackctl("apply", "--yes", str(conf))
    assert result.code == 0, result
    assert "[supervisord] logfile" in result.err
    cluster.wait_running("pool", 3)
    cluster.wait_running("shard", 2)
    cluster.wait_running("port0", 1)
    cluster.wait_running("port1", 1)

    def tags() -> set[str]:
        found = set()
        for proc in worker_processes(tag):
            with contextlib.suppress(psutil.Error):
                argv = proc.cmdline()
                found.add(argv[argv.index("--tag") + 1])
        return found

    expected = {f"{tag}-pool", f"{tag}-shard-1", f"{tag}-shard-2", f"{tag}-port-8000",
                f"{tag}-port-8001"}  # fmt: skip
    wait_for(lambda: tags() == expected, 15, "every process to run its own command")
    assert len(worker_processes(f"{tag}-pool")) == 3
