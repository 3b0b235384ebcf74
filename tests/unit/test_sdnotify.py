"""stack.sdnotify against real unix datagram sockets bound by the test."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.sdnotify import ENV, Notifier, socket_address


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket on a filesystem path, as systemd binds one."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def _fields(sock: socket.socket) -> list[str]:
    data = sock.recv(4096)
    assert data.endswith(b"\n"), data
    return data.decode().splitlines()


def test_ready_sends_ready_and_status_in_one_datagram(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier.from_environment({ENV: path})
    assert notifier.ready("serving on 127.0.0.1:7450")
    assert _fields(sock) == ["READY=1", "STATUS=serving on 127.0.0.1:7450"]


def test_abstract_socket_named_with_at_sign_receives_notifications() -> None:
    name = f"stack-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environment({ENV: "@" + name})
        assert notifier.stopping("stopping every worker")
        assert _fields(sock) == ["STOPPING=1", "STATUS=stopping every worker"]


def test_a_multi_line_status_cannot_inject_other_fields(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    assert Notifier.from_environment({ENV: path}).status("first\nREADY=1")
    assert _fields(sock) == ["STATUS=first READY=1"]


def test_notify_socket_is_removed_from_the_environment_workers_inherit(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    env = {ENV: path, "PATH": "/usr/bin"}
    notifier = Notifier.from_environment(env)
    assert env == {"PATH": "/usr/bin"}
    assert notifier.status("still knows where to send")
    assert _fields(sock) == ["STATUS=still knows where to send"]


def test_keeping_the_variable_when_asked(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    env = {ENV: path}
    assert Notifier.from_environment(env, unset=False).enabled
    assert env == {ENV: path}


def test_reads_the_process_environment_by_default(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv(ENV, path)
    notifier = Notifier.from_environment()
    assert ENV not in os.environ
    assert notifier.ready("up")
    assert _fields(sock)[0] == "READY=1"


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("up")
    assert not notifier.stopping("down")


@pytest.mark.parametrize("value", ["relative/notify", "vsock:2:1234", "@"])
def test_unsupported_addresses_disable_notifications(value: str) -> None:
    assert socket_address(value) is None
    assert not Notifier.from_environment({ENV: value}).enabled


def test_a_socket_nobody_listens_on_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environment({ENV: str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="stack.sdnotify"):
        assert not notifier.ready("up")
    assert "cannot notify the service manager" in caplog.text
    assert str(tmp_path / "gone") in caplog.text
