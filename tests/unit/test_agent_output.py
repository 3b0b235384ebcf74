"""Line splitting, rotation and tails of captured output (real files, no processes)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.agent.log_files import (
    RotatingFile,
    lines_backwards,
    newest_lines,
)
from stack.agent.output import (
    MAX_TAIL_LINES,
    LogHub,
    complete_lines,
    parse_line,
    prefix,
    timestamp,
)
from stack.spec.model import StreamSpec


class Pipe:
    """What a pipe holds, read as LogHub reads one: complete lines are taken out, a
    partial line stays in it until its newline (or the cap, or the pipe's end)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = b""

    def feed(self, data: bytes, final: bool = False) -> list[bytes]:
        self.held += data
        lines, end, _ = complete_lines(self.held, self.cap, final)
        self.held = self.held[end:]
        return lines

    def end(self) -> list[bytes]:
        return self.feed(b"", final=True)


def test_partial_lines_wait_for_their_newline() -> None:
    pipe = Pipe(cap=100)
    assert pipe.feed(b"hel") == []
    assert pipe.held == b"hel"  # left in the pipe
    assert pipe.feed(b"lo\nwor") == [b"hello"]
    assert pipe.feed(b"ld\n\nx") == [b"world", b""]
    assert pipe.end() == [b"x"]
    assert pipe.end() == []


def test_long_lines_are_cut_at_the_cap() -> None:
    pipe = Pipe(cap=4)
    assert pipe.feed(b"abcdefghij") == [b"abcd", b"efgh"]
    assert pipe.feed(b"\n123456789\n") == [b"ij", b"1234", b"5678", b"9"]


def test_where_each_line_ends_counts_the_bytes_it_took_from_the_pipe() -> None:
    lines, end, ends = complete_lines(b"ab\ncdefgh\nij", 4)
    assert lines == [b"ab", b"cdef", b"gh"] and ends == [3, 7, 10] and end == 10
    assert complete_lines(b"ab\ncd\nef", 4) == ([b"ab", b"cd"], 6, None)
    assert complete_lines(b"ab\ncd\nef", 4, final=True) == ([b"ab", b"cd", b"ef"], 8, None)


@given(st.lists(st.binary(max_size=50), max_size=20))
def test_splitting_any_chunking_gives_the_same_lines(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    pipe = Pipe(cap=10_000)
    lines = [line for chunk in chunks for line in pipe.feed(chunk)] + pipe.end()
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert lines == expected


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(min_value=1, max_value=30))
def test_no_line_is_longer_than_the_cap_and_no_byte_is_lost(chunks: list[bytes], cap: int) -> None:
    pipe = Pipe(cap=cap)
    lines = [line for chunk in chunks for line in pipe.feed(chunk)] + pipe.end()
    assert all(len(line) <= cap for line in lines)
    assert sum(map(len, lines)) == len(b"".join(chunks).replace(b"\n", b""))


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=30), st.booleans())
def test_the_bytes_of_the_first_lines_are_where_the_last_of_them_ends(
    data: bytes, cap: int, final: bool
) -> None:
    lines, end, ends = complete_lines(data, cap, final)
    for count in range(1, len(lines) + 1):
        upto = (
            ends[count - 1]
            if ends is not None
            else min(end, sum(len(line) + 1 for line in lines[:count]))
        )
        again, _, _ = complete_lines(data[:upto], cap, True)
        assert again == lines[:count]


def test_timestamp_is_utc_iso_with_milliseconds() -> None:
    assert timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert timestamp(1795916267.0429) == "2026-11-29T01:37:47.042Z"


def test_rotating_file_keeps_backup_count_files_under_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    rotating = RotatingFile(path, max_bytes=30, backup_count=2)
    for n in range(10):
        rotating.write_lines([f"line {n:02d} ....\n".encode()])  # 15 bytes
    rotating.close()
    assert path.read_text() == "line 08 ....\nline 09 ....\n"
    assert (tmp_path / "w.out.log.1").read_text() == "line 06 ....\nline 07 ....\n"
    assert (tmp_path / "w.out.log.2").read_text() == "line 04 ....\nline 05 ....\n"
    assert not (tmp_path / "w.out.log.3").exists()


