"""A kill of the agent at each point of writing a pipe's lines: every line once in the file.

Real pipes, files and intent files; the kill is an exception raised at the chosen point
of one agent's LogHub (its memory is then dropped, as a kill drops it), and a second
LogHub on the same data dir takes the pipe back, as an agent started after a crash does.
The integration test with real kills is in tests/integration/test_agent_restart.py.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from stack.agent import log_files
from stack.agent.output import LogHub
from stack.agent.output_intents import Intent, Intents, checksum
from stack.spec.model import StreamSpec


class Killed(SystemExit):
    """The agent dies here (a SystemExit: the event loop lets it through)."""


def test_an_intent_outlives_its_agent_and_a_cleared_one_does_not(tmp_path: Path) -> None:
    first = Intents(tmp_path)
    kept, cleared = first.take_slot(), first.take_slot()
    first.record(kept, Intent((1, 2), (3, 4), 10, 20, 5, checksum(b"abcde")))
    first.record(cleared, Intent((1, 9), (3, 4), 20, 30, 5))
    first.clear(cleared)
    # (not closed: a killed agent closes nothing)
    second = Intents(tmp_path)
    assert second.left == {(1, 2): (kept, Intent((1, 2), (3, 4), 10, 20, 5, checksum(b"abcde")))}
    assert (tmp_path / "output.intents").stat().st_mode & 0o777 == 0o600
    second.forget_left()
    assert Intents(tmp_path).left == {}


def test_a_slot_caught_half_written_is_not_set(tmp_path: Path) -> None:
    intents = Intents(tmp_path)
    slot = intents.take_slot()
    intents.record(slot, Intent((1, 2), (3, 4), 10, 20, 5))
    intents.clear(slot)
    mapping = intents._map  # the fields of another intent, its check not written yet
    mapping[slot * 64 + 8 : slot * 64 + 16] = (7).to_bytes(8, "little")
    assert Intents(tmp_path).left == {}


def test_slots_grow_past_the_first_ones(tmp_path: Path) -> None:
    intents = Intents(tmp_path)
    slots = [intents.take_slot() for _ in range(200)]
    for slot in slots:
        intents.record(slot, Intent((1, slot), (3, 4), 0, 1, 1))
    assert len(Intents(tmp_path).left) == 200


LINES = [f"line {n}".encode() for n in range(300)]


def _run_agent(
    data: Path, logs: Path, fd: int, kill: Callable[[pytest.MonkeyPatch], None] | None
) -> None:
    """One agent's life: read pipe `fd` (a copy), killed as `kill` says, or to its end."""

    async def life() -> None:
        hub = LogHub(logs, ship_lines=10, max_line=1000)
        hub.configure("w", StreamSpec(max_bytes=4000, backup_count=50), StreamSpec())
        hub.keep_intents(data)
        hub.attach("w", 1, "out", os.dup(fd))
        hub.forget_left_intents()
        try:
            for _ in range(200):
                await asyncio.sleep(0)
        finally:
            hub.flush()

    loop = asyncio.new_event_loop()
    with pytest.MonkeyPatch.context() as patch:
        if kill is not None:
            kill(patch)
        try:
            loop.run_until_complete(life())
        except Killed:  # nothing of this agent runs any more
            pass
        finally:
            loop.close()


def _in_file(logs: Path) -> list[bytes]:
    backups = sorted(logs.glob("w.out.log.*"), key=lambda path: -int(path.suffix[1:]))
    lines = []
    for path in [*backups, logs / "w.out.log"]:
        lines += [raw.split(b"] ", 1)[1] for raw in path.read_bytes().splitlines()]
    return lines


def _kill_at_the_third_write(
    written: Callable[[bytes], bytes],
) -> Callable[[pytest.MonkeyPatch], None]:
    """The agent is killed in its third write of lines, once `written(blob)` is written."""

    def kill(patch: pytest.MonkeyPatch) -> None:
        real = log_files.RotatingFile._write
        calls = []

        def write(self: log_files.RotatingFile, blob: bytes) -> None:
            calls.append(blob)
            if len(calls) < 3:
                real(self, blob)
                return
            real(self, written(blob))
            raise Killed

        patch.setattr(log_files.RotatingFile, "_write", write)

    return kill


def _kill_after_the_third_take_out(patch: pytest.MonkeyPatch) -> None:
    """The agent is killed once the third write's lines are out of the pipe, before their
    intent is cleared: the next agent finds newer output at the head of the pipe."""
    real = Intents.clear
    calls = []

    def clear(self: Intents, slot: int) -> None:
        calls.append(slot)
        if len(calls) == 3:
            raise Killed
        real(self, slot)

    patch.setattr(Intents, "clear", clear)


KILLS = {
    "after the write": _kill_at_the_third_write(lambda blob: blob),
    "before the write": _kill_at_the_third_write(lambda blob: b""),
    "in the write": _kill_at_the_third_write(lambda blob: blob[: len(blob) // 2 + 3]),
    "after the take-out": _kill_after_the_third_take_out,
}
"""(In the write: cut short in the middle of a line, as a kill during a write of pages.)"""


@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_a_kill_at_any_point_of_a_write_leaves_every_line_once(
    tmp_path: Path, kill: Callable[[pytest.MonkeyPatch], None]
) -> None:
    data, logs = tmp_path / "agent", tmp_path / "agent" / "logs"
    data.mkdir()
    read_end, write_end = os.pipe()
    try:
        for number in range(0, len(LINES), 30):
            os.write(write_end, b"".join(line + b"\n" for line in LINES[number : number + 30]))
        os.write(write_end, b"the last line, partial")
        _run_agent(data, logs, read_end, kill)
        assert (logs / "w.out.log.1").exists()  # writes were made before the kill
        os.close(write_end)  # the worker ends: its pipe to the end
        write_end = -1
        _run_agent(data, logs, read_end, None)
        assert _in_file(logs) == [*LINES, b"the last line, partial"]
        assert Intents(data).left == {}
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_an_intent_knows_its_bytes_at_the_head_of_the_pipe_and_trusts_an_older_agents() -> None:
    intent = Intent((1, 2), (3, 4), 10, 20, 5, checksum(b"abcde"))
    assert intent.still_in(b"abcde") and intent.still_in(b"abcdefgh")
    assert (
        not intent.still_in(b"fghij") and not intent.still_in(b"abc") and not intent.still_in(b"")
    )
    older = Intent((1, 2), (3, 4), 10, 20, 5)  # recorded by an agent that kept no checksum
    assert older.still_in(b"fghij") and older.still_in(b"")


def test_a_slot_of_an_agent_that_kept_no_checksum_reads_as_unknown(tmp_path: Path) -> None:
    intents = Intents(tmp_path)
    slot = intents.take_slot()
    fields = struct.pack("<7Q", 1, 2, 3, 4, 10, 20, 5)  # that agent's layout
    mapping = intents._map
    mapping[slot * 64 + 8 : slot * 64 + 8 + len(fields)] = fields
    mapping[slot * 64 : slot * 64 + 8] = struct.pack("<Q", (0x5354_4B49 << 32) | zlib.crc32(fields))
    assert Intents(tmp_path).left == {(1, 2): (slot, Intent((1, 2), (3, 4), 10, 20, 5, 0))}
