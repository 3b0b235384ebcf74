"""`logs` tails answered from the agent's files: beyond any memory, across rotations."""

from __future__ import annotations

import time
from pathlib import Path

from stack.agent.engine import Engine
from stack.spec.model import StreamSpec
from stack.v1 import types_pb2
from tests.support.engine import HOST_ID, assignment, python_cmd, run, settings, statuses, watcher
from tests.support.wait import until


def _exited(engine: Engine, name: str) -> bool:
    status = statuses(engine.observed(), name).get(1)
    return status is not None and status.state == types_pb2.PROCESS_STATE_EXITED


def test_tail_of_2500_from_3000_lines_is_complete_and_in_order_and_on_disk_at_once(
    tmp_path: Path,
) -> None:
    cmd, args = python_cmd("for i in range(3000):\n    print(f'line {i}')\n")
    forever = StreamSpec(max_bytes=0)
    out = tmp_path / "agent" / "logs" / "many.out.log"

    async def scenario() -> None:
        # No flush tick here: lines are written through (a kill -9 must not lose them).
        async with Engine(settings(tmp_path, flush_interval=3600)) as engine:
            engine.apply(
                assignment(
                    watcher("many", cmd, [1], args=args, respawn=False, stdout_stream=forever)
                )
            )
            await until(lambda: _exited(engine, "many"), what="writer exited")
            await until(
                lambda: len(out.read_text().splitlines()) == 3000,
                what="every line in the file, with no flush and no tail",
            )
            tail = engine.tail("many", "out", 2500)
            assert [line.text for line in tail] == [f"line {i}" for i in range(500, 3000)]
            assert {(line.host_id, line.watcher, line.wid, line.stream) for line in tail} == {
                (HOST_ID, "many", 1, "out")
            }
            assert [line.at for line in tail] == sorted(line.at for line in tail)
            assert len(engine.tail("many", "out", 2500)) == 2500, "a second tail is the same"

    run(scenario())


def test_tail_includes_rotated_files_and_merges_both_streams_by_time(tmp_path: Path) -> None:
    # The agent stamps a line when it reads it, to the millisecond in its files: one
    # stream's line is older than the other's only if it was read earlier. So the worker
    # writes its next block only once the test saw the last one read, and a millisecond
    # has passed since (a pause of its own would be a guess on a loaded machine).
    go = tmp_path / "go"
    cmd, args = python_cmd(
        "import os, sys, time\n"
        "def wait(name):\n"
        f"    while not os.path.exists(os.path.join({str(go)!r}, name)):\n"
        "        time.sleep(0.001)\n"
        "for i in range(1000):\n"
        "    print(f'line {i}')\n"
        "    if i % 100 == 99:\n"
        "        sys.stdout.flush()\n"
        "        wait(f'out {i}')\n"
        "        print(f'err {i}', file=sys.stderr, flush=True)\n"
        "        wait(f'err {i}')\n"
    )
    go.mkdir()
    small = StreamSpec(max_bytes=8000, backup_count=10)
    logs = tmp_path / "agent" / "logs"

    async def read_then_go(engine: Engine, stream: str, text: str) -> None:
        line = await until(
            lambda: next((x for x in engine.tail("rot", stream, 1) if x.text == text), None),
            what=f"{text!r} read",
        )
        await until(lambda: time.time() >= line.at + 0.001, what="the next millisecond")
        (go / f"{stream} {text.split()[1]}").touch()

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(
                assignment(watcher("rot", cmd, [1], args=args, respawn=False, stdout_stream=small))
            )
            for i in range(99, 1000, 100):
                await read_then_go(engine, "out", f"line {i}")
                await read_then_go(engine, "err", f"err {i}")
            await until(lambda: _exited(engine, "rot"), what="writer exited")
            assert (logs / "rot.out.log.3").exists(), "the output was rotated"
            out = engine.tail("rot", "out", 1000)
            assert [line.text for line in out] == [f"line {i}" for i in range(1000)]
            both = engine.tail("rot", "", 1010)
            expected = []
            for i in range(1000):
                expected.append(("out", f"line {i}"))
                if i % 100 == 99:
                    expected.append(("err", f"err {i}"))
            assert [(line.stream, line.text) for line in both] == expected
            last = engine.tail("rot", "", 3)
            assert [line.text for line in last] == ["line 998", "line 999", "err 999"]

    run(scenario())
