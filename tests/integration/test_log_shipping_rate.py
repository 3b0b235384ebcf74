"""The agent's log shipping rate, with a real worker printing as fast as it can.

An Engine in this process (like test_agent_io.py), kept apart from the modules that run
daemons as children: the engine reaps children of the test process.
"""

from __future__ import annotations

import time
from pathlib import Path

from stack.agent.engine import Engine
from stack.spec.model import StreamSpec
from stack.v1 import types_pb2
from tests.support.engine import assignment, python_cmd, run, settings
from tests.support.engine import watcher as watcher_assignment
from tests.support.wait import until


def test_a_fast_writer_ships_at_most_the_rate_and_the_file_keeps_every_line(
    tmp_path: Path,
) -> None:
    total, rate = 60_000, 2_000
    cmd, args = python_cmd(
        "import sys\n"
        "line = b'z' * 49 + b'\\n'\n"
        f"for _ in range({total // 1000}):\n"
        "    sys.stdout.buffer.write(line * 1000)\n"
    )

    async def scenario() -> tuple[int, int, float]:
        agent = settings(tmp_path, ship_lines=100_000, ship_rate=rate)
        async with Engine(agent) as engine:
            started = time.monotonic()
            spec = watcher_assignment(
                "loud", cmd, [1], args=args, respawn=False, stdout_stream=StreamSpec(max_bytes=0)
            )
            engine.apply(assignment(spec))

            def exited() -> bool:
                procs = [p for p in engine.observed().processes if p.watcher == "loud"]
                return bool(procs) and procs[0].state == types_pb2.PROCESS_STATE_EXITED

            await until(exited, what="the writer to finish")
            shipped: list[int] = []
            dropped: list[int] = []

            def accounted() -> bool:
                shipped.append(len(engine.take_logs(100_000)))
                dropped.extend(
                    int(e.message.split()[0])
                    for e in engine.take_events()
                    if e.kind == "logs_dropped"
                )
                return sum(shipped) + sum(dropped) == total

            await until(accounted, what="every line shipped or counted as dropped")
            # The agent may read the pipe's last lines after the writer exited (later on a
            # loaded machine): the rate applies until then.
            elapsed = time.monotonic() - started
            return sum(shipped), sum(dropped), elapsed

    shipped, dropped, elapsed = run(scenario())
    assert rate <= shipped <= rate * (elapsed + 1) + 1, (shipped, elapsed)
    assert dropped == total - shipped > 0
    assert len((tmp_path / "agent" / "logs" / "loud.out.log").read_bytes().splitlines()) == total
