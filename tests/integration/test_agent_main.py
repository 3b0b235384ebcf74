"""`stack-agent` as a real process: restore without a controller, adopt after a crash.

A new agent adopts only the workers it can prove are its predecessor's: same pid, same
start time, same boot. Anything else is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import uuid
from pathlib import Path

import psutil

from stack.agent import persist
from stack.agent.adoption import boot_id
from stack.agent.process import start_ticks
from stack.agent.records import Records, WorkerRecord
from tests.support.engine import assignment, watcher
from tests.support.processes import AGENT, ROOT, stack_env
from tests.support.wait import wait_for


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


def _all_dead(pids: set[int]) -> bool:
    return all(_dead(pid) for pid in pids)


def _agent(data_dir: Path, log: Path, controller: int) -> subprocess.Popen[bytes]:
    """An agent dialing 127.0.0.1:`controller`, where no controller is."""
    env = stack_env()
    argv = [
        *AGENT,
        "--controller",
        f"127.0.0.1:{controller}",
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


def test_agent_restart_without_controller_adopts_the_workers_without_duplicates(
    tmp_path: Path, reserved_port: int
) -> None:
    name = f"restore-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "agent"
    log = tmp_path / "agent.log"
    persist.save_assignment(
        data_dir, assignment(watcher(name, "sleep 300", [1, 2], graceful_timeout=2))
    )
    first = _agent(data_dir, log, reserved_port)
    try:
        old = wait_for(lambda: len(w := _workers(name)) == 2 and w, what="2 workers from disk")
        state = data_dir / persist.STATE_FILE
        wait_for(
            lambda: state.exists() and len(persist.load_state(data_dir).workers) == 2,
            what="worker records persisted",
        )
        first.kill()
        first.wait(5)
        assert _workers(name) == old, "workers outlive a kill -9 of their agent"

        second = _agent(data_dir, log, reserved_port)
        try:
            wait_for(lambda: "adopted 2 of 2 workers" in log.read_text(), what="the adoption")
            assert _workers(name) == old, "the same workers, none added"
            text = log.read_text()
            assert "Traceback" not in text, text
            second.send_signal(signal.SIGTERM)
            assert second.wait(10) == 0
            wait_for(lambda: all(_dead(pid) for pid in old), what="adopted workers stopped")
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()
        for pid in _workers(name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_records_that_name_another_process_are_left_alone(
    tmp_path: Path, reserved_port: int
) -> None:
    """A pid reused since (other start time) or a record of another boot is not ours."""
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "agent"
    log = tmp_path / "agent.log"
    persist.save_assignment(data_dir, assignment(watcher(name, "sleep 300", [1, 2])))
    strangers = [subprocess.Popen(["sleep", "300"], start_new_session=True) for _ in range(2)]
    try:
        ticks = [start_ticks(s.pid) or 0 for s in strangers]
        for records in (
            # A pid reused since the record was made: another start time.
            Records(1, boot_id(), (WorkerRecord(name, 1, strangers[0].pid, ticks[0] + 1),)),
            # The same pid and start ticks, but recorded on another boot.
            Records(1, "another-boot", (WorkerRecord(name, 1, strangers[1].pid, ticks[1]),)),
        ):
            persist.save_state(data_dir, records)
            agent = _agent(data_dir, log, reserved_port)
            try:
                fresh = wait_for(lambda: len(w := _workers(name)) == 2 and w, what="2 fresh")
                assert not fresh & {s.pid for s in strangers}
                agent.send_signal(signal.SIGTERM)
                assert agent.wait(10) == 0
                wait_for(functools.partial(_all_dead, fresh), what="workers stopped")
            finally:
                if agent.poll() is None:
                    agent.kill()
            assert all(s.poll() is None for s in strangers), "strangers are left alone"
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait(5)
        for pid in _workers(name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_bad_arguments_print_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*AGENT, "--controller", "no-port"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
        env=stack_env(),
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--controller" in result.stderr and "HOST:PORT" in result.stderr
