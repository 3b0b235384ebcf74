"""Bad input gets one clear line and changes nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import ROOT, STACKCTL, stack_env

GOOD = '[watchers.w]\ncmd = "sleep 3600"\nnumprocesses = 2\n'

BAD_FILES = [
    ('[watchers.w]\ncmd = "sleep 3600"\nnumprocesses = -3\n',
     "bad.toml: watchers.w.numprocesses: must be >= 0, got -3"),
    ('[watchers.w]\ncmd = "sleep 3600"\ncolour = "red"\n',
     "bad.toml: watchers.w.colour: unknown option"),
    ('[watchers.w]\ncmd = "sleep 3600"\nnumprocesses = "four"\n',
     "bad.toml: watchers.w.numprocesses: must be an integer"),
    ('[watchers.w]\ncmd = "sleep 3600"\nsockets = ["db"]\n',
     "bad.toml: watchers.w.sockets: undefined socket 'db'"),
    ('[watchers.w\ncmd = "sleep 3600"\n', "bad.toml: line 1"),
    ('[watchers.w]\ncmd = "sleep 3600"\nnumprocesses = 20000\n',
     "bad.toml: watchers.w.numprocesses: must be <= 10000, got 20000"),
    ('[watchers.w]\ncmd = "sleep 3600"\nstop_signal = "NOPE"\n',
     "bad.toml: watchers.w.stop_signal"),
]  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One stack for the cases that each check that their bad input changed nothing (each
    applies GOOD first, which changes nothing either once applied): a stack of its own
    for each would only repeat its start and stop."""
    with running_cluster(tmp_path_factory.mktemp("errors") / "stack") as running:
        yield running


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_stack_file_is_refused_with_one_line_and_changes_nothing(
    shared: Cluster, text: str, message: str
) -> None:
    cluster = shared
    cluster.apply(GOOD)
    pids = cluster.wait_running("w", 2)
    before = cluster.stackctl("export", check=True).out
    bad = cluster.root / "bad.toml"
    bad.write_text(text)

    result = cluster.stackctl("apply", "bad.toml")
    assert result.code == 1
    assert result.err.count("\n") == 1 and message in result.err, result
    assert "Traceback" not in result.err
    assert cluster.stackctl("export", check=True).out == before
    assert cluster.running_pids("w") == pids


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scale", "nope", "3"], "unknown watcher 'nope'"),
        (["scale", "w", "-5"], "count must be between 0 and 10000, got -3"),
        (["scale", "w", "1000000"], "count must be between 0 and 10000, got 1000000"),
        (["stop", "nope"], "unknown watcher 'nope'"),
        (["signal", "w", "NOPE"], "unknown signal"),
        (["signal", "w", "HUP", "--wid", "7"], "no running process of worker 7 of 'w' to signal"),
        (["logs", "nope"], "unknown watcher 'nope'"),
        (["apply", "missing.toml"], "cannot read missing.toml"),
    ],
)
def test_bad_command_is_refused_with_one_line_and_changes_nothing(
    shared: Cluster, args: list[str], message: str
) -> None:
    cluster = shared
    cluster.apply(GOOD)
    pids = cluster.wait_running("w", 2)
    result = cluster.stackctl(*args)
    assert result.code == 1, result
    assert result.err.count("\n") == 1 and message in result.err, result
    assert cluster.status().watchers[0].numprocesses == 2
    assert cluster.running_pids("w") == pids


def test_unknown_command_is_a_usage_error(shared: Cluster) -> None:
    result = shared.stackctl("frobnicate")
    assert result.code == 2


def test_unreachable_controller_is_one_clear_line(reserved_port: int) -> None:
    port = reserved_port
    proc = subprocess.run(
        [*STACKCTL, "--controller", f"127.0.0.1:{port}", "status"],
        capture_output=True, text=True, env=stack_env(), cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert f"cannot reach the controller at 127.0.0.1:{port}" in proc.stderr


def test_scale_wait_on_a_stopped_watcher_fails_at_once_with_the_reason(cluster: Cluster) -> None:
    cluster.apply(GOOD)
    cluster.wait_running("w", 2)
    assert cluster.stackctl("stop", "w", "--wait").code == 0
    result = cluster.stackctl("scale", "w", "3", "--wait", "--timeout", "60", timeout=20)
    assert result.code == 1
    assert result.err == "stackctl: w is stopped (stackctl start w)\n"
