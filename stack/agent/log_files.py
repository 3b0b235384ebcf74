"""Size-rotated output files, written through a buffer and flushed on a short interval.

One file per watcher and stream (`<watcher>.out.log` by default). Lines arrive in
chunks; a chunk that fits is one buffered write, rotation happens at line boundaries
so no line is split across two files. Tails are read back from the end of these
files (and their backups) block by block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO


class RotatingFile:
    """An append-only file that rotates to `.1` ... `.N` when it would pass max_bytes."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("ab", buffering=256 * 1024)
        self._size = self._file.tell()

    def write_lines(self, lines: list[bytes]) -> None:
        """Append complete lines (each with its trailing newline)."""
        blob = b"".join(lines)
        if self.max_bytes <= 0 or self._size + len(blob) <= self.max_bytes:
            self._file.write(blob)
            self._size += len(blob)
            return
        rotated = False
        for line in lines:
            if self._size > 0 and self._size + len(line) > self.max_bytes:
                self._rotate()
                rotated = True
            self._file.write(line)
            self._size += len(line)
        if rotated:
            self._file.flush()  # a fresh file is never seen empty for a flush interval

    def _rotate(self) -> None:
        self._file.close()
        if self.backup_count <= 0:
            self.path.unlink(missing_ok=True)
        else:
            for index in range(self.backup_count - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab", buffering=256 * 1024)
        self._size = 0

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._file.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


READ_BLOCK = 64 * 1024


def lines_backwards(file: BinaryIO, end: int, block: int = READ_BLOCK) -> Iterator[bytes]:
    """The lines of `file[:end]`, newest first, without their newlines.

    Reads `block` bytes at a time from the end, so the cost is that of the lines taken,
    not of the file. A last line without its newline is still a line; an empty file has
    none.
    """
    pos = end
    carry: list[bytes] = []  # pieces of the line being assembled, rightmost piece first
    newest = True
    while pos > 0:
        start = max(0, pos - block)
        file.seek(start)
        chunk = file.read(pos - start)
        pos = start
        parts = chunk.split(b"\n")
        carry.append(parts[-1])
        for part in reversed(parts[:-1]):
            line = b"".join(reversed(carry))
            carry = [part]
            if not (newest and line == b""):  # the empty "line" after a final newline
                yield line
            newest = False
    line = b"".join(reversed(carry))
    if not (newest and line == b""):
        yield line


def rotated_paths(path: Path, backup_count: int | None) -> Iterator[Path]:
    """`path`, then its backups `.1`, `.2`, ... (newest to oldest) as long as they exist."""
    yield path
    index = 1
    while backup_count is None or index <= backup_count:
        older = path.with_name(f"{path.name}.{index}")
        if not older.exists():
            return
        yield older
        index += 1


def newest_lines(paths: Iterable[Path], count: int, max_bytes: int) -> list[bytes]:
    """Up to `count` lines from the end of the files read in order, newest first.

    Stops early once `max_bytes` have been taken, so a few huge lines cannot make a
    tail read a whole disk.
    """
    found: list[bytes] = []
    taken = 0
    for path in paths:
        try:
            file = path.open("rb")
        except FileNotFoundError:
            continue
        with file:
            for line in lines_backwards(file, os.fstat(file.fileno()).st_size):
                if len(found) >= count or taken >= max_bytes:
                    return found
                found.append(line)
                taken += len(line) + 1
        if len(found) >= count:
            break
    return found
