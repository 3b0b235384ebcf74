"""The pure parts of re-executing the agent: its flags file, its command line, the check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stack.agent import flags_file
from stack.agent.handover import FORMAT
from stack.agent.main import parse_args
from stack.agent.reexec import ReexecError, _verdict, this_program


def test_a_flags_file_has_one_flag_per_line_with_comments_and_quotes() -> None:
    text = (
        "# the controllers of this site\n"
        "--controller 198.18.0.1:7450,198.18.0.2:7450\n"
        "\n"
        "   --label=role=web   # inline comment\n"
        "--label 'zone=eu west'\n"
    )
    lines = flags_file.parse(text, "/etc/stack/agent.flags")
    assert [line.number for line in lines] == [2, 4, 5]
    assert flags_file.argv(lines) == [
        "--controller", "198.18.0.1:7450,198.18.0.2:7450", "--label=role=web",
        "--label", "zone=eu west",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("--label a=b\ncontroller x:1\n", "agent.flags: line 2: expected a flag such as"),
        ("--label 'unclosed\n", "agent.flags: line 1: No closing quotation"),
        ("\n\n--flags-file other\n", "agent.flags: line 3: --flags-file is not allowed"),
        ("--check\n", "agent.flags: line 1: --check is not allowed"),
    ],
)
def test_a_bad_flags_file_line_is_named_with_its_number(text: str, says: str) -> None:
    with pytest.raises(flags_file.FlagsFileError, match=says):
        flags_file.parse(text, "agent.flags")


def test_command_line_flags_win_over_the_flags_file_and_labels_add_up(tmp_path: Path) -> None:
    path = tmp_path / "agent.flags"
    path.write_text("--controller 10.0.0.1:7450\n--host-id from-file\n--label role=web\n"
                    "--label zone=a\n--ship-rate 10\n")  # fmt: skip
    arguments = parse_args(
        ["--flags-file", str(path), "--host-id", "h9", "--label", "zone=b", "--data-dir", "/x"]
    )
    settings = arguments.settings
    assert settings.controller == "10.0.0.1:7450"
    assert settings.host_id == "h9"
    assert dict(settings.labels) == {"role": "web", "zone": "b"}
    assert settings.ship_rate == 10
    assert not arguments.check


def test_a_bad_value_in_the_flags_file_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.flags"
    path.write_text("--label role=web\n# fine so far\n--ship-rate many\n")
    with pytest.raises(SystemExit) as exited:
        parse_args(["--flags-file", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"stack-agent: {path}: line 3: argument --ship-rate")


def test_a_missing_flags_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--flags-file", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip()
    missing = tmp_path / "nope"
    assert err == f"stack-agent: --flags-file {missing}: cannot read: No such file or directory"


def test_the_agent_runs_again_as_it_was_started(tmp_path: Path) -> None:
    module = this_program(["python3", "-m", "stack.agent.main", "--host-id", "h1"], "/usr/bin/py")
    assert module.path == "/usr/bin/py"
    assert module.argv == ["/usr/bin/py", "-m", "stack.agent.main", "--host-id", "h1"]
    script = tmp_path / "stack-agent"
    script.write_text("#!/usr/bin/python3\n")
    os.chmod(script, 0o755)
    # A console script runs again as a script: a new install may name another interpreter.
    again = this_program(["/usr/bin/python3", str(script), "--data-dir", "d"], "/usr/bin/py")
    assert again.path == str(script)
    assert again.argv == [str(script), "--data-dir", "d"]
    plain = tmp_path / "agent.py"
    plain.write_text("import stack\n")
    file = this_program(["python3", str(plain), "-x"], "/usr/bin/py")
    assert file.argv == ["/usr/bin/py", str(plain), "-x"]


def _report(**changes: object) -> str:
    doc = {"version": "0.2.0", "host_id": "h1", "data_dir": "/var/lib/a",
           "handover_formats": [FORMAT]}  # fmt: skip
    doc.update(changes)
    return "some log line\n" + json.dumps(doc) + "\n"


def test_a_check_that_passes_reports_the_new_version() -> None:
    report = _verdict(_report(), 0, "h1", Path("/var/lib/a"))
    assert report.version == "0.2.0"


@pytest.mark.parametrize(
    ("output", "status", "says"),
    [
        ("Traceback...\nModuleNotFoundError: No module named 'grpc'\n", 1 << 8,
         r"failed its check \(exit code 1\): ModuleNotFoundError: No module named 'grpc'"),
        ("", 9, r"failed its check \(killed by signal 9\)$"),
        ("usage...\nstack-agent: argument --check: ignored\n", 2 << 8, "exit code 2"),
        ("hello\n", 0, "printed 'hello', not its report"),
        (_report(host_id="h2"), 0, "change the host id from h1 to h2"),
        (_report(data_dir="/elsewhere"), 0, "change the data dir to /elsewhere"),
        (_report(handover_formats=[FORMAT + 1]), 0, "cannot read this agent's handover"),
    ],
)  # fmt: skip
def test_a_check_that_fails_says_why_in_one_line(output: str, status: int, says: str) -> None:
    with pytest.raises(ReexecError, match=says) as raised:
        _verdict(output, status, "h1", Path("/var/lib/a"))
    assert "\n" not in str(raised.value)
