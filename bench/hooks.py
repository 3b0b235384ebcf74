"""What hook commands cost a worker's respawn, on a real agent engine.

Run: .venv/bin/python bench/hooks.py [--respawns 30]

One watcher of one worker (`sleep`), killed with SIGKILL again and again; each figure is
the median time from the kill to the agent's new worker being spawned (its pid in the
engine's status says it was started at), for:

- baseline: no hook;
- slow after_reap and after_spawn hooks (each sleeps 1 s): they run beside the respawn,
  which must not wait for them;
- a before_spawn hook (`true`): the respawn waits for it, by design; the difference from
  the baseline is what running one hook command costs.

Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.agent.engine import Engine
from stack.spec.model import FlappingSpec, HookSpec
from tests.support.engine import assignment, running_pids, settings, watcher

NO_FLAPPING = FlappingSpec(attempts=10_000, window=1.0)


async def respawns(root: Path, count: int, hooks: dict[str, str]) -> list[float]:
    """Seconds from each SIGKILL to the spawn of its successor (its started_at)."""
    spec = watcher(
        "w", "sleep 300", [1], flapping=NO_FLAPPING,
        hooks=MappingProxyType({k: HookSpec(cmd=v) for k, v in hooks.items()}),
    )  # fmt: skip
    found: list[float] = []
    async with Engine(settings(root)) as engine:
        engine.apply(assignment(spec))
        pid = await _new_pid(engine, 0)
        for _ in range(count):
            await asyncio.sleep(0.05)
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            pid = await _new_pid(engine, pid)
            started = [p.started_at for p in engine.observed().processes if p.pid == pid]
            found.append(started[0] - killed)
    return found


async def _new_pid(engine: Engine, old: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = running_pids(engine.observed(), "w").get(1, 0)
        if pid and pid != old:
            return pid
        await asyncio.sleep(0.0005)
    raise TimeoutError("no new worker within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respawns", type=int, default=30)
    args = parser.parse_args()
    cases = {
        "no hook (baseline)": {},
        "slow after_reap + after_spawn (1 s each)": {
            "after_reap": "sleep 1", "after_spawn": "sleep 1",
        },
        "before_spawn = true": {"before_spawn": "true"},
    }  # fmt: skip
    print(f"respawn after SIGKILL, median of {args.respawns}")
    baseline = 0.0
    for name, hooks in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            times = asyncio.run(respawns(Path(tmp), args.respawns, hooks))
        median = statistics.median(times)
        baseline = baseline or median
        print(f"  {name:45} {median * 1000:8.1f} ms  ({median / baseline:.2f}x)")


if __name__ == "__main__":
    main()
