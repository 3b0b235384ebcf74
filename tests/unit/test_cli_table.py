"""stackctl's command table against its typer app, its help pages, and how a command line
is taken apart (global options anywhere)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main

from stack.cli import commands, help_pages
from stack.cli.app import app
from stack.cli.cmdline import split

CLICK = typer.main.get_command(app)


def typer_commands() -> dict[str, Any]:
    """Every typer command by its full name (`certs issue`)."""
    found: dict[str, Any] = {}
    for name, command in CLICK.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            for sub, inner in command.commands.items():
                found[f"{name} {sub}"] = inner
        else:
            found[name] = command
    return found


def test_the_table_and_the_typer_app_have_the_same_commands() -> None:
    assert sorted(typer_commands()) == sorted(c.name for c in commands.COMMANDS)


@pytest.mark.parametrize("name", [c.name for c in commands.COMMANDS])
def test_each_command_has_the_parameters_the_table_describes(name: str) -> None:
    entry = commands.BY_NAME[name]
    parsed = typer_commands()[name]
    got = {}
    for param in parsed.params:
        if param.param_type_name == "argument":
            got[param.name] = ((), param.metavar, param.nargs == -1)
        else:
            takes = not param.is_flag
            got[param.name] = (tuple(param.opts), param.metavar if takes else "", param.multiple)
    want = {p.name: (p.flags, p.metavar, p.many) for p in entry.params}
    assert got == want
    for param in parsed.params:
        assert param.help or param.param_type_name == "argument"


def test_the_global_options_are_the_callbacks() -> None:
    got = {p.name: (tuple(p.opts), p.envvar) for p in CLICK.params}
    assert got == {p.name: (p.flags, p.envvar or None) for p in commands.GLOBAL_OPTIONS}


def test_no_command_option_takes_the_flag_of_a_global_one() -> None:
    global_flags = {flag for p in commands.GLOBAL_OPTIONS for flag in p.flags}
    for command in commands.COMMANDS:
        for param in command.options:
            assert not set(param.flags) & global_flags, command.name


def test_every_argument_and_option_is_described_without_type_names() -> None:
    for command in commands.COMMANDS:
        assert command.summary.endswith(".") and len(command.summary) <= 64, command.name
        for param in (*command.params, *commands.GLOBAL_OPTIONS):
            assert param.help and param.help.endswith("."), (command.name, param.name)
            assert "<" not in param.metavar and not param.metavar.islower(), param.metavar


@pytest.mark.parametrize("name", ["apply", "scale", "logs", "drain"])
def test_the_help_of_the_busy_commands_has_examples(name: str) -> None:
    page = help_pages.command_page(commands.BY_NAME[name])
    examples = page.split("\nExamples:\n")[1].split("\n\n")
    assert len(examples) >= 2
    for block in examples[:2]:
        comment, line = block.strip("\n").splitlines()[:2]
        assert comment.startswith("  # ") and line.startswith("  stackctl ")
    assert examples[0].splitlines()[1].startswith(f"  stackctl {name} ")


@pytest.mark.parametrize("name", [c.name for c in commands.COMMANDS])
def test_a_command_page_names_each_argument_and_option_in_80_columns(name: str) -> None:
    command = commands.BY_NAME[name]
    page = help_pages.command_page(command)
    assert page.split("\n")[0].split(" ")[:3] == ["Usage:", "stackctl", *name.split()][:3]
    for param in command.params:
        assert re.search(rf"^  {re.escape(param.term)}(  |\n)", page, re.M), param.term
    assert max(len(line) for line in page.splitlines()) <= 80
    assert not re.search(r"<[a-z_\[\]]+>", page), "no type metavars like <bool>"


def test_the_top_page_lists_every_command_and_global_option() -> None:
    page = help_pages.top_page()
    for name in commands.top_level_names():
        assert re.search(rf"^  {name} ", page, re.M), name
    for param in commands.GLOBAL_OPTIONS:
        assert param.term in page
    assert max(len(line) for line in page.splitlines()) <= 80


# -- taking a command line apart --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command", "globals_", "args"),
    [
        (["status", "-o", "json"], "status", {"output": "json"}, []),
        (["-o", "json", "status"], "status", {"output": "json"}, []),
        (["status", "webapp", "--output=yaml"], "status", {"output": "yaml"}, ["webapp"]),
        (["-ojson", "agents"], "agents", {"output": "json"}, []),
        (
            ["logs", "webapp", "-n", "5", "--controller", "unix:/x", "-f"],
            "logs",
            {"controller": "unix:/x"},
            ["webapp", "-n", "5", "-f"],
        ),
        (["scale", "webapp", "-2", "--tls-dir", "t"], "scale", {"tls_dir": "t"}, ["webapp", "-2"]),
        (["certs", "issue", "--dir", "d", "--cert-name", "x"], "certs issue", {"cert_name": "x"},
         ["--dir", "d"]),
        (["signal", "w", "--", "-o", "x"], "signal", {}, ["w", "--", "-o", "x"]),
        (["logs", "w", "--host", "-o"], "logs", {}, ["w", "--host", "-o"]),
    ],
)  # fmt: skip
def test_global_options_are_found_before_or_after_the_command(
    argv: list[str], command: str, globals_: dict[str, str], args: list[str]
) -> None:
    line = split(argv)
    assert line.command is not None and line.command.name == command
    assert line.globals == globals_
    assert line.args == args
    assert line.for_typer()[: len(line.global_args)] == line.global_args


def test_help_and_version_are_found_anywhere() -> None:
    assert split(["scale", "webapp", "--help"]).help
    assert split(["-h"]).help and split(["-h"]).command is None
    assert split(["status", "--version"]).version


def test_what_it_does_not_know_is_left_for_typer_to_report() -> None:
    unknown = split(["stauts", "-o", "json"])
    assert unknown.unknown and unknown.for_typer() == ["--output", "json", "stauts"]
    missing_value = split(["status", "-o"])
    assert missing_value.globals == {} and missing_value.for_typer() == ["status", "-o"]
    assert split(["--bogus", "status"]).before == ["--bogus"]
    group = split(["certs"])
    assert group.words == ["certs"] and group.command is None and not group.unknown
