"""Output files, written through as lines arrive, rotated by size or time or by others.

One file per watcher and stream (`<watcher>.out.log` by default). Lines arrive in
chunks (one peek of a pipe); a chunk that fits is one write(2) straight to the file,
with no buffer in the agent: a line is in the kernel's page cache when write_lines
returns, and a `WriteJournal` hears of each write before and after it, so that the
lines are taken out of the worker's pipe only then (see output_intents). Rotation
happens at line boundaries so no line is split across two files. Tails are read back
from the end of these files (and their backups) block by block.

Circus's stream classes choose how a file rotates: by size (FileStream, the default),
by time (TimedRotatingFileStream: the deadlines of `rotation.next_rotation`, the backups
numbered as by size, so that tails read them alike), or by another tool
(WatchedFileStream: before each write the file is looked up again by name in its
directory, and when the name no longer leads to the file being written, because
logrotate moved or removed it, the name is opened again, by the same rules).

The agent writes these files as root, often in a directory that the worker's user can
write, so every file is opened, rotated and read through `stack.security.safe_files`:
relative to the directory's descriptor, never through a symlink, only a regular file
with one link owned by the agent or by the worker's user, and created 0600 (0640 with
an operator's group). A file that cannot be used safely is not written; the
`problem` says why and the lines still reach the controller.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from stack.agent.rotation import next_rotation
from stack.security.safe_files import (
    UnsafeFile,
    open_append,
    open_dir,
    open_read,
    opened_dir,
    own_ids,
    rename,
    same_file,
    tighten_file,
    unlink_if_same,
)

log = logging.getLogger(__name__)


def describe(exc: OSError, path: Path) -> str:
    """One line for an OSError about `path` (UnsafeFile already is one)."""
    if isinstance(exc, UnsafeFile):
        return str(exc)
    return f"{exc.filename or path}: {exc.strerror or exc}"


class WriteJournal(Protocol):
    """Told of each write of lines to a file, before and after it (see output_intents)."""

    def before(self, lines: int, inode: tuple[int, int], size: int, size_after: int) -> None:
        """`lines` lines are about to take file `inode` from `size` to `size_after` bytes."""

    def after(self, lines: int) -> None:
        """They were written."""


class RotatingFile:
    """An append-only file that rotates to `.1` ... `.N` when it would pass max_bytes
    (0: never), or when `rotate_when` (S, M, H, D, MIDNIGHT, W0-W6) says so.

    `owners` are the users an existing file may belong to (default: root and the
    agent's user); `mode` and `group` apply to the files it creates. `report` is
    called with one line each time the file stops being written. With `watched`,
    another tool rotates the file: it is opened again by name once moved or removed.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backup_count: int,
        *,
        owners: Collection[int] = (),
        mode: int = 0o600,
        group: int | None = None,
        report: Callable[[str], None] | None = None,
        rotate_when: str = "",
        rotate_interval: int = 1,
        watched: bool = False,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.rotate_when = rotate_when
        self.rotate_interval = rotate_interval
        self.watched = watched
        self._rotate_at = math.inf
        self.owners = frozenset(owners) | own_ids()
        self.mode = mode
        self.group = group
        self.problem = ""
        """Why the file is not written ("" while it is)."""
        self._report = report
        self._dir_fd = -1
        self._file: BinaryIO | None = None
        self._inode = (0, 0)
        self._size = 0
        try:
            self._dir_fd = open_dir(path.parent, create=True)
            self._open()
            for index in range(1, backup_count + 1):  # backups an older agent left readable
                tighten_file(self._dir_fd, f"{path.name}.{index}", mode)
        except OSError as exc:
            self._fail(exc)

    def _open(self) -> None:
        fd, _ = open_append(
            self._dir_fd,
            self.path.name,
            owners=self.owners,
            mode=self.mode,
            group=self.group,
            shown=str(self.path),
        )
        info = os.fstat(fd)
        self._inode = (info.st_dev, info.st_ino)
        self._size = info.st_size
        self._file = os.fdopen(fd, "ab", buffering=0)
        if self.rotate_when:  # a file begun in an earlier period rotates at its next line
            self._rotate_at = next_rotation(info.st_mtime, self.rotate_when, self.rotate_interval)

    def _fail(self, exc: OSError) -> None:
        self.close()
        self.problem = describe(exc, self.path)
        if self._report is not None:
            self._report(self.problem)  # the engine logs it once, as an event
        else:
            log.error("not writing output to %s", self.problem)

    def write_lines(
        self, lines: list[bytes], now: float | None = None, journal: WriteJournal | None = None
    ) -> None:
        """Append complete lines (each with its trailing newline) read at unix time
        `now` (by default the current time), which a timed rotation goes by.

        `journal` hears of each write(2) before and after it (a rotation between two
        lines makes two), with how many of `lines` it holds."""
        if self.watched and self._file is not None:
            self._follow()
        if self.rotate_when and self._file is not None:
            self._rotate_if_due(time.time() if now is None else now)
        if self._file is None:
            return
        blob = b"".join(lines)
        if self.max_bytes <= 0 or self._size + len(blob) <= self.max_bytes:
            self._write_journaled(blob, len(lines), journal)
            return
        pending: list[bytes] = []
        pending_bytes = 0
        for line in lines:
            size = self._size + pending_bytes
            if size > 0 and size + len(line) > self.max_bytes:
                self._write_journaled(b"".join(pending), len(pending), journal)
                pending = []
                pending_bytes = 0
                try:
                    self._rotate()
                except OSError as exc:
                    self._fail(exc)
                    return
            pending.append(line)
            pending_bytes += len(line)
        self._write_journaled(b"".join(pending), len(pending), journal)

    def _write_journaled(self, blob: bytes, count: int, journal: WriteJournal | None) -> None:
        if journal is None or not count:
            self._write(blob)
            self._size += len(blob)
            return
        journal.before(count, self._inode, self._size, self._size + len(blob))
        self._write(blob)
        self._size += len(blob)
        journal.after(count)

    def was_written(self, inode: tuple[int, int], before: int, after: int) -> bool:
        """Whether a write that took file `inode` from size `before` to `after` was made,
        for a kill of the agent around it (see output_intents).

        The file is this one or one of its backups. One the write left part way (the
        kill cut it short) is cut back to `before`: not written. One no longer found
        (another tool moved it away) was written: a write takes microseconds, not the
        time it takes to move a file."""
        if self._file is not None and self._inode == inode:
            fd = self._file.fileno()
            size = os.fstat(fd).st_size
            if size >= after:
                return True
            if size > before:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, before)
                    self._size = before
            return False
        if self._dir_fd < 0:
            return True
        for index in range(1, self.backup_count + 1):
            try:
                info = os.stat(f"{self.path.name}.{index}", dir_fd=self._dir_fd,
                               follow_symlinks=False)  # fmt: skip
            except OSError:
                break
            if (info.st_dev, info.st_ino) == inode:
                return info.st_size > before
        return True

    def _rotate_if_due(self, now: float) -> None:
        if now < self._rotate_at:
            return
        if self._size == 0:  # nothing to keep: the period starts again from now
            self._rotate_at = next_rotation(now, self.rotate_when, self.rotate_interval)
            return
        try:
            self._rotate()
        except OSError as exc:
            self._fail(exc)

    def _follow(self) -> None:
        """Open the path again when it no longer names the file being written."""
        assert self._file is not None
        dev, ino = self._inode
        if same_file(self._dir_fd, self.path.name, dev, ino):
            return
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None
        try:
            self._open()
        except OSError as exc:
            self._fail(exc)

    def _write(self, blob: bytes) -> None:
        """All of `blob` (a full disk loses it from the file; shipping still has it)."""
        view = memoryview(blob)
        with contextlib.suppress(OSError):
            while view and self._file is not None:
                written = self._file.write(view)
                if not written:
                    return
                view = view[written:]

    def _rotate(self) -> None:
        """Shift the backups and start a new file, all inside the directory's descriptor.

        Only the file this object wrote becomes `.1` (compared by device and inode):
        whatever else stands at its name now (a symlink someone put there) is left
        alone, and the new file is then refused rather than followed.
        """
        assert self._file is not None
        self._file.close()
        self._file = None
        name, (dev, ino) = self.path.name, self._inode
        if self.backup_count <= 0:
            unlink_if_same(self._dir_fd, name, dev, ino)
        else:
            for index in range(self.backup_count - 1, 0, -1):
                rename(self._dir_fd, f"{name}.{index}", f"{name}.{index + 1}")
            if same_file(self._dir_fd, name, dev, ino):
                rename(self._dir_fd, name, f"{name}.1")
        self._open()

    def flush(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


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


def newest_lines(
    path: Path,
    backup_count: int | None,
    count: int,
    max_bytes: int,
    owners: Collection[int] = (),
) -> list[bytes]:
    """Up to `count` lines from the end of `path` and then its backups `.1`, `.2`, ...
    (up to `backup_count`, or as long as they exist when None), newest first.

    Stops early once `max_bytes` have been taken, so a few huge lines cannot make a
    tail read a whole disk. Files are opened as `safe_files.open_read` does, with
    `owners` (and the agent's user) as the users they may belong to: a symlink or a
    file someone else owns is skipped and logged, never read.
    """
    found: list[bytes] = []
    taken = 0
    allowed = frozenset(owners) | own_ids()
    try:
        with opened_dir(path.parent) as dir_fd:
            for name in _rotated_names(path.name, backup_count):
                try:
                    fd = open_read(dir_fd, name, owners=allowed, shown=str(path.parent / name))
                except FileNotFoundError:
                    if name == path.name:
                        continue  # removed by hand: the backups still answer
                    break
                except OSError as exc:
                    log.warning("tail skips %s", describe(exc, path.parent / name))
                    continue
                with os.fdopen(fd, "rb") as file:
                    for line in lines_backwards(file, os.fstat(file.fileno()).st_size):
                        if len(found) >= count or taken >= max_bytes:
                            return found
                        found.append(line)
                        taken += len(line) + 1
                if len(found) >= count:
                    break
    except FileNotFoundError:
        return found
    except OSError as exc:
        log.warning("tail cannot read %s", describe(exc, path.parent))
    return found


def _rotated_names(name: str, backup_count: int | None) -> Iterator[str]:
    yield name
    index = 1
    while backup_count is None or index <= backup_count:
        yield f"{name}.{index}"
        index += 1
