"""`stack-agent --flags-file PATH`: the agent's flags in a file it reads again on reload.

A reload re-executes the agent with the command line it was started with; flags that
must change without a restart (a new controller list, labels, the ship rate...) live
in this file instead, which every image reads afresh. One flag per line, with its value
(`--controller 198.18.0.1:7450` or `--label=role=web`), quoted like a shell would;
blank lines and `#` comments are ignored. The command line's flags win over the
file's (they come after them), and `--label` adds up from both.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

NOT_IN_FILE = ("--flags-file", "--check")
"""Flags that make no sense inside the file itself."""


class FlagsFileError(Exception):
    """str() is one line naming the file, the line and what is wrong."""


@dataclass(frozen=True)
class FlagLine:
    number: int
    """1-based line number in the file."""
    words: tuple[str, ...]
    """The flag and its value, split like a shell would."""


def parse(text: str, path: str) -> list[FlagLine]:
    """The flag lines of a flags file; FlagsFileError for a line that is not a flag."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}: line {number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise FlagsFileError(f"{where}: {exc}") from None
        if not words:
            continue
        flag = words[0].partition("=")[0]
        if not flag.startswith("--"):
            raise FlagsFileError(f"{where}: expected a flag such as --controller, got {words[0]!r}")
        if flag in NOT_IN_FILE:
            raise FlagsFileError(f"{where}: {flag} is not allowed in a flags file")
        found.append(FlagLine(number, tuple(words)))
    return found


def argv(lines: list[FlagLine]) -> list[str]:
    """The lines' words, in order: what goes before the command line's own flags."""
    return [word for line in lines for word in line.words]
