"""How a worker's command line, environment and inherited fds are built (no spawning)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from stack.agent.main import parse_args
from stack.agent.process import BASH, SpawnError, build_launch, signal_number
from stack.spec.model import WatcherSpec

AGENT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "SECRET": "x"}


def _spec(**options: object) -> WatcherSpec:
    values: dict[str, object] = {"name": "web", "cmd": "sleep $(circus.wid)0"}
    values.update(options)
    return WatcherSpec(**values)  # type: ignore[arg-type]


def test_plain_worker_is_spawned_directly_with_only_its_env() -> None:
    launch = build_launch(_spec(env=MappingProxyType({"A": "1"})), 3, [], AGENT_ENV)
    assert launch.argv[1:] == ["30"] and launch.argv[0].endswith("/sleep")
    assert not launch.through_bash and launch.pass_fds == ()
    assert launch.env == {"A": "1", "STACK_WATCHER": "web", "STACK_WID": "3"}


def test_copy_env_copies_the_agent_environment_first() -> None:
    spec = _spec(copy_env=True, env=MappingProxyType({"HOME": "/srv"}))
    env = build_launch(spec, 1, [], AGENT_ENV).env
    assert env["SECRET"] == "x" and env["HOME"] == "/srv" and env["STACK_WID"] == "1"


def test_sockets_go_through_bash_to_fds_3_and_up_with_listen_variables() -> None:
    spec = _spec(cmd=f"{sys.executable} --fd $(circus.sockets.b) --other $(stack.sockets.a)")
    launch = build_launch(spec, 1, [("b", 101), ("a", 100)], AGENT_ENV)
    assert launch.through_bash and launch.argv[0] == BASH and launch.pass_fds == (101, 100)
    script = launch.argv[2]
    assert script.startswith("exec 3<&101 4<&100 101<&- 100<&-; ")
    assert "export LISTEN_PID=$$" in script and script.endswith('exec "$0" "$@"')
    assert launch.argv[3:] == [sys.executable, "--fd", "3", "--other", "4"]
    assert launch.env["LISTEN_FDS"] == "2" and launch.env["LISTEN_FDNAMES"] == "b:a"


def test_rlimits_use_ulimit_in_the_exec_step() -> None:
    launch = build_launch(_spec(rlimits=MappingProxyType({"nofile": 1024})), 1, [], AGENT_ENV)
    assert launch.through_bash and "ulimit -n 1024" in launch.argv[2]
    assert "LISTEN_PID" not in launch.argv[2]
    with pytest.raises(SpawnError, match="unknown rlimit 'bogus'"):
        build_launch(_spec(rlimits=MappingProxyType({"bogus": 1})), 1, [], AGENT_ENV)


def test_shell_runs_the_whole_line_with_sh() -> None:
    launch = build_launch(
        _spec(cmd="echo $(circus.wid) | cat", shell=True, args=("x",)), 2, [], AGENT_ENV
    )
    assert launch.argv == ["/bin/sh", "-c", "echo 2 | cat x"]


def test_shell_args_follow_the_line_and_executable_replaces_the_shell() -> None:
    spec = _spec(cmd='echo "$0 $1"', shell=True, shell_args=("w$(circus.wid)", "x"))
    assert build_launch(spec, 2, [], AGENT_ENV).argv == ["/bin/sh", "-c", 'echo "$0 $1"', "w2", "x"]
    dash = build_launch(replace(spec, executable="bash"), 2, [], AGENT_ENV).argv
    assert dash[0].endswith("/bash") and dash[1:3] == ["-c", 'echo "$0 $1"']


def test_executable_runs_another_program_with_cmd_first_word_as_its_argv0() -> None:
    launch = build_launch(_spec(cmd="myname --flag", executable="sleep"), 1, [], AGENT_ENV)
    program = launch.argv[2].split()[-2]
    assert launch.argv[:2] == [BASH, "-c"] and program.endswith("/sleep")
    assert launch.argv[2] == f'exec -a "$0" {program} "$@"'
    assert launch.argv[3:] == ["myname", "--flag"]
    with pytest.raises(FileNotFoundError):
        build_launch(_spec(executable="no-such-program-here"), 1, [], AGENT_ENV)


def test_virtualenv_leads_path_and_copy_path_puts_the_working_dir_first(tmp_path: Path) -> None:
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    spec = _spec(
        copy_env=True, virtualenv="venv", working_dir=str(tmp_path), copy_path=True,
        env=MappingProxyType({"PYTHONPATH": "/lib/x", "PYTHONHOME": "/opt/py"}),
    )  # fmt: skip
    env = build_launch(spec, 1, [], AGENT_ENV).env
    assert env["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert env["PATH"] == f"{tmp_path / 'venv' / 'bin'}:/usr/bin:/bin"
    assert env["PYTHONPATH"] == f"{tmp_path}:/lib/x" and "PYTHONHOME" not in env
    missing = replace(spec, virtualenv="nowhere")
    with pytest.raises(SpawnError, match=r"virtualenv '.*/nowhere' has no bin directory"):
        build_launch(missing, 1, [], AGENT_ENV)


def test_missing_command_and_bad_substitution_are_spawn_errors() -> None:
    with pytest.raises(FileNotFoundError, match="No such file or directory: 'nope'"):
        build_launch(_spec(cmd="nope"), 1, [], AGENT_ENV)
    with pytest.raises(SpawnError, match=r"spawn error: .*socket 'web' is not inherited"):
        build_launch(_spec(cmd="sleep $(circus.sockets.web)"), 1, [], AGENT_ENV)


def test_signal_names_and_numbers() -> None:
    assert signal_number("TERM") == signal_number("SIGTERM") == signal_number("15") == 15
    assert signal_number("hup") == 1
    with pytest.raises(ValueError, match="unknown signal"):
        signal_number("NOPE")


def test_command_line_fills_settings(tmp_path: Path) -> None:
    arguments = parse_args(
        [
            "--controller",
            "10.0.0.1:9000",
            "--host-id",
            "h7",
            "--data-dir",
            str(tmp_path),
            "--label",
            "zone=a",
            "--label",
            "disk=ssd",
            "--stats-interval",
            "0.5",
            "--heartbeat-interval",
            "3",
            "--log-level",
            "debug",
        ]
    )
    settings, level = arguments.settings, arguments.log_level
    assert (settings.controller, settings.host_id, settings.data_dir) == (
        "10.0.0.1:9000",
        "h7",
        tmp_path,
    )
    assert dict(settings.labels) == {"zone": "a", "disk": "ssd"}
    assert (settings.stats_interval, settings.heartbeat_interval, level) == (0.5, 3.0, "DEBUG")


@pytest.mark.parametrize(
    "argv",
    [["--label", "novalue"], ["--stats-interval", "-1"], ["--controller", "nohost"], ["--what"]],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("stack-agent: ") and err.count("\n") == 1