def test_rotating_file_without_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    rotating = RotatingFile(path, max_bytes=10, backup_count=0)
    rotating.write_lines([b"123456\n", b"abcdef\n"])
    rotating.close()
    assert path.read_bytes() == b"abcdef\n"
    assert list(tmp_path.iterdir()) == [path]


def test_rotating_file_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "w.out.log"
    path.write_bytes(b"old\n")
    rotating = RotatingFile(path, max_bytes=0, backup_count=1)
    rotating.write_lines([b"new\n"])
    rotating.flush()
    assert path.read_bytes() == b"old\nnew\n"
    rotating.close()


def test_shipping_buffer_drops_oldest_and_counts(tmp_path: Path) -> None:
    hub = LogHub(tmp_path, ship_lines=4, max_line=100)
    hub._emit("w", 1, "out", [b"a", b"b", b"c"])
    hub._emit("w", 2, "err", [b"d", b"e", b"f"])
    assert hub.take_dropped() == 2
    assert hub.take_dropped() == 0
    assert [line.text for line in hub.take_shipping(10)] == ["c", "d", "e", "f"]


def _forward(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _backwards(path: Path, block: int) -> list[bytes]:
    with path.open("rb") as file:
        return list(lines_backwards(file, path.stat().st_size, block))


@pytest.mark.parametrize("block", [1, 3, 7, 64 * 1024])
def test_reading_backwards_gives_every_line_newest_first_whatever_the_block(
    tmp_path: Path, block: int
) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"first\n\nthird line\n" + b"x" * 20 + b"\nlast\n")
    assert _backwards(path, block) == [b"last", b"x" * 20, b"third line", b"", b"first"]


def test_a_file_ending_without_newline_still_gives_its_last_line(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"one\ntwo\npartial la")
    assert _backwards(path, 4) == [b"partial la", b"two", b"one"]
    path.write_bytes(b"only")
    assert _backwards(path, 2) == [b"only"]
    path.write_bytes(b"")
    assert _backwards(path, 2) == []
    path.write_bytes(b"\n")
    assert _backwards(path, 2) == [b""]


def test_lines_longer_than_a_block_come_back_whole(tmp_path: Path) -> None:
    long = bytes(range(256)).replace(b"\n", b"-") * 1000  # 256 KB, four blocks
    path = tmp_path / "f.log"
    path.write_bytes(b"a\n" + long + b"\nb\n" + long + b"\n")
    assert _backwards(path, 64 * 1024) == [long, b"b", long, b"a"]


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=40))
def test_reading_backwards_is_reading_forwards_reversed(data: bytes, block: int) -> None:
    assert list(lines_backwards(io.BytesIO(data), len(data), block)) == _forward(data)[::-1]


