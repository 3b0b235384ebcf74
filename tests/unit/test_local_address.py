"""Addresses and defaults of the local socket: what stackctl, agents and the controller
take and use when told nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.agent.main import parse_args as agent_args
from stack.controller.main import parse_args as controller_args
from stack.security.local import check_addresses, default_address, default_socket, unix_path


def test_addresses_are_unix_paths_or_host_ports_alone_or_in_a_list() -> None:
    assert check_addresses("unix:/run/c.sock") == "unix:/run/c.sock"
    assert check_addresses(" 10.0.0.1:7450 , unix:relative.sock") == (
        "10.0.0.1:7450,unix:relative.sock"
    )
    assert unix_path("unix:///var/lib/x.sock") == "/var/lib/x.sock"
    for bad in ("unix:", "nonsense", "h:0", "h:70000", "127.0.0.1:7450,"):
        with pytest.raises(ValueError, match="expected unix:PATH or HOST:PORT"):
            check_addresses(bad)


def test_the_default_socket_is_the_default_controllers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_address() == "unix:/var/lib/stack-controller/controller.sock"
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", "/home/ann")
    assert default_socket() == Path("/home/ann/.local/state/stack/controller/controller.sock")


def test_an_agent_told_nothing_dials_the_local_controller_and_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACK_CONTROLLER", raising=False)
    assert agent_args(["--data-dir", str(tmp_path)]).settings.controller == default_address()
    monkeypatch.setenv("STACK_CONTROLLER", "unix:/srv/ctl/controller.sock")
    settings = agent_args(["--data-dir", str(tmp_path)]).settings
    assert settings.controller == "unix:/srv/ctl/controller.sock"


def test_a_controller_told_nothing_serves_its_data_dirs_socket_and_no_tcp(tmp_path: Path) -> None:
    settings = controller_args(["--data-dir", str(tmp_path)])
    assert (settings.listen, settings.socket_path) == ("", tmp_path / "controller.sock")
    insecure = controller_args(["--data-dir", str(tmp_path), "--insecure"])
    assert insecure.listen == "127.0.0.1:7450"
    moved = controller_args(["--socket", "/run/s/c.sock", "--socket-group", "0"])
    assert (moved.socket_path, moved.socket_group) == (Path("/run/s/c.sock"), 0)
