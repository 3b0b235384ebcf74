"""What the agent was writing when it was killed: so that no output line is written twice.

Lines are taken out of a worker's pipe only after they are in their file (see
pipe_peek). A kill between the two would leave them in the pipe AND in the file, and a
new agent would write them again. So before each write the agent records its intent in
a slot of a small shared file mapping (`output.intents` in its data dir): the pipe, the
file (device and inode: it may have been rotated to `.1` since), the file's size before
and after the write, how many bytes of the pipe the written lines are, and a checksum
of those bytes. The slot is cleared once those bytes are taken out. The stores go to the
page cache, which outlives the process: a `kill -9` leaves the last intent as it was, at
no cost of a system call.

A new agent reads the intents left behind; when it takes back a pipe whose intent is
still set, it looks at the file: grown to the size after the write, the lines are in
it, and their bytes are taken out of the pipe first if they are still at its head (same
length and checksum: a kill between the take-out and the clearing of the slot left them
taken already, and what is at the head then is newer output); not grown, they are read
again; grown only part way (the kill cut the write short), the file is cut back and they
are read again. One agent writes one chunk at a time, so at most one intent is ever set.
Output that repeats itself byte for byte can fool the checksum: a kill in the instant
between a take-out and the clearing of its slot may then drop one chunk of those
identical lines.

A slot is valid when its check word matches its fields: the check is cleared first and
written last, so a slot caught half written is simply not set.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from stack.security.safe_files import open_update, opened_dir

log = logging.getLogger(__name__)

FILE = "output.intents"
_FIELDS = struct.Struct("<6QII")
"""pipe device, pipe inode, file device, file inode, size before, size after, pipe bytes,
checksum of those bytes (0: unknown, in a slot of an agent that recorded none: the upper
half of its 8-byte count, always 0 since a chunk is at most a pipe's size)"""
_CHECK = struct.Struct("<Q")
SLOT = 64
_MAGIC = 0x5354_4B49 << 32
"""In every check word: a zeroed slot never passes for a set one."""
_INITIAL_SLOTS = 64


@dataclass(frozen=True)
class Intent:
    """A write recorded before it was made (see the module's docstring)."""

    pipe: tuple[int, int]
    file: tuple[int, int]
    size_before: int
    size_after: int
    pipe_bytes: int
    pipe_crc: int = 0
    """zlib.crc32 of the pipe bytes (0: not known)."""

    def still_in(self, head: bytes) -> bool:
        """Whether `head`, peeked from the front of the pipe, starts with these bytes
        (with no checksum known, as an agent that recorded none did: assumed so)."""
        if not self.pipe_crc:
            return True
        return len(head) >= self.pipe_bytes and checksum(head[: self.pipe_bytes]) == self.pipe_crc


def checksum(data: bytes | memoryview) -> int:
    """The checksum an intent keeps of its pipe bytes (never 0, which means unknown)."""
    return zlib.crc32(data) or 1


def _check(fields: bytes) -> int:
    return _MAGIC | zlib.crc32(fields)


class Intents:
    """The slots of one agent, in `folder`/output.intents (in memory without a folder)."""

    def __init__(self, folder: Path | None) -> None:
        fd = -1
        self.left: dict[tuple[int, int], tuple[int, Intent]] = {}
        """pipe -> (slot, intent): what a killed agent left set, until its pipe is back."""
        if folder is not None:
            try:
                with opened_dir(folder) as dir_fd:
                    fd = open_update(dir_fd, FILE, shown=str(folder / FILE))
            except OSError as exc:  # (UnsafeFile is one)
                log.error("output lines may be written twice after a crash: %s", exc)
        try:
            size = os.fstat(fd).st_size if fd >= 0 else 0
            slots = max(_INITIAL_SLOTS, size // SLOT)
            if fd >= 0 and size < slots * SLOT:
                os.ftruncate(fd, slots * SLOT)
            self._map = mmap.mmap(fd, slots * SLOT)  # (holds its own copy of fd)
        finally:
            if fd >= 0:
                os.close(fd)
        self._free = list(range(slots - 1, -1, -1))
        for slot in range(slots):
            intent = self._read(slot)
            if intent is not None:
                self.left[intent.pipe] = (slot, intent)
                self._free.remove(slot)

    def _read(self, slot: int) -> Intent | None:
        offset = slot * SLOT
        fields = self._map[offset + 8 : offset + 8 + _FIELDS.size]
        if _CHECK.unpack_from(self._map, offset)[0] != _check(fields):
            return None
        pipe_dev, pipe_ino, file_dev, file_ino, before, after, count, crc = _FIELDS.unpack(fields)
        return Intent((pipe_dev, pipe_ino), (file_dev, file_ino), before, after, count, crc)

    def take_slot(self) -> int:
        if not self._free:
            slots = len(self._map) // SLOT
            self._map.resize(2 * slots * SLOT)
            self._free = list(range(2 * slots - 1, slots - 1, -1))
        return self._free.pop()

    def give_back(self, slot: int) -> None:
        self.clear(slot)
        self._free.append(slot)

    def record(self, slot: int, intent: Intent) -> None:
        offset = slot * SLOT
        fields = _FIELDS.pack(*intent.pipe, *intent.file, intent.size_before,
                              intent.size_after, intent.pipe_bytes, intent.pipe_crc)  # fmt: skip
        _CHECK.pack_into(self._map, offset, 0)
        self._map[offset + 8 : offset + 8 + _FIELDS.size] = fields
        _CHECK.pack_into(self._map, offset, _check(fields))

    def clear(self, slot: int) -> None:
        _CHECK.pack_into(self._map, slot * SLOT, 0)

    def claim(self, pipe: tuple[int, int]) -> tuple[int, Intent] | None:
        """(slot, intent) a killed agent left set for `pipe`: the slot is the pipe's own
        from now on, to be cleared once the intent is settled."""
        return self.left.pop(pipe, None)

    def forget_left(self) -> None:
        """Clear what no pipe taken back claimed (its worker is gone)."""
        for slot, _ in self.left.values():
            self.give_back(slot)
        self.left.clear()

    def close(self) -> None:
        self._map.close()
