"""Circus's stream classes on the agent: when timed files rotate (an injected clock),
files that others rotate, and lines printed on the agent's stdout (real files and pipes)."""

from __future__ import annotations

import calendar
import os
import threading
from pathlib import Path

import pytest

from stack.agent.console import Console, color_of, render
from stack.agent.log_files import RotatingFile, newest_lines
from stack.agent.output import LogHub
from stack.agent.rotation import next_rotation
from stack.spec.model import COLORS, StreamSpec
from tests.support.wait import wait_for


def _utc(text: str) -> float:
    """`2026-11-30 15:20:07` (UTC) as unix time."""
    day, clock = text.split()
    return float(calendar.timegm((*map(int, day.split("-")), *map(int, clock.split(":")), 0, 0, 0)))


NOW = _utc("2026-11-30 15:20:07")  # a Monday


@pytest.mark.parametrize(
    ("when", "interval", "expected"),
    [
        ("S", 1, "2026-11-30 15:20:08"),
        ("s", 30, "2026-11-30 15:20:37"),
        ("M", 5, "2026-11-30 15:25:07"),
        ("H", 2, "2026-11-30 17:20:07"),
        ("D", 1, "2026-12-01 15:20:07"),
        ("MIDNIGHT", 1, "2026-12-01 00:00:00"),
        ("midnight", 3, "2026-12-03 00:00:00"),
        ("W0", 1, "2026-12-07 00:00:00"),  # Monday today: next Monday's midnight
        ("W1", 1, "2026-12-01 00:00:00"),  # Tuesday: tonight
        ("W6", 1, "2026-12-06 00:00:00"),
        ("W6", 2, "2026-12-13 00:00:00"),
    ],
)
def test_timed_rotation_deadlines(when: str, interval: int, expected: str) -> None:
    assert next_rotation(NOW, when, interval) == _utc(expected)


def test_a_rotation_time_at_midnight_itself_is_the_next_midnight() -> None:
    midnight = _utc("2026-12-01 00:00:00")
    assert next_rotation(midnight, "MIDNIGHT", 1) == _utc("2026-12-02 00:00:00")


def test_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="W7"):
        next_rotation(NOW, "W7", 1)


def test_a_timed_file_rotates_at_its_first_line_after_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    rotating = RotatingFile(path, 0, 2, rotate_when="S", rotate_interval=10)
    start = path.stat().st_mtime
    rotating.write_lines([b"one\n"], start + 1)
    rotating.write_lines([b"two\n"], start + 9)
    assert not (tmp_path / "w.out.log.1").exists()
    for n, at in enumerate((10.5, 25, 40, 55)):
        rotating.write_lines([f"later {n}\n".encode()], start + at)
    rotating.close()
    # 10.5 rotated one+two away; then every file holds one line until the next deadline
    assert path.read_text() == "later 3\n"
    assert (tmp_path / "w.out.log.1").read_text() == "later 2\n"
    assert (tmp_path / "w.out.log.2").read_text() == "later 1\n"
    assert not (tmp_path / "w.out.log.3").exists()


