"""Files and directories touched as root in places other users may control.

The agent runs as root and writes log files, binds unix sockets and keeps its state at
paths a stack file names, often in directories that the worker's user can write. A
plain `open(path)` there follows whatever symlink that user put in place, so the root
agent would append to, read or unlink any file on the host. Everything here works from
directory file descriptors instead:

- `open_dir` walks a path one component at a time with `O_DIRECTORY | O_NOFOLLOW`.
  A symlink is followed only where no one but root (or the agent's own user) can have
  put it: in a directory they own that neither group nor others may write, or their own
  link in a sticky one (`/var/run` -> `/run` is fine; a link in a user's directory is
  refused). The result names the directory that was checked, whatever happens to the
  path afterwards.
- Files are then opened relative to that descriptor with `O_NOFOLLOW` and checked with
  `fstat`: a regular file, one link, owned by an expected user. New files are created
  0600 (or as asked) whatever the umask, with `O_EXCL`, so the agent knows it made them.
- Renames and unlinks stay inside the directory descriptor, and an unlink removes only
  the inode the caller says it made (device and inode compared).

Failures are `UnsafeFile` (an OSError) with one line naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections import deque
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SYMLINKS = 40
"""As many symlinks as the kernel follows in one path before ELOOP."""
MAX_CREATE_ATTEMPTS = 1000
"""Directories created (or found gone again) in one walk at most."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeFile(OSError):
    """A path that the agent refuses to follow, create or use; str() is one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(errno.EPERM, reason, str(path))
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.filename}: {self.reason}"


def own_ids() -> frozenset[int]:
    """Users whose files the agent trusts as its own: root and its effective user."""
    return frozenset({0, os.geteuid()})


def _trusted(folder: os.stat_result, entry: os.stat_result) -> bool:
    """Whether only root or the agent's user can replace `entry` in directory `folder`:
    they own a directory that neither group nor others may write, or it is sticky (like
    /tmp) and they own both it and the entry."""
    ours = own_ids()
    if folder.st_uid not in ours:
        return False
    if not folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return True
    return bool(folder.st_mode & stat.S_ISVTX) and entry.st_uid in ours


def _open_component(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:  # not root: a directory we may only search
        return os.open(name, _DIR_FLAGS | os.O_PATH, dir_fd=dir_fd)


def open_dir(path: str | Path, *, create: bool = False, mode: int = 0o700) -> int:
    """A descriptor of directory `path`, walked without trusting anyone else's symlinks.

    With `create`, missing directories are made with `mode` (or tighter, by the umask).
    The caller closes the descriptor. Raises UnsafeFile, FileNotFoundError or
    NotADirectoryError.
    """
    return walk_dir(path, create=create, mode=mode)[0]


def walk_dir(path: str | Path, *, create: bool = False, mode: int = 0o700) -> tuple[int, bool]:
    """`open_dir`, and whether the path is stable: every directory it passed through
    (the last one aside) can be changed by root or the agent's user alone, so that
    resolving `path` again by name reaches the same directory."""
    absolute = os.path.abspath(path)
    stable = True
    parts = deque(part for part in absolute.split("/") if part)
    fd = os.open("/", _DIR_FLAGS)
    walked = "/"
    hops = attempts = 0
    try:
        while parts:
            name = parts.popleft()
            if name == ".":
                continue
            try:
                child = _open_component(name, fd)
            except FileNotFoundError:
                if not create:
                    raise FileNotFoundError(
                        errno.ENOENT, "no such directory", os.path.join(walked, name)
                    ) from None
                attempts += 1  # a name that keeps vanishing as it is created ends here
                if attempts > MAX_CREATE_ATTEMPTS:
                    raise UnsafeFile(os.path.join(walked, name), "keeps changing") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, mode, dir_fd=fd)  # the umask can only make it tighter
                parts.appendleft(name)  # open what is there now, by the same rules
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                here = os.path.join(walked, name)
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", here) from None
                if not _trusted(os.fstat(fd), info):
                    raise UnsafeFile(
                        here, "is a symlink in a directory that other users can write; not followed"
                    ) from None
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise UnsafeFile(absolute, "too many levels of symlinks") from None
                target = os.readlink(name, dir_fd=fd)
                parts.extendleft(reversed([part for part in target.split("/") if part]))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                    walked = "/"
                continue
            stable = stable and _trusted(os.fstat(fd), os.fstat(child))
            os.close(fd)
            fd = child
            walked = os.path.normpath(os.path.join(walked, name))
    except BaseException:
        os.close(fd)
        raise
    return fd, stable


@contextmanager
def opened_dir(path: str | Path, *, create: bool = False, mode: int = 0o700) -> Iterator[int]:
    """`open_dir` as a context manager that closes the descriptor."""
    fd = open_dir(path, create=create, mode=mode)
    try:
        yield fd
    finally:
        os.close(fd)


def private_dir(path: str | Path, files: Collection[str] = ()) -> None:
    """Make sure directory `path` exists and is 0700, and that its `files` (those that
    exist) are 0600. Looser ones of ours are tightened, and the tightening logged.
    Raises OSError (UnsafeFile included) when it cannot."""
    with opened_dir(path, create=True) as fd:
        info = os.fstat(fd)
        if info.st_uid not in own_ids():
            raise UnsafeFile(path, f"is owned by uid {info.st_uid}, not by root or this user")
        loose = stat.S_IMODE(info.st_mode)
        if loose & 0o077:
            os.chmod(f"/proc/self/fd/{fd}", 0o700)
            log.warning("tightened the permissions of %s from %04o to 0700", path, loose)
        for name in files:
            if tighten_file(fd, name):
                log.warning("tightened the permissions of %s to 0600", Path(path) / name)


def _check(fd: int, shown: str, owners: Collection[int]) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(shown, "is not a regular file")
    if info.st_nlink != 1:
        raise UnsafeFile(shown, f"has {info.st_nlink} hard links")
    if info.st_uid not in owners:
        raise UnsafeFile(shown, f"is owned by uid {info.st_uid}")
    return info


def _open_existing(dir_fd: int, name: str, flags: int, shown: str) -> int:
    """Open an existing entry, refusing symlinks and anything but a regular file
    (devices and FIFOs are not even opened when they are seen in time)."""
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFile(shown, "is a symlink; not followed")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(shown, "is not a regular file")
    try:
        return os.open(name, flags | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(shown, "is a symlink; not followed") from None
        raise


def open_append(
    dir_fd: int,
    name: str,
    *,
    owners: Collection[int],
    mode: int = 0o600,
    group: int | None = None,
    shown: str = "",
) -> tuple[int, bool]:
    """(descriptor, created) of file `name` in `dir_fd`, opened to append.

    A new file is created with exactly `mode` (and `group`, if given). An existing one
    must be a regular file with one link owned by one of `owners`; when it is the
    agent's own, a looser mode than `mode` is tightened. Raises UnsafeFile.
    """
    return _open_or_create(dir_fd, name, os.O_WRONLY | os.O_APPEND, owners, mode, group, shown)


def open_update(dir_fd: int, name: str, *, shown: str = "") -> int:
    """A descriptor to read and write the agent's own file `name` in `dir_fd` (0600),
    created if missing, by the rules of open_append. Raises UnsafeFile."""
    return _open_or_create(dir_fd, name, os.O_RDWR, own_ids(), 0o600, None, shown)[0]


def _open_or_create(
    dir_fd: int,
    name: str,
    flags: int,
    owners: Collection[int],
    mode: int,
    group: int | None,
    shown: str,
) -> tuple[int, bool]:
    shown = shown or name
    for _ in range(3):  # the name may come and go while we look; give up after a few
        try:
            fd = os.open(name, flags | _FILE_FLAGS | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd)
            created = True
        except FileExistsError:
            try:
                fd = _open_existing(dir_fd, name, flags, shown)
            except FileNotFoundError:
                continue
            created = False
        break
    else:
        raise UnsafeFile(shown, "keeps changing while it is opened")
    try:
        info = _check(fd, shown, owners)
        if created or info.st_uid in own_ids():
            if created or stat.S_IMODE(info.st_mode) & ~mode:
                os.fchmod(fd, mode)
            if group is not None and info.st_gid != group:
                os.fchown(fd, -1, group)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def open_read(dir_fd: int, name: str, *, owners: Collection[int], shown: str = "") -> int:
    """A descriptor to read file `name` in `dir_fd`: a regular file with one link owned
    by one of `owners`, never through a symlink. Raises UnsafeFile or FileNotFoundError."""
    shown = shown or name
    fd = _open_existing(dir_fd, name, os.O_RDONLY, shown)
    try:
        _check(fd, shown, owners)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(dir_fd: int, name: str, dev: int, ino: int) -> bool:
    """Whether `name` in `dir_fd` is (without following a symlink) inode `ino` of `dev`."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (info.st_dev, info.st_ino) == (dev, ino)


