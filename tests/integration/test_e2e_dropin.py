"""Circus's and Supervisor's worker-lifecycle options through a real controller and
agent: `reload` of a send_hup watcher, and a converted supervisord.conf run as it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import PYTHON
from tests.support.wait import wait_for

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