def test_an_empty_timed_file_is_not_rotated_for_the_time_alone(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    path.touch()
    os.utime(path, (NOW - 100, NOW - 100))
    rotating = RotatingFile(path, 0, 2, rotate_when="S", rotate_interval=10)
    rotating.write_lines([b"first\n"], NOW)
    rotating.close()
    assert path.read_text() == "first\n"
    assert not (tmp_path / "w.out.log.1").exists()


def test_a_timed_file_begun_in_an_earlier_period_rotates_at_once(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    path.write_text("yesterday\n")
    os.utime(path, (NOW - 86_400, NOW - 86_400))
    rotating = RotatingFile(path, 0, 1, rotate_when="MIDNIGHT")
    rotating.write_lines([b"today\n"], NOW)
    rotating.close()
    assert path.read_text() == "today\n"
    assert (tmp_path / "w.out.log.1").read_text() == "yesterday\n"


def test_a_watched_file_is_opened_again_after_it_was_moved(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    rotating = RotatingFile(path, 0, 5, watched=True)
    rotating.write_lines([b"before\n"])
    path.rename(tmp_path / "w.out.log.1")
    rotating.write_lines([b"after\n"])
    path.unlink()
    rotating.write_lines([b"after removal\n"])
    rotating.close()
    assert (tmp_path / "w.out.log.1").read_text() == "before\n"
    assert path.read_text() == "after removal\n"


def test_a_watched_file_replaced_by_a_symlink_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    target = tmp_path / "elsewhere"
    target.write_text("")
    problems: list[str] = []
    rotating = RotatingFile(path, 0, 5, watched=True, report=problems.append)
    rotating.write_lines([b"before\n"])
    path.rename(tmp_path / "w.out.log.1")
    path.symlink_to(target)
    rotating.write_lines([b"after\n"])
    rotating.close()
    assert target.read_text() == ""
    assert problems == [f"{path}: is a symlink; not followed"]


def test_hub_writes_a_timed_stream_and_tails_its_backups(tmp_path: Path) -> None:
    hub = LogHub(tmp_path, ship_lines=100, max_line=1000)
    spec = StreamSpec(class_="TimedRotatingFileStream", rotate_when="S", backup_count=3)
    hub.configure("w", spec, StreamSpec())
    path = tmp_path / "w.out.log"
    start = path.stat().st_mtime
    for n in range(3):
        hub._files["w", "out"][2].write_lines([f"line {n}\n".encode()], start + 2 * n)
    assert (tmp_path / "w.out.log.2").exists()
    hub._emit("w", 1, "out", [b"emitted"])
    assert [line.text for line in hub.tail("w", "out", 10)][-1] == "emitted"
    assert hub._files["w", "out"][2].max_bytes == 0  # the time alone rotates it
    hub.close()


def test_lines_are_printed_with_watcher_and_wid_and_escaped() -> None:
    assert render("web", 2, [b"hello", b"\x1b]52;c;x\x07 ok\tthere"]) == (
        b"web.2 | hello\nweb.2 | \\x1b]52;c;x\\x07 ok\tthere\n"
    )
    assert render("web", 1, [b"hi"], "red") == b"\x1b[31mweb.1 | \x1b[0mhi\n"


def test_each_watcher_keeps_one_colour_unless_told() -> None:
    assert color_of("web", "blue") == "blue"
    assert color_of("web", "") == color_of("web", "") in COLORS
    assert len({color_of(f"w{n}", "") for n in range(40)}) > 3


def test_the_console_never_blocks_and_counts_what_it_dropped() -> None:
    read_end, write_end = os.pipe()
    console = Console(write_end, max_pending=4)
    big = [b"x" * 70_000]  # one chunk fills the pipe: the writer blocks on the next
    done = threading.Event()

    def flood() -> None:
        for _ in range(50):
            console.print("w", 1, big)
        done.set()

    thread = threading.Thread(target=flood)
    thread.start()
    assert done.wait(10), "print blocked on a full pipe"
    thread.join()
    seen = bytearray()
    reader = threading.Thread(target=_read_all, args=(read_end, seen), daemon=True)
    reader.start()
    wait_for(console._queue.empty, 10, "the writer to catch up")
    console.print("w", 1, [b"last"])
    wait_for(lambda: b"w.1 | last\n" in seen, 10, "the last line")
    assert b"lines not printed: the output was not read" in seen
    console.close()
    os.close(write_end)
    reader.join(10)


def _read_all(fd: int, into: bytearray) -> None:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1 << 20):
            into.extend(chunk)


def test_hub_prints_stdout_streams_and_still_writes_their_file(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    hub = LogHub(tmp_path, ship_lines=100, max_line=1000, console=Console(write_end))
    hub.configure(
        "web",
        StreamSpec(class_="StdoutStream"),
        StreamSpec(class_="FancyStdoutStream", color="green"),
    )
    hub._emit("web", 3, "out", [b"to stdout"])
    hub._emit("web", 3, "err", [b"to stderr"])
    hub.close()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"web.3 | to stdout\n\x1b[32mweb.3 | \x1b[0mto stderr\n"
    assert (tmp_path / "web.out.log").read_text().endswith(" [3] to stdout\n")
    assert newest_lines(tmp_path / "web.err.log", 0, 5, 1000)[0].endswith(b"to stderr")
