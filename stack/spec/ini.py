"""The INI syntax of Circus and Supervisor files, with the file and line of every value.

Both daemons read their files with Python's configparser, each with its own habits;
`Dialect` names the ones that change what a file means (which inline comments count,
whether option names are case-sensitive, which of two equal options wins when files
are merged by an include). Stack reads the syntax itself rather than through
configparser so that every value keeps its file and line: a value that is wrong, or
that cannot be carried, is reported where the user wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Origin:
    """Where a section or a value was written."""

    file: str
    """The file as the user would name it (relative to where they ran stackctl)."""
    line: int


@dataclass(frozen=True)
class Option:
    key: str
    value: str
    origin: Origin


@dataclass
class Section:
    """One `[name]` and its options in file order (sections of the same name merged)."""

    name: str
    origin: Origin
    options: dict[str, Option] = field(default_factory=dict)

    def get(self, key: str) -> Option | None:
        return self.options.get(key)


@dataclass(frozen=True)
class Dialect:
    """The habits of one daemon's configparser."""

    inline_comments: tuple[str, ...]
    """Prefixes that start a comment after a value when whitespace precedes them."""
    lowercase_keys: bool
    """Option names are folded to lower case (configparser's default)."""
    first_wins: bool
    """An option given twice (in one section, or in a merged one) keeps its first value."""
    empty_quotes: bool
    """A value written `""` is the empty string."""


CIRCUS = Dialect(inline_comments=(";",), lowercase_keys=False, first_wins=True, empty_quotes=True)
SUPERVISOR = Dialect(
    inline_comments=(";", "#"), lowercase_keys=True, first_wins=False, empty_quotes=False
)


class IniError(ValueError):
    """A line that is not INI; `str()` is `line N: what is wrong`."""

    def __init__(self, origin: Origin, message: str) -> None:
        self.origin = origin
        self.message = message
        super().__init__(f"line {origin.line}: {message}")


_SECTION = re.compile(r"\[(?P<name>[^\]]*)\]\s*$")
_OPTION = re.compile(r"(?P<key>[^=:]*?)\s*[=:]\s*(?P<value>.*)$")


def parse(text: str, filename: str, dialect: Dialect, into: dict[str, Section]) -> None:
    """Add the sections of `text` to `into` (merged by name, as configparser does);
    raises IniError on the first line that is neither a section, an option, a
    continuation nor a comment."""
    section: Section | None = None
    key: str | None = None
    """The option that an indented line continues; "" for one dropped (first_wins)."""
    for number, raw in enumerate(text.splitlines(), start=1):
        origin = Origin(filename, number)
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0].isspace() and section is not None and key is not None:
            if key:
                _continue(section, key, _uncomment(stripped, dialect))
            continue
        line = _uncomment(stripped, dialect)
        header = _SECTION.match(line)
        if header:
            name = header.group("name").strip()
            if not name:
                raise IniError(origin, "a section needs a name: [name]")
            section = into.setdefault(name, Section(name, origin))
            key = None
            continue
        option = _OPTION.match(line)
        if option is None or not option.group("key"):
            raise IniError(origin, f"expected [section] or key = value, got {stripped[:60]!r}")
        if section is None:
            raise IniError(origin, "an option before any [section]")
        key = option.group("key")
        if dialect.lowercase_keys:
            key = key.lower()
        value = option.group("value")
        if dialect.empty_quotes and value == '""':
            value = ""
        if key in section.options and dialect.first_wins:
            key = ""  # the later value and its continuation lines are dropped
            continue
        section.options[key] = Option(key, value, origin)


def _continue(section: Section, key: str, text: str) -> None:
    old = section.options[key]
    joined = f"{old.value}\n{text}" if old.value else text
    section.options[key] = Option(key, joined, old.origin)


def _uncomment(text: str, dialect: Dialect) -> str:
    """`text` without an inline comment: a prefix counts only after whitespace."""
    for index, char in enumerate(text):
        if char in dialect.inline_comments and index and text[index - 1].isspace():
            return text[:index].rstrip()
    return text