def unlink_if_same(dir_fd: int, name: str, dev: int, ino: int) -> bool:
    """Unlink `name` in `dir_fd` only if it is still inode `ino` of `dev`; True if done."""
    if not same_file(dir_fd, name, dev, ino):
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def rename(dir_fd: int, old: str, new: str) -> bool:
    """Rename `old` to `new` inside `dir_fd` (a symlink is renamed, never followed);
    False when `old` does not exist."""
    try:
        os.rename(old, new, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def write_atomic(path: Path, data: bytes, *, durable: bool, mode: int = 0o600) -> None:
    """Replace file `path` with `data`, created with `mode` from the first byte.

    A temporary file in the same directory is written (and fsynced when `durable`, with
    the directory after the rename) and renamed over `path`.
    """
    with opened_dir(path.parent, create=True) as dir_fd:
        # os.urandom, not secrets: that imports random, hmac and base64 into the agent
        temp = f".{path.name}.{os.urandom(4).hex()}.tmp"
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        if durable:
            os.fsync(dir_fd)


def read_private(path: Path, *, owners: Collection[int] | None = None) -> bytes:
    """The content of file `path`, opened as `open_read` does (owners: the agent's own).

    Raises FileNotFoundError when it is missing, UnsafeFile when it is not to be trusted.
    """
    with opened_dir(path.parent) as dir_fd:
        fd = open_read(dir_fd, path.name, owners=owners or own_ids(), shown=str(path))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def tighten_file(dir_fd: int, name: str, mode: int = 0o600) -> bool:
    """Chmod file `name` down to `mode` if it is the agent's own and looser; True if done.

    Missing files, symlinks, anything but a regular file and files with more than one
    link are left alone."""
    try:
        fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid not in own_ids():
            return False
        if not stat.S_IMODE(info.st_mode) & ~mode:
            return False
        os.fchmod(fd, mode)
        return True
    finally:
        os.close(fd)
