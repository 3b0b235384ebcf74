"""`stack-agent` as a real process: restore without a controller, restart without duplicates."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from stack.agent import persist
from tests.integration.agent_harness import assignment, watcher
from tests.integration.cluster import ROOT, free_port, wait_for


def _workers(name: str) -> set[int]:
    """Live (non-zombie) processes whose STACK_WATCHER is `name`."""
    found = set()
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if (
                proc.status() != psutil.STATUS_ZOMBIE
                and proc.environ().get("STACK_WATCHER") == name
            ):
                found.add(proc.pid)
    return found


def _dead(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # re-parented to this (subreaper) test process
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _agent(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("STACK_CONTROLLER", None)
    argv = [
        sys.executable,
        "-m",
        "stack.agent.main",
        "--controller",
        f"127.0.0.1:{free_port()}",
        "--data-dir",
        str(data_dir),
        "--host-id",
        "h1",
        "--log-level",
        "info",
    ]
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=handle, env=env, cwd=ROOT, start_new_session=True
        )


def test_agent_restart_without_controller_runs_persisted_assignment_without_duplicates(
    tmp_path: Path,
) -> None:
    name = f"restore-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "agent"
    log = tmp_path / "agent.log"
    persist.save_assignment(
        data_dir, assignment(watcher(name, "sleep 300", [1, 2], graceful_timeout=2))
    )
    first = _agent(data_dir, log)
    try:
        old = wait_for(lambda: len(w := _workers(name)) == 2 and w, what="2 workers from disk")
        state = data_dir / persist.STATE_FILE
        wait_for(
            lambda: state.exists() and len(persist.load_state(data_dir)[1]) == 2,
            what="worker records persisted",
        )
        first.kill()
        first.wait(5)
        assert _workers(name) == old, "workers outlive a kill -9 of their agent"

        second = _agent(data_dir, log)
        try:
            new = wait_for(
                lambda: (w := _workers(name)) and w.isdisjoint(old) and len(w) == 2 and w,
                what="2 fresh workers",
            )
            assert all(_dead(pid) for pid in old), "leftovers were stopped before new starts"
            assert _workers(name) == new
            text = log.read_text()
            assert text.count("stale_worker_stopped") == 2, text
            assert "Traceback" not in text, text
            second.send_signal(signal.SIGTERM)
            assert second.wait(10) == 0
            wait_for(lambda: all(_dead(pid) for pid in new), what="workers stopped on SIGTERM")
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()
        for pid in _workers(name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_bad_arguments_print_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stack.agent.main", "--controller", "no-port"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--controller" in result.stderr and "HOST:PORT" in result.stderr
