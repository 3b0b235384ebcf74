"""Size-rotated output files, written through a buffer and flushed on a short interval.

One file per watcher and stream (`<watcher>.out.log` by default). Lines arrive in
chunks; a chunk that fits is one buffered write, rotation happens at line boundaries
so no line is split across two files.
"""

from __future__ import annotations

import contextlib
import os
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