class _CountingReads(io.BufferedReader):
    read_bytes = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def test_a_short_tail_of_a_1_gb_file_reads_only_its_end(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with path.open("wb") as file:
        file.truncate(1 << 30)  # sparse: 1 GB of NULs, no newline
        file.seek(0, os.SEEK_END)
        file.write(b"".join(f"line {n}\n".encode() for n in range(100)))
    with _CountingReads(io.FileIO(path, "rb")) as counted:
        reader: BinaryIO = counted
        lines = lines_backwards(reader, path.stat().st_size)
        newest = [next(lines) for _ in range(20)]
        assert newest == [f"line {n}".encode() for n in range(99, 79, -1)]
        assert counted.read_bytes <= 64 * 1024
    assert newest_lines(path, 0, 20, 1 << 20)[-1] == b"line 80"


def _rotated(tmp_path: Path, contents: list[bytes]) -> Path:
    path = tmp_path / "w.out.log"
    for index, data in enumerate(contents):
        target = path if index == 0 else path.with_name(f"w.out.log.{index}")
        target.write_bytes(data)
    return path


def test_newest_lines_continue_into_the_backups_newest_first(tmp_path: Path) -> None:
    path = _rotated(tmp_path, [b"e\nf\n", b"c\nd\n", b"a\nb\n"])
    assert newest_lines(path, 5, 3, 1000) == [b"f", b"e", b"d"]
    assert newest_lines(path, 5, 100, 1000) == [b"f", b"e", b"d", b"c", b"b", b"a"]
    assert newest_lines(path, 1, 100, 1000) == [b"f", b"e", b"d", b"c"]
    assert newest_lines(path, None, 100, 1000)[-1] == b"a"
    assert newest_lines(path, 5, 100, 4) == [b"f", b"e"]


def test_backups_stop_at_the_first_missing_backup(tmp_path: Path) -> None:
    path = _rotated(tmp_path, [b"new\n", b"older\n"])
    (tmp_path / "w.out.log.3").write_bytes(b"stale\n")
    assert newest_lines(path, 5, 100, 1000) == [b"new", b"older"]
    path.unlink()  # removed by hand: the backups still answer
    assert newest_lines(path, 5, 100, 1000) == [b"older"]


def test_a_written_line_parses_back_to_time_wid_and_text() -> None:
    raw = prefix(1795916267.0429, 12) + "héllo [3] x".encode()
    assert parse_line(raw, "web", "err") == (1795916267.042, "web", 12, "err", "héllo [3] x")
    assert parse_line(prefix(5.0, 1), "web", "out") == (5.0, "web", 1, "out", "")
    assert parse_line(b"2026-11-29T01:02:0", "web", "out") is None  # cut inside the prefix
    assert parse_line(b"not ours", "web", "out") is None
    assert parse_line(b"2026-13-29T01:02:03.004Z [1] x", "web", "out") is None


def _hub(tmp_path: Path, out: StreamSpec, err: StreamSpec | None = None) -> LogHub:
    hub = LogHub(tmp_path, ship_lines=10, max_line=100)
    hub.configure("w", out, err or StreamSpec())
    return hub


def test_tail_reads_rotated_files_and_the_unflushed_buffer_once_each(tmp_path: Path) -> None:
    hub = _hub(tmp_path, StreamSpec(max_bytes=200, backup_count=3))
    for n in range(12):
        hub._emit("w", 1 + n % 2, "out", [f"line {n:02d}".encode()])  # 36 bytes each
    assert (tmp_path / "w.out.log.1").exists() and (tmp_path / "w.out.log.2").exists()
    texts = [line.text for line in hub.tail("w", "out", 100)]
    assert texts == [f"line {n:02d}" for n in range(12)]
    assert [(line.wid, line.stream) for line in hub.tail("w", "out", 2)] == [(1, "out"), (2, "out")]
    hub._emit("w", 1, "out", [b"after"])
    assert [line.text for line in hub.tail("w", "out", 2)] == ["line 11", "after"]
    hub.close()


def test_tail_of_both_streams_merges_them_by_time(tmp_path: Path) -> None:
    hub = _hub(tmp_path, StreamSpec(), StreamSpec(filename=str(tmp_path / "custom.err")))
    times = iter([100.001, 100.002, 100.003, 100.004, 100.005])
    for stream, text in [("out", "o1"), ("err", "e1"), ("out", "o2"), ("out", "o3"), ("err", "e2")]:
        line = prefix(next(times), 1) + text.encode() + b"\n"
        hub._files[("w", stream)][2].write_lines([line])
    merged = hub.tail("w", "", 4)
    assert [(line.stream, line.text) for line in merged] == [
        ("err", "e1"),
        ("out", "o2"),
        ("out", "o3"),
        ("err", "e2"),
    ]
    assert [line.at for line in merged] == [100.002, 100.003, 100.004, 100.005]
    assert (tmp_path / "custom.err").exists()
    hub.close()


def test_tail_is_capped_and_zero_means_the_cap(tmp_path: Path) -> None:
    hub = _hub(tmp_path, StreamSpec(max_bytes=0))
    hub._emit("w", 1, "out", [str(n).encode() for n in range(MAX_TAIL_LINES + 5)])
    for asked in (0, -1, MAX_TAIL_LINES + 1, 2**31 - 1):
        tail = hub.tail("w", "out", asked)
        assert len(tail) == MAX_TAIL_LINES and tail[-1].text == str(MAX_TAIL_LINES + 4)
    hub.close()


def test_tail_of_a_watcher_no_longer_here_reads_its_default_files(tmp_path: Path) -> None:
    hub = _hub(tmp_path, StreamSpec())
    hub._emit("w", 3, "out", [b"kept"])
    hub.forget("w")
    assert [(line.wid, line.text) for line in hub.tail("w", "out", 5)] == [(3, "kept")]
    assert hub.tail("never", "", 5) == []
    (tmp_path / "w.x.log").write_bytes(prefix(1.0, 1) + b"secret\n")
    assert hub.tail("w", "x", 5) == [], "only out and err name files"
