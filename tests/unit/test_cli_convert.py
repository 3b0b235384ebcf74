"""stackctl convert, and apply of a Circus or Supervisor file: the controller is sent the
stack file that convert prints, and the notes are shown; a bad file sends nothing."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from stack.cli.main import app
from stack.spec.foreign import read_stack_file
from stack.spec.load import load_stack
from tests.unit.test_cli_commands import ScriptedAdmin, nothing_listens, runner, stackctl
from tests.unit.test_cli_commands import admin as admin

CIRCUS_INI = (
    "[circus]\nendpoint = tcp://127.0.0.1:5555\n\n"
    "[watcher:web]\ncmd = python3 -m http.server --bind 127.0.0.1\nnumprocesses = 2\n"
    "hooks.before_start = app.hooks.ready\n"
)
SUPERVISORD_CONF = (
    "[supervisord]\nlogfile=/tmp/s.log\n\n"
    "[program:worker]\ncommand=/bin/sleep 60\nprocess_name=%(program_name)s_%(process_num)d\n"
    "numprocs=3\n"
)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "circus.ini").write_text(CIRCUS_INI)
    (tmp_path / "supervisord.conf").write_text(SUPERVISORD_CONF)
    return tmp_path


@pytest.mark.parametrize("name", ["circus.ini", "supervisord.conf"])
def test_convert_prints_the_stack_file_with_its_comments_and_needs_no_controller(
    files: Path, name: str
) -> None:
    result = runner.invoke(app, ["--controller", nothing_listens(), "convert", name])
    assert result.exit_code == 0, result.output
    assert result.stdout == read_stack_file(name).toml()
    assert result.stdout.startswith(f"# Converted from {name} (")
    assert load_stack(result.stdout) == read_stack_file(name).stack


def test_convert_json_has_the_format_the_stack_file_and_the_notes(files: Path) -> None:
    result = runner.invoke(app, ["-o", "json", "convert", "circus.ini"])
    document = json.loads(result.stdout)
    assert document["format"] == "circus"
    assert tomllib.loads(document["toml"])["watchers"]["web"]["numprocesses"] == 2
    assert document["notes"] == [
        "circus.ini: line 2: [circus] endpoint: a setting of circusd itself, ignored: stackctl "
        "talks to the controller (--controller)",
        "circus.ini: line 7: [watcher:web] hooks.before_start: not carried: circusd calls the "
        "Python function app.hooks.ready here, and Stack runs commands: write one as "
        '[watchers.web.hooks] before_start = "..."',
    ]


def test_convert_of_a_stack_file_checks_it_and_prints_it_in_order(files: Path) -> None:
    (files / "stack.toml").write_text('[watchers.b]\ncmd = "b"\n[watchers.a]\ncmd = "a"\n')
    result = runner.invoke(app, ["convert", "stack.toml"])
    assert result.stdout == (
        '[watchers.a]\ncmd = "a"\nnumprocesses = 1\n\n[watchers.b]\ncmd = "b"\nnumprocesses = 1\n'
    )
    (files / "bad.toml").write_text('[watchers.a]\ncmd = "a"\nnumprocess = 2\n')
    result = runner.invoke(app, ["convert", "bad.toml"])
    assert result.exit_code == 1
    assert result.stderr == (
        "stackctl: bad.toml: watchers.a.numprocess: unknown option (did you mean numprocesses?)\n"
    )


@pytest.mark.parametrize("name", ["circus.ini", "supervisord.conf"])
def test_apply_sends_the_conversion_and_shows_its_notes(
    files: Path, name: str, admin: tuple[ScriptedAdmin, str]
) -> None:
    servicer, address = admin
    result = stackctl(address, "apply", "--yes", name)
    assert result.exit_code == 0, result.output
    ((method, request),) = servicer.requests
    assert (method, request.filename) == ("Apply", name)
    reading = read_stack_file(name)
    assert request.content == reading.toml()
    assert result.stderr == "".join(f"note: {note}\n" for note in reading.notes)


def test_apply_json_carries_the_notes(files: Path, admin: tuple[ScriptedAdmin, str]) -> None:
    _, address = admin
    result = stackctl(address, "-o", "json", "apply", "--dry-run", "circus.ini")
    document = json.loads(result.stdout)
    assert document["notes"] == [str(note) for note in read_stack_file("circus.ini").notes]
    assert result.stderr == ""


def test_apply_of_a_stack_file_sends_it_as_written(
    files: Path, admin: tuple[ScriptedAdmin, str]
) -> None:
    servicer, address = admin
    text = '# mine\n[watchers.a]\ncmd = "a"\n'
    (files / "stack.toml").write_text(text)
    assert stackctl(address, "apply", "--yes", "stack.toml").exit_code == 0
    assert servicer.requests[0][1].content == text


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("bad.ini", "[watcher:a]\ncmd = x\nnumprocesses = many\n",
         "bad.ini: line 3: [watcher:a] numprocesses: must be an integer, got 'many'"),
        ("bad.conf", "[program:a]\ncommand=x\nnumprocs=2\n",
         "bad.conf: line 1: [program:a] process_name: must have %(process_num) when "
         "numprocs > 1"),
        ("bad2.ini", "[watcher:a]\ncmd = x\nthis is not ini\n",
         "bad2.ini: line 3: expected [section] or key = value, got 'this is not ini'"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_one_line_and_nothing_is_sent(
    files: Path, admin: tuple[ScriptedAdmin, str], name: str, text: str, line: str
) -> None:
    servicer, address = admin
    (files / name).write_text(text)
    for command in (["apply", "--yes", name], ["convert", name]):
        result = stackctl(address, *command)
        assert result.exit_code == 1
        assert result.stderr == f"stackctl: {line}\n"
    assert servicer.requests == []


def test_up_reads_the_file_before_it_starts_anything(files: Path) -> None:
    (files / "bad.ini").write_text("[watcher:a]\ncmd = x\nshell = perhaps\n")
    result = runner.invoke(
        app, ["--controller", nothing_listens(), "up", "bad.ini", "--data-dir", "state"]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "stackctl: bad.ini: line 3: [watcher:a] shell: must be true or false "
        "(or yes, no, on, off, 1, 0), got 'perhaps'\n"
    )
    assert not (files / "state").exists()
