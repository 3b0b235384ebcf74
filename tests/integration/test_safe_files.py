"""stack.security.safe_files on real files: what it follows, refuses, creates and removes."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from stack.security.safe_files import (
    UnsafeFile,
    open_append,
    open_dir,
    open_read,
    opened_dir,
    own_ids,
    private_dir,
    unlink_if_same,
    walk_dir,
    write_atomic,
)
from tests.support.users import User, needs_root


def _path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_symlinks_in_directories_only_the_agent_can_change_are_followed(tmp_path: Path) -> None:
    (tmp_path / "real" / "deeper").mkdir(parents=True)
    (tmp_path / "link").symlink_to("real")  # relative
    (tmp_path / "real" / "up").symlink_to(tmp_path / "real" / "deeper")  # absolute
    tmp_path.chmod(0o755)
    (tmp_path / "real").chmod(0o755)
    with opened_dir(tmp_path / "link" / "up") as fd:
        assert _path_of(fd) == str(tmp_path / "real" / "deeper")
    fd, stable = walk_dir(tmp_path / "link" / "up" / ".." / "deeper")
    os.close(fd)
    assert stable


@needs_root
def test_a_symlink_in_a_directory_another_user_can_write_is_refused(
    tmp_path: Path, user: User
) -> None:
    tmp_path.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, user.uid, user.gid)
    (home / "sub").mkdir()
    (home / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeFile) as caught:
        open_dir(home / "link" / "home")
    assert str(caught.value) == (
        f"{home / 'link'}: is a symlink in a directory that other users can write; not followed"
    )
    fd, stable = walk_dir(home / "sub")
    os.close(fd)
    assert not stable, "home could be swapped between a check and a use by name"
    fd, stable = walk_dir(home)
    os.close(fd)
    assert stable, "its parent is the agent's alone"


@needs_root
def test_in_a_sticky_directory_only_roots_own_symlinks_are_followed(
    tmp_path: Path, user: User
) -> None:
    tmp_path.chmod(0o755)
    ours, theirs = (Path("/tmp") / f"stack-link-{secrets.token_hex(4)}" for _ in range(2))
    try:
        ours.symlink_to(tmp_path)
        theirs.symlink_to(tmp_path)
        os.chown(theirs, user.uid, user.gid, follow_symlinks=False)
        with opened_dir(ours) as fd:
            assert _path_of(fd) == str(tmp_path)
        with pytest.raises(UnsafeFile, match="is a symlink in a directory that other users"):
            open_dir(theirs)
    finally:
        ours.unlink(missing_ok=True)
        theirs.unlink(missing_ok=True)


def test_group_or_world_writable_directories_are_not_trusted_with_symlinks(
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o775)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    with pytest.raises(UnsafeFile, match="is a symlink in a directory that other users can write"):
        open_dir(tmp_path / "link")


def test_missing_directories_are_created_0700_and_a_file_in_the_way_is_no_directory(
    tmp_path: Path,
) -> None:
    os.umask(old := os.umask(0o022))
    with opened_dir(tmp_path / "a" / "b", create=True):
        pass
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        open_dir(tmp_path / "file" / "x", create=True)
    with pytest.raises(FileNotFoundError):
        open_dir(tmp_path / "missing")
    assert old == os.umask(old)


def test_private_dir_tightens_a_loose_directory(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o755)
    private_dir(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_files_are_created_with_their_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with opened_dir(tmp_path) as dir_fd:
            fd, created = open_append(dir_fd, "a.log", owners=own_ids())
            os.close(fd)
            fd, created_again = open_append(dir_fd, "a.log", owners=own_ids())
            os.close(fd)
        write_atomic(tmp_path / "state.json", b"{}", durable=True)
    finally:
        os.umask(old)
    assert (created, created_again) == (True, False)
    assert stat.S_IMODE((tmp_path / "a.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "state.json"]


def test_a_fifo_or_a_symlink_is_neither_opened_nor_followed(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # opening it to write would block without a reader
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to("target")
    with opened_dir(tmp_path) as dir_fd:
        with pytest.raises(UnsafeFile, match="fifo: is not a regular file"):
            open_append(dir_fd, "fifo", owners=own_ids())
        with pytest.raises(UnsafeFile, match="link: is a symlink; not followed"):
            open_append(dir_fd, "link", owners=own_ids())
        with pytest.raises(UnsafeFile, match="link: is a symlink; not followed"):
            open_read(dir_fd, "link", owners=own_ids())
    assert (tmp_path / "target").read_bytes() == b"x"


def test_unlink_removes_only_the_inode_it_was_given(tmp_path: Path) -> None:
    (tmp_path / "sock").write_bytes(b"")
    info = (tmp_path / "sock").stat()
    held = os.open(tmp_path / "sock", os.O_RDONLY)  # its inode is not reused meanwhile
    (tmp_path / "sock").unlink()
    (tmp_path / "sock").write_bytes(b"someone else's")
    with opened_dir(tmp_path) as dir_fd:
        assert not unlink_if_same(dir_fd, "sock", info.st_dev, info.st_ino)
        now = (tmp_path / "sock").stat()
        assert unlink_if_same(dir_fd, "sock", now.st_dev, now.st_ino)
    os.close(held)
    assert not (tmp_path / "sock").exists()
