"""`stackctl -o json ... -f` in the background for tests: what it printed, how it ended."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from tests.support.processes import ROOT, STACKCTL, stack_env
from tests.support.wait import wait_for


@dataclass
class Follower:
    """A `stackctl -o json ... -f` running in the background, its lines read by a thread."""

    proc: subprocess.Popen[str]
    items: list[dict[str, Any]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start(self) -> Follower:
        def read(out: IO[str]) -> None:
            for text in out:
                self.items.append(json.loads(text))

        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        return self

    def wait(self, timeout: float) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        assert self._reader is not None and self.proc.stderr is not None
        self._reader.join(5)
        return code, self.proc.stderr.read()


@contextmanager
def following(controller: str, *args: str) -> Iterator[Follower]:
    """`stackctl --controller CONTROLLER -o json ARGS` running until the block ends."""
    argv = [*STACKCTL, "--controller", controller, "-o", "json", *args]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=stack_env(), cwd=ROOT
    )
    follower = Follower(proc).start()
    try:
        yield follower
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def assert_both_go_on(events: Follower, logs: Follower, scale_w_to_2: Callable[[], object]) -> None:
    """After a controller restart or failover, with watcher `w` (1 worker ticking) followed
    by `events -f` and `logs w -f`: a scale to 2 reaches both, neither stopped, no event
    came twice or out of order, and worker 1's ticks have no gap and no repeat."""
    scale_w_to_2()
    wait_for(
        lambda: any(e["message"] == "scale w: 1 -> 2" for e in events.items),
        20,
        "the scale event after the disruption",
    )
    wait_for(lambda: any(line["wid"] == 2 for line in logs.items), 20, "worker 2's lines")
    assert events.proc.poll() is None and logs.proc.poll() is None
    seqs = [e["seq"] for e in list(events.items)]
    assert seqs == sorted(set(seqs)), f"an event came twice or out of order: {seqs}"
    ticks = [int(line["text"].split()[1]) for line in list(logs.items) if line["wid"] == 1]
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), f"a line was lost or came twice: {ticks}"
