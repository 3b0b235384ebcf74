"""`pytest --hog`: one busy process per core for the whole run, gone however the run ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.hog import Hog, cores
from tests.support.processes import kill_descendants
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
INNER = """
import os, time
from pathlib import Path

def test_inner():
    Path(os.environ["STARTED"]).touch()
    if os.environ.get("HANG"):
        while True:
            time.sleep(0.05)
    assert os.environ.get("PASS"), "this inner test fails on purpose"
"""


def _hogs_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if "tests.support.hog" in " ".join(psutil.Process(pid).cmdline()):
                alive.append(pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return alive


def _wait_running(pids: list[int]) -> None:
    """Until each hog runs its program (right after the fork it is still a copy of us)."""
    wait_for(lambda: _hogs_alive(pids) == pids, 30, "the hogs to run")


def _inner_pytest(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], list[int]]:
    """`pytest --hog` on a one-test file; returns it once its test runs, with the hog pids."""
    (tmp_path / "test_inner.py").write_text(INNER)
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "--hog", "-p", "no:cacheprovider",
         str(tmp_path / "test_inner.py")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**_env(), "STARTED": str(started), **env},
    )  # fmt: skip
    assert proc.stdout is not None
    header = ""
    while not (found := re.search(r"hog: (\d+) busy processes .* \(pids \[([\d, ]+)\]\)", header)):
        line = proc.stdout.readline()
        assert line, f"pytest ended without a hog line:\n{header}"
        header += line
    assert int(found[1]) == cores()
    pids = [int(pid) for pid in found[2].split(",")]
    assert len(pids) == cores()
    wait_for(started.exists, 60, "the inner test to start")
    return proc, pids


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def _busy(pids: list[int]) -> bool:
    """Each hog used CPU time of its own (0.2 s at least)."""
    return all(sum(psutil.Process(pid).cpu_times()[:2]) >= 0.2 for pid in pids)


def test_hogs_spin_while_the_run_lasts_and_are_gone_after_a_failing_run(tmp_path: Path) -> None:
    proc, pids = _inner_pytest(tmp_path)
    assert proc.wait(60) == 1, "the inner test fails"
    assert _hogs_alive(pids) == []


def test_hogs_are_busy_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    proc, pids = _inner_pytest(tmp_path, HANG="1")
    try:
        wait_for(lambda: _busy(pids), 60, "every hog to burn CPU")
        assert _hogs_alive(pids) == pids
    finally:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 2, "pytest reports an interrupted run"
    assert _hogs_alive(pids) == []


def test_hogs_die_with_a_run_killed_with_sigkill(tmp_path: Path) -> None:
    proc, pids = _inner_pytest(tmp_path, HANG="1")
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not _hogs_alive(pids), 10, "the hogs to die with their run")


def test_a_hog_ends_on_its_own_after_its_limit() -> None:
    hog = Hog(count=1, limit=0.5).start()
    try:
        assert hog.procs[0].wait(30) == 0
    finally:
        hog.stop()


@pytest.mark.parametrize("count", [1, 3])
def test_a_hog_runs_as_many_processes_as_asked(count: int) -> None:
    with Hog(count=count) as hog:
        pids = hog.pids
        assert len(pids) == count
        _wait_running(pids)
    assert _hogs_alive(pids) == []


def test_a_test_cleaning_up_its_processes_spares_the_hogs() -> None:
    with Hog(count=1) as hog:
        _wait_running(hog.pids)
        kill_descendants()
        assert _hogs_alive(hog.pids) == hog.pids
