"""Circus's and Supervisor's worker-lifecycle options through a real controller and
agent: `reload` of a send_hup watcher, and a converted supervisord.conf run as it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.v1 import types_pb2
from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import PYTHON
from tests.support.wait import wait_for

EXITED = types_pb2.PROCESS_STATE_EXITED
HUP_COUNTER = (
    "import os, signal, sys, time\n"
    "path = sys.argv[1] + '.' + os.environ['STACK_WID']\n"
    "signal.signal(signal.SIGHUP, lambda *_: open(path, 'a').write('hup\\n'))\n"
    "open(path + '.ready', 'w').close()\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One stack for these tests: each applies a file of its own watchers."""
    with running_cluster(tmp_path_factory.mktemp("dropin") / "stack") as running:
        yield running


def test_reload_of_a_send_hup_watcher_sends_sighup_and_keeps_its_workers(
    shared: Cluster, tmp_path: Path
) -> None:
    cluster = shared
    args = ["-c", HUP_COUNTER, str(tmp_path / "hups")]
    cluster.apply(
        f"[watchers.hup]\ncmd = {json.dumps(PYTHON)}\nargs = {json.dumps(args)}\n"
        "numprocesses = 2\nsend_hup = true\n",
        name="hup.toml",
    )
    pids = cluster.wait_running("hup", 2)
    ready = [tmp_path / f"hups.{wid}.ready" for wid in (1, 2)]
    wait_for(lambda: all(path.exists() for path in ready), 15, "the workers' SIGHUP handlers")
    result = cluster.stackctl("reload", "hup", check=True)
    assert "hup" in result.out

    def hups() -> list[str]:
        return [
            (tmp_path / f"hups.{wid}").read_text() if (tmp_path / f"hups.{wid}").exists() else ""
            for wid in (1, 2)
        ]

    wait_for(lambda: hups() == ["hup\n", "hup\n"], 15, "each worker to get one SIGHUP")
    assert cluster.running_pids("hup") == pids, "send_hup replaced the workers"
    messages = [e.message for e in cluster.events("reload")]
    assert "reload hup: send_hup: SIGHUP sent to 2 processes" in messages


def test_a_converted_supervisord_conf_runs_numbered_with_its_defaults_and_a_hook(
    shared: Cluster, tmp_path: Path
) -> None:
    cluster = shared
    conf = tmp_path / "supervisord.conf"
    once = tmp_path / "once.starts"
    conf.write_text(
        "[supervisord]\nlogfile=/tmp/ignored.log\n\n"
        "[program:pool]\n"
        f"command={PYTHON} -c 'import time; time.sleep(300)' %(program_name)s\n"
        "process_name=%(program_name)s_%(process_num)02d\nnumprocs=2\n\n"
        "[program:once]\n"
        f"command=sh -c 'echo start >> {once}; sleep 1.5'\n"
    )
    converted = cluster.stackctl("convert", str(conf), check=True).out
    assert 'autorestart = "unexpected"' in converted and "startsecs = 1" in converted
    spawns = tmp_path / "spawns"
    hook = f"sh -c 'echo $STACK_WID $STACK_PID >> {spawns}'"
    stack = tmp_path / "converted.toml"
    stack.write_text(f"{converted}\n[watchers.pool.hooks]\nafter_spawn = {json.dumps(hook)}\n")
    cluster.stackctl("apply", "--yes", str(stack), check=True)

    pids = cluster.wait_running("pool", 2)
    lines = wait_for(
        lambda: spawns.exists() and len(spawns.read_text().splitlines()) == 2 and spawns,
        15,
        "the after_spawn hook of each worker",
    )
    assert sorted(lines.read_text().splitlines()) == [f"{wid} {pids[wid]}" for wid in (1, 2)]
    # supervisord's defaults came along: exit code 0 after startsecs is expected.
    wait_for(
        lambda: [p.state for p in cluster.processes("once")] == [EXITED], 20, "once to exit"
    )
    (done,) = cluster.processes("once")
    assert done.last_exit.code == 0 and done.restarts == 0
    assert once.read_text() == "start\n"
    messages = [e.message for e in cluster.events("exit") if e.watcher == "once"]
    assert len(messages) == 1 and messages[0].endswith("exit code 0: expected, not restarted")
