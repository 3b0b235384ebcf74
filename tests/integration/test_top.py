"""`stackctl top` driven in a real pseudo-terminal against a real stack: what it shows,
its keys, its live refresh, and the terminal given back as it was."""

from __future__ import annotations

import termios
from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import STACKCTL
from tests.support.pty_screen import PtyProgram
from tests.support.workers import watcher_toml

ALT_SCREEN_OFF, CURSOR_ON = "\x1b[?1049l", "\x1b[?25h"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("top")) as cluster:
        cluster.apply(
            watcher_toml("alpha", cluster.tag, numprocesses=2)
            + watcher_toml("beta", cluster.tag, numprocesses=1)
        )
        cluster.wait_running("alpha", 2)
        cluster.wait_running("beta", 1)
        yield cluster


@pytest.fixture
def top(stack: Cluster) -> Iterator[PtyProgram]:
    program = PtyProgram([*STACKCTL, "--controller", stack.address, "top"], 24, 80)
    try:
        yield program
    finally:
        program.close()


def given_back(top: PtyProgram) -> None:
    """The terminal is as it was: normal screen, cursor shown, echo and lines on."""
    tail = top.output.decode(errors="replace")[-200:]
    assert tail.rfind(ALT_SCREEN_OFF) > tail.rfind("\x1b[H"), repr(tail)
    assert CURSOR_ON in tail
    modes = top.modes()
    assert modes == top.modes_before
    assert modes[3] & termios.ECHO and modes[3] & termios.ICANON


def test_top_shows_watchers_processes_and_events_within_80_columns(top: PtyProgram) -> None:
    screen = top.wait_screen("alpha", "beta", "processes of alpha", "events", "2/2")
    assert len(screen) <= 24
    assert all(len(line) <= 80 for line in screen), screen
    header = next(line for line in screen if "WATCHER" in line)
    assert all(word in header for word in ("RUNNING", "STATE", "CPU", "MEM"))
    alpha = next(line for line in screen if " alpha " in line)
    assert alpha.lstrip().startswith(">") and "2/2" in alpha and "active" in alpha
    processes = screen[screen.index(next(s for s in screen if "processes of alpha" in s)) :]
    assert sum(1 for line in processes if " h1 " in f" {line} " and "running" in line) >= 2
    assert screen[-1].startswith("q quit")
    top.type("q")
    assert top.wait_exit() == 0
    given_back(top)


def test_keys_select_a_watcher_and_filter_by_name(top: PtyProgram) -> None:
    top.wait_screen("processes of alpha")
    top.type("j")
    screen = top.wait_screen("processes of beta")
    assert next(line for line in screen if " beta " in line).lstrip().startswith(">")
    top.type("k")
    top.wait_screen("processes of alpha")
    top.type("/bet")
    top.wait_screen("filter: bet_")
    top.type("\r")
    screen = top.wait_screen("filter: bet (1 shown)", "processes of beta")
    assert not any(" alpha " in line for line in screen[:6])
    top.type("\x1b")
    top.wait_screen("processes of beta", " alpha ")
    top.type("q")
    assert top.wait_exit() == 0


def test_top_follows_a_change_without_a_key(stack: Cluster, top: PtyProgram) -> None:
    top.wait_line(" beta ", "1/1")
    assert stack.stackctl("scale", "beta", "2").code == 0
    try:
        top.wait_line(" beta ", "2/2")
        top.wait_line("beta", "scale")  # its event among the latest
    finally:
        assert stack.stackctl("scale", "beta", "1", "--wait").code == 0


def test_ctrl_c_quits_and_gives_the_terminal_back(top: PtyProgram) -> None:
    top.wait_screen("processes of alpha")
    top.type("\x03")
    assert top.wait_exit() == 0
    given_back(top)


def test_without_a_terminal_top_prints_one_plain_frame(stack: Cluster) -> None:
    result = stack.stackctl("top", check=True)
    assert "\x1b" not in result.out
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any(" alpha " in line and "2/2" in line for line in lines)
    assert "processes of alpha" in result.out
    assert "q quit" not in result.out
