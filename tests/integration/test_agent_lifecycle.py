"""The worker-lifecycle options Circus and Supervisor users rely on, with real workers:
autorestart = "unexpected" with exitcodes, startsecs, and how a worker is launched
(executable, shell_args, virtualenv, copy_path, close_child_stdout/stderr)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from stack.agent.engine import Engine
from stack.spec.model import FlappingSpec
from stack.spec.observed import ProcessState
from tests.support.engine import assignment, python_cmd, run, settings, statuses, watcher
from tests.support.processes import PYTHON
from tests.support.wait import until

NO_FLAPPING = FlappingSpec(attempts=100, window=1.0)
"""Flapping out of the way of what a test checks (quick exits would trip it)."""


def _json(path: Path) -> dict[str, Any] | None:
    """What a worker wrote to `path` as JSON; None until it is all there."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    assert isinstance(found, dict)
    return found


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _starts(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_autorestart_unexpected_restarts_only_exits_whose_code_is_not_expected(
    tmp_path: Path,
) -> None:
    # Worker 1 exits with 3 (expected), worker 2 with 1 (not): each notes its starts.
    code = (
        "import os, sys, time\n"
        "wid = os.environ['STACK_WID']\n"
        f"open({str(tmp_path)!r} + '/starts.' + wid, 'a').write('x\\n')\n"
        "time.sleep(0.2)\n"
        "sys.exit(3 if wid == '1' else 1)\n"
    )
    cmd, args = python_cmd(code)
    spec = watcher(
        "w", cmd, [1, 2], args=args, autorestart="unexpected", exitcodes=(0, 3),
        flapping=NO_FLAPPING,
    )  # fmt: skip

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(spec))
            await until(lambda: _starts(tmp_path / "starts.2") >= 3, what="worker 2 restarted")
            one = statuses(engine.observed(), "w")[1]
            assert one.state == ProcessState.EXITED and one.pid == 0
            assert one.last_exit is not None and one.last_exit.code == 3
            assert one.restarts == 0
            assert _starts(tmp_path / "starts.1") == 1
            assert statuses(engine.observed(), "w")[2].restarts >= 2
            events = [e.message for e in engine.take_events() if e.kind == "exit" and e.wid == 1]
            assert events == [f"pid {events[0].split()[1]} exit code 3: expected, not restarted"]

    run(scenario())


def test_a_worker_is_starting_for_startsecs_and_one_that_exits_sooner_fails_to_start(
    tmp_path: Path,
) -> None:
    quick, quick_args = python_cmd("import time; time.sleep(0.2)")
    stays, stays_args = python_cmd("import time; time.sleep(300)")
    early = watcher(
        "early", quick, [1], args=quick_args, startsecs=1.0, max_retry=3, respawn=False,
        flapping=NO_FLAPPING,
    )  # fmt: skip
    steady = watcher("steady", stays, [1], args=stays_args, startsecs=1.0)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(early, steady))
            first = await until(
                lambda: statuses(engine.observed(), "steady").get(1), what="steady spawned"
            )
            assert first.state == ProcessState.STARTING and first.pid
            running = await until(
                lambda: (
                    (p := statuses(engine.observed(), "steady")[1]).state == ProcessState.RUNNING
                    and p
                ),
                what="steady running",
            )
            assert time.time() - running.started_at >= 1.0, "RUNNING before startsecs"
            assert running.pid == first.pid
            # Exits after 0.2 s are failed starts, tried again even without respawn,
            # fatal at the max_retry-th in a row.
            fatal = await until(
                lambda: (
                    (p := statuses(engine.observed(), "early")[1]).state == ProcessState.FATAL
                    and p
                ),
                what="early fatal",
            )
            assert fatal.message == (
                "fatal: could not start after 3 attempts: exited within startsecs (1s): "
                "exit code 0 (crashed)"
            )
            assert fatal.restarts == 2

    run(scenario())


def test_executable_shell_args_virtualenv_copy_path_and_closed_output_reach_the_worker(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    tool = venv / "bin" / "report-tool"
    report = (
        "import json, os, sys\n"
        "json.dump({'argv0': open('/proc/self/cmdline', 'rb').read().split(b'\\0')[0].decode(),"
        " 'env': dict(os.environ), 'out': os.readlink('/proc/self/fd/1'),"
        " 'err': os.readlink('/proc/self/fd/2')}, open(sys.argv[1], 'w'))\n"
        "import time; time.sleep(300)\n"
    )
    tool.write_text(f"#!{PYTHON}\n{report}")
    tool.chmod(0o755)
    workdir = tmp_path / "app"
    workdir.mkdir()
    named = watcher(
        "named", "renamed", [1], args=("-c", report, str(tmp_path / "named.json")),
        executable=PYTHON,
    )  # fmt: skip
    shell = watcher(
        "shell", f"echo \"$0 $1\" > {tmp_path / 'shell.txt'}; exec sleep 300", [1],
        shell=True, shell_args=("zero", "one"),
    )  # fmt: skip
    venv_spec = watcher(
        "venv", f"report-tool {tmp_path / 'venv.json'}", [1], copy_env=True,
        virtualenv=str(venv), copy_path=True, working_dir=str(workdir),
        close_child_stdout=True, close_child_stderr=True,
    )  # fmt: skip

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(named, shell, venv_spec))
            for name in ("named.json", "venv.json"):
                await until(lambda name=name: _json(tmp_path / name), what=name)
            await until(lambda: _text(tmp_path / "shell.txt"), what="shell.txt")

    run(scenario())
    seen = _json(tmp_path / "named.json")
    assert seen is not None and seen["argv0"] == "renamed"
    assert (tmp_path / "shell.txt").read_text() == "zero one\n"
    seen = _json(tmp_path / "venv.json")
    assert seen is not None
    env = seen["env"]
    assert env["VIRTUAL_ENV"] == str(venv)
    assert env["PATH"].split(os.pathsep)[0] == str(venv / "bin")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(workdir)
    assert (seen["out"], seen["err"]) == ("/dev/null", "/dev/null")
