"""Line splitting, rotation and tails of captured output, without processes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from stack.agent.log_files import RotatingFile
from stack.agent.output import LineSplitter, LogHub, timestamp


def test_partial_lines_wait_for_their_newline() -> None:
    splitter = LineSplitter(max_line=100)
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == [b"hello"]
    assert splitter.feed(b"ld\n\nx") == [b"world", b""]
    assert splitter.rest() == [b"x"]
    assert splitter.rest() == []


def test_long_lines_are_cut_at_the_cap() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij") == [b"abcd", b"efgh"]
    assert splitter.feed(b"\n123456789\n") == [b"ij", b"1234", b"5678", b"9"]


@given(st.lists(st.binary(max_size=50), max_size=20))
def test_splitting_any_chunking_gives_the_same_lines(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    splitter = LineSplitter(max_line=10_000)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.rest()
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert lines == expected


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(min_value=1, max_value=30))
def test_no_line_is_longer_than_the_cap_and_no_byte_is_lost(chunks: list[bytes], cap: int) -> None:
    splitter = LineSplitter(max_line=cap)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.rest()
    assert all(len(line) <= cap for line in lines)
    assert sum(map(len, lines)) == len(b"".join(chunks).replace(b"\n", b""))


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
    hub = LogHub(tmp_path, ring_lines=3, ship_lines=4, max_line=100)
    hub._emit("w", 1, "out", [b"a", b"b", b"c"])
    hub._emit("w", 2, "err", [b"d", b"e", b"f"])
    assert hub.take_dropped() == 2
    assert hub.take_dropped() == 0
    assert [line.text for line in hub.take_shipping(10)] == ["c", "d", "e", "f"]
    assert [line.text for line in hub.tail("w", "out", 10)] == ["a", "b", "c"]
    assert [line.text for line in hub.tail("w", "", 2)] == ["e", "f"]
    assert hub.tail("other", "", 5) == []
