"""How every Stack program writes its `--help`: one look for stackctl and the daemons.

stackctl builds its pages from its command table (stack.cli.commands) and the daemons from
their argparse parsers (`parser_page`), and both end up here: a `Usage:` line, the
description, then titled sections of two columns (an option or argument, what it does),
and examples, wrapped to the terminal and at most 80 columns. Plain text only: no colour,
no type names, nothing that costs an import (only argparse, which the daemons load
anyway, and textwrap).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

MAX_WIDTH = 80
INDENT = 2
GAP = 2
MAX_LEFT = 26
"""A term longer than this starts its description on the next line."""


@dataclass(frozen=True)
class HelpSection:
    """One titled part of a help page."""

    title: str
    rows: tuple[tuple[str, str], ...] = ()
    """(term, description) pairs: `--wait`, `Wait until ...`."""
    lines: tuple[str, ...] = ()
    """Lines printed as they are (indented), after the rows: examples."""
    left: int = 0
    """At least this wide a term column (to align several sections)."""


def width() -> int:
    """The terminal's width (or $COLUMNS) up to MAX_WIDTH; MAX_WIDTH when not a terminal."""
    try:
        columns = int(os.environ.get("COLUMNS", "") or os.get_terminal_size(sys.stdout.fileno())[0])
    except (OSError, ValueError):
        columns = MAX_WIDTH
    return max(40, min(columns, MAX_WIDTH))


def paragraphs(text: str, columns: int, indent: int = INDENT) -> list[str]:
    """`text` wrapped, its blank-line separated paragraphs kept apart."""
    lines: list[str] = []
    for paragraph in textwrap.dedent(text).strip().split("\n\n"):
        if lines:
            lines.append("")
        words = " ".join(paragraph.split())
        lines.extend(
            textwrap.wrap(
                words, columns - indent, initial_indent=" " * indent, subsequent_indent=" " * indent
            )
        )
    return lines


def two_columns(rows: Sequence[tuple[str, str]], columns: int, least: int = 0) -> list[str]:
    """Terms on the left, their descriptions wrapped on the right, all aligned (the
    terms at least `least` wide)."""
    fitting = [len(term) for term, _ in rows if len(term) <= MAX_LEFT]
    left = max([*fitting, least]) + INDENT + GAP
    out: list[str] = []
    for term, text in rows:
        head = " " * INDENT + term
        wrapped = textwrap.wrap(
            " ".join(text.split()), max(20, columns - left), break_on_hyphens=False
        ) or [""]
        if len(head) + GAP > left:
            out.append(head)
        else:
            out.append(head.ljust(left) + wrapped.pop(0))
        out.extend(" " * left + line for line in wrapped)
    return out


def page(
    usage: str, description: str, sections: Sequence[HelpSection], columns: int | None = None
) -> str:
    """A whole help page."""
    columns = columns or width()
    lines = [f"Usage: {usage}"]
    if description:
        lines += ["", *paragraphs(description, columns)]
    for section in sections:
        if not section.rows and not section.lines:
            continue
        lines += ["", f"{section.title}:"]
        lines += two_columns(section.rows, columns, section.left)
        lines += [" " * INDENT + line if line else "" for line in section.lines]
    return "\n".join(lines) + "\n"


# -- the daemons: argparse parsers in the same look ---------------------------------


def _term(action: argparse.Action) -> str:
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    metavar = action.metavar or action.dest.upper()
    return f"{flags} {metavar}" if flags else str(metavar)


def _description(action: argparse.Action) -> str:
    text = action.help or ""
    if action.choices and "%(choices)" not in text:
        choices = ", ".join(str(choice) for choice in action.choices)
        text = f"{text} One of {choices}." if text else f"One of {choices}."
    return text % {"default": action.default, "prog": ""} if "%(" in text else text


def parser_page(
    parser: argparse.ArgumentParser, examples: Sequence[str] = (), columns: int | None = None
) -> str:
    """The help page of a daemon's argparse `parser`, in stackctl's look: `Options:` for
    the parser's own options, then one section per argument group, then examples."""
    sections = []
    for group in parser._action_groups:  # argparse keeps its groups here, in order
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        title = (group.title or "").strip()
        if title in ("options", "optional arguments"):
            title = "Options"
        elif title == "positional arguments":
            title = "Arguments"
        rows = tuple((_term(action), _description(action)) for action in actions)
        sections.append(HelpSection(title[:1].upper() + title[1:], rows))
    if examples:
        sections.append(HelpSection("Examples", lines=tuple(examples)))
    return page(f"{parser.prog} [OPTIONS]", parser.description or "", sections, columns)


def standard_options(parser: argparse.ArgumentParser) -> None:
    """`--version` and `-h, --help`, worded as stackctl's (the parser is made with
    add_help=False)."""
    from stack import version_line

    parser.add_argument(
        "--version",
        action="version",
        version=version_line(parser.prog),
        help="Print the version and wire protocol, and exit.",
    )
    parser.add_argument("-h", "--help", action="help", help="Show this help and exit.")


class HelpParser(argparse.ArgumentParser):
    """An ArgumentParser whose --help is a Stack help page (see `parser_page`) and whose
    usage errors are one line, `stack-agent: argument --label: ...`, and exit 2."""

    examples: Sequence[str] = ()

    def format_help(self) -> str:
        return parser_page(self, self.examples)

    def format_usage(self) -> str:
        return f"Usage: {self.prog} [OPTIONS]\n"

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)
