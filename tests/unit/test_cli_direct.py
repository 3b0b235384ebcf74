"""The direct path parses a plain command line as typer does: for every command, command
lines made from its table entry give the same values both ways; anything unusual is left
to typer, which then says what is wrong."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.cli import commands
from stack.cli.app import app
from stack.cli.commands import Command, Param
from stack.cli.direct import global_options, parse
from stack.cli.options import OutputFormat

CLICK = typer.main.get_command(app)


def typer_values(command: Command, args: list[str]) -> dict[str, Any]:
    """What typer hands the command for `args` (its part of the command line)."""
    click_command: Any = CLICK
    for word in command.name.split():
        click_command = click_command.commands[word]  # type: ignore[attr-defined]
    with click_command.make_context(command.name, list(args)) as ctx:
        params = dict(ctx.params)
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in params.items()}


def same(direct: dict[str, Any], typed: dict[str, Any]) -> None:
    # typer hands a repeatable option or argument over as a list (or None when absent)
    normal = {k: (list(v) if isinstance(v, tuple) else v) for k, v in typed.items()}
    assert direct == normal


def value_for(param: Param) -> st.SearchStrategy[str]:
    if param.choices and param.kind == "choice":
        return st.sampled_from(param.choices)
    if param.kind == "int":
        least = int(param.minimum or 0)
        return st.integers(least, least + 1000).map(str)
    if param.kind == "float":
        least = param.minimum or 0
        return st.sampled_from([v for v in ("0", "1", "2.5", "30", "0.25") if float(v) >= least])
    names = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=8)
    return names.filter(lambda text: not text.startswith("-"))


@st.composite
def command_lines(draw: st.DrawFn, command: Command) -> list[str]:
    """A plain command line for `command`: its arguments, and options in any order and
    in any of the forms typer takes."""
    options: list[list[str]] = []
    for param in command.options:
        if not param.required and not draw(st.booleans()):
            continue
        for _ in range(draw(st.integers(1, 2)) if param.many else 1):
            if not param.takes_value:
                options.append([draw(st.sampled_from(param.flags))])
                continue
            value = draw(value_for(param))
            flag = draw(st.sampled_from(param.flags))
            form = draw(st.sampled_from(["apart", "joined"]))
            if form == "apart":
                options.append([flag, value])
            else:
                options.append([f"{flag}={value}" if flag.startswith("--") else flag + value])
    arguments: list[str] = []
    for param in command.arguments:
        if command.negative_numbers and param.name == "count":
            arguments.append(draw(st.sampled_from(["3", "+2", "-2", "0"])))
        elif param.many:
            arguments += draw(st.lists(value_for(param), min_size=1, max_size=3))
        elif param.required or draw(st.booleans()):
            arguments.append(draw(value_for(param)))
    order = draw(st.permutations(options))
    cut = draw(st.integers(0, len(order)))
    return (
        [token for part in order[:cut] for token in part]
        + arguments
        + [token for part in order[cut:] for token in part]
    )


@pytest.mark.parametrize("name", [c.name for c in commands.COMMANDS])
def test_a_plain_command_line_gives_the_same_values_as_typer(name: str) -> None:
    command = commands.BY_NAME[name]

    @settings(max_examples=60, deadline=None)
    @given(command_lines(command))
    def check(args: list[str]) -> None:
        direct = parse(command, args)
        assert direct is not None, f"a plain command line left to typer: {args}"
        same(direct, typer_values(command, args))

    check()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("logs", ["webapp", "-n", "-1"]),  # below the minimum
        ("logs", ["webapp", "-n", "1_000"]),  # a number written unusually
        ("logs", ["webapp", "--stream", "both"]),  # not a choice
        ("logs", ["webapp", "-fn5"]),  # flags written together
        ("logs", ["webapp", "--raw=yes"]),  # a flag with a value
        ("logs", []),  # the argument is missing
        ("logs", ["a", "b"]),  # one argument too many
        ("logs", ["webapp", "--bogus"]),
        ("logs", ["webapp", "-n"]),  # a value is missing
        ("scale", ["webapp", "--two"]),
        ("certs issue", ["--dir", "d", "--role", "agent"]),  # --name is required
        ("status", ["--timeout", "3"]),  # another command's option
    ],
)
def test_what_is_unusual_is_left_to_typer(name: str, args: list[str]) -> None:
    assert parse(commands.BY_NAME[name], args) is None


def test_defaults_are_the_typer_commands_defaults() -> None:
    for command in commands.COMMANDS:
        required = [p for p in command.params if p.required]
        args: list[str] = []
        for param in required:
            value = param.choices[0] if param.choices else "x"
            args += [param.flags[-1], value] if param.flags else [value]
        direct = parse(command, args)
        assert direct is not None, command.name
        same(direct, typer_values(command, args))


def test_global_options_come_from_the_line_then_the_environment() -> None:
    env = {"STACK_CONTROLLER": "unix:/env.sock", "STACK_TLS_DIR": "", "STACK_CERT_NAME": "ops"}
    options = global_options({"output": "yaml"}, env)
    assert options is not None
    assert (options.controller, options.output, options.tls_dir, options.cert_name) == (
        "unix:/env.sock", OutputFormat.yaml, None, "ops",
    )  # fmt: skip
    given = global_options({"controller": "unix:/line.sock", "tls_dir": "t"}, env)
    assert given is not None and given.controller == "unix:/line.sock"
    assert given.tls_dir == Path("t")
    assert global_options({"output": "xml"}, {}) is None  # typer says it
    assert global_options({"controller": "localhost"}, {}) is None
