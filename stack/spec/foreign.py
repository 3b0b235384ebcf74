"""Stack files written by someone else's tool: a Circus INI file or a supervisord.conf.

`read_stack_text` tells the three formats apart by what the text says (a section
`[watcher:web]` or `[circus]` is Circus, `[program:web]` or `[supervisord]` is
Supervisor, anything else is a stack file), and reads a foreign file into the same
StackSpec a stack file gives, with a `Note` for everything it changed or could not
carry. The readers (stack.spec.circus_ini, stack.spec.supervisor_conf) only translate:
they write what they read into a `Draft`, a stack file's tables with the file and line
of every value, and the stack file's own loader checks the result. A problem is then
reported where the user wrote it, in one line:
`circus.ini: line 7: [watcher:web] numprocesses: must be >= 0, got -3`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from stack.spec.dump import Anchor, dump_stack
from stack.spec.errors import SpecError
from stack.spec.ini import Dialect, IniError, Option, Origin, Section, parse
from stack.spec.load import load_stack, load_stack_data
from stack.spec.model import StackSpec
from stack.spec.suggest import closest

TOML, CIRCUS, SUPERVISOR = "toml", "circus", "supervisor"
FORMAT_NAMES = {TOML: "stack file", CIRCUS: "Circus INI file", SUPERVISOR: "supervisord.conf"}

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(?:[;#].*)?$", re.MULTILINE)
_CIRCUS_SECTION = re.compile(r"circus|(?:watcher|socket|plugin|env):.*")
_SUPERVISOR_SECTION = re.compile(
    r"supervisord|supervisorctl|unix_http_server|inet_http_server|include"
    r"|(?:program|fcgi-program|group|eventlistener|rpcinterface|ctlplugin):.*"
)
TRUE_WORDS = ("yes", "true", "on", "1")
FALSE_WORDS = ("no", "false", "off", "0")
"""The booleans of both daemons, in any case."""


@dataclass(frozen=True)
class Note:
    """Something a conversion changed, or could not carry and what to use instead."""

    text: str
    origin: Origin | None = None
    """Where it was written; None for a note about the whole file."""
    label: str = ""
    """What it is about, as the file names it: `[watcher:web] hooks.before_start`."""
    anchor: Anchor = ()
    """Where in the stack file it is written as a comment (see stack.spec.dump)."""

    def __str__(self) -> str:
        where = f"{self.origin.file}: line {self.origin.line}" if self.origin else ""
        return ": ".join(part for part in (where, self.label, self.text) if part)


@dataclass(frozen=True)
class Reading:
    """A file read into a stack, whatever its format."""

    format: str
    """TOML, CIRCUS or SUPERVISOR."""
    filename: str
    stack: StackSpec
    notes: tuple[Note, ...] = ()

    def toml(self) -> str:
        """The stack as a stack file, with each note as a comment above what it is about."""
        if self.format == TOML:
            return dump_stack(self.stack)
        comments: dict[Anchor, list[str]] = {
            (): [
                f"Converted from {self.filename} ({FORMAT_NAMES[self.format]}) by stackctl "
                "convert: a comment says what was changed or not carried."
            ]
        }
        for note in self.notes:
            comments.setdefault(note.anchor, []).append(str(note))
        return dump_stack(self.stack, comments=comments)


def detect_format(text: str) -> str:
    """TOML, CIRCUS or SUPERVISOR, by the section headers the text has; SpecError
    (without a filename) when it has both Circus's and Supervisor's."""
    circus = supervisor = None
    for match in _HEADER.finditer(text):
        name = match.group(1).strip()
        line = text.count("\n", 0, match.start(1)) + 1
        if circus is None and _CIRCUS_SECTION.fullmatch(name):
            circus = (name, line)
        if supervisor is None and _SUPERVISOR_SECTION.fullmatch(name):
            supervisor = (name, line)
    if circus and supervisor:
        raise SpecError(
            "",
            "",
            f"mixes Circus sections ([{circus[0]}], line {circus[1]}) and Supervisor "
            f"sections ([{supervisor[0]}], line {supervisor[1]}); write one or the other",
        )
    return CIRCUS if circus else SUPERVISOR if supervisor else TOML


def read_stack_file(
    path: str | Path, *, environ: Mapping[str, str] | None = None, node: str | None = None
) -> Reading:
    """Read a stack file, a Circus INI file or a supervisord.conf; SpecError naming the
    file (and the line) on the first problem. `environ` stands for the daemon's
    environment (default: this process's), `node` for its host name (Supervisor's
    %(host_node_name)s)."""
    filename = str(path)
    return read_stack_text(read_text(filename), filename, environ=environ, node=node)


def read_stack_text(
    text: str,
    filename: str,
    *,
    environ: Mapping[str, str] | None = None,
    node: str | None = None,
) -> Reading:
    """Like read_stack_file, for text already read (included files are still read)."""
    try:
        kind = detect_format(text)
    except SpecError as err:
        raise SpecError(filename, "", err.message) from None
    env = dict(os.environ if environ is None else environ)
    if kind == CIRCUS:
        from stack.spec.circus_ini import read_circus

        return read_circus(text, filename, env)
    if kind == SUPERVISOR:
        import platform

        from stack.spec.supervisor_conf import read_supervisor

        return read_supervisor(text, filename, env, platform.node() if node is None else node)
    return Reading(TOML, filename, load_stack(text, filename))


def read_text(filename: str, origin: Origin | None = None, label: str = "") -> str:
    """A file's text; SpecError naming it (or the line that included it)."""
    try:
        return Path(filename).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        problem = f"not UTF-8 text ({err.reason})"
    except FileNotFoundError:
        problem = "no such file"
    except OSError as err:
        problem = f"cannot read: {err.strerror or err}"
    if origin is None:
        raise SpecError(filename, "", problem)
    raise SpecError(origin.file, f"line {origin.line}", f"{label}: {filename}: {problem}")


def relative_to(including: str, pattern: str) -> str:
    """An include's pattern as a path relative to the file that names it."""
    return os.path.join(os.path.dirname(including), os.path.expanduser(pattern))


class Draft:
    """A stack file's tables being written by a reader, with where each value came from.

    `put` writes a value (already of the TOML type the loader expects) and remembers
    the option it came from; `finish` checks the whole through the stack file's
    loader and turns its first complaint into a line that names the option's file and
    line. Notes are collected on the way.
    """

    def __init__(self, filename: str, kind: str, dialect: Dialect) -> None:
        self.filename = filename
        self.kind = kind
        self.dialect = dialect
        self.sections: dict[str, Section] = {}
        """The sections of every file read, merged by name as the daemon merges them."""
        self.data: dict[str, dict[str, dict[str, Any]]] = {"sockets": {}, "watchers": {}}
        self.origins: dict[str, tuple[Origin, str]] = {}
        self.notes: list[Note] = []
        self.files: list[str] = []
        """The files read, in order (the main one first)."""

    # -- files ----------------------------------------------------------------------

    def read_ini(self, text: str, filename: str) -> None:
        """Add a file's sections to `sections`; SpecError at a line that is not INI."""
        self.files.append(filename)
        try:
            parse(text, filename, self.dialect, self.sections)
        except IniError as err:
            raise SpecError(err.origin.file, f"line {err.origin.line}", err.message) from None

    def include(self, option: Option, label: str, patterns: list[str]) -> None:
        """Read the files that match each pattern (relative to the main file), in name
        order; a pattern that matches nothing is noted, as the daemons warn of it."""
        for pattern in patterns:
            found = sorted(glob.glob(relative_to(self.filename, pattern)))
            if not found:
                self.note(f"{pattern!r} matches no file", origin=option.origin, label=label)
            for path in found:
                self.read_ini(read_text(path, option.origin, label), path)

    def unknown_section(
        self, section: Section, daemon: str, names: tuple[str, ...], kinds: tuple[str, ...]
    ) -> None:
        """A section the daemon does not know: an error when it looks like a typo of
        one it knows (`[watchr:web]`), else a note (other tools share these files)."""
        kind, colon, rest = section.name.partition(":")
        meant = closest(kind, kinds if colon else names, cutoff=0.8)
        if meant is not None:
            suggestion = f"[{meant}{colon}{rest}]"
            self.fail(
                section.origin, f"[{section.name}]", f"unknown section (did you mean {suggestion}?)"
            )
        self.note(
            f"not a {daemon} section: ignored", origin=section.origin, label=f"[{section.name}]"
        )

    # -- writing --------------------------------------------------------------------

    def table(self, path: tuple[str, ...], origin: Origin, label: str) -> dict[str, Any]:
        """The table at `path` (("watchers", "web"), ("watchers", "web", "env")),
        created and attributed to `origin` the first time."""
        table: dict[str, Any] = self.data
        for key in path:
            table = table.setdefault(key, {})
        self.origins.setdefault(_dotted(path), (origin, label))
        return table

    def put(self, path: tuple[str, ...], value: Any, origin: Origin, label: str) -> None:
        """Write `value` at `path` (its last item is the key), from `label` at `origin`."""
        table: dict[str, Any] = self.data
        for key in path[:-1]:
            table = table.setdefault(key, {})
        table[path[-1]] = value
        self.origins[_dotted(path)] = (origin, label)

    def note(
        self, text: str, *, anchor: Anchor = (), origin: Origin | None = None, label: str = ""
    ) -> None:
        """Note something once: the same text about the same option is written only
        above the first place it is anchored to (one program made many watchers)."""
        if not any((n.text, n.origin, n.label) == (text, origin, label) for n in self.notes):
            self.notes.append(Note(text, origin, label, anchor))

    # -- reading values -------------------------------------------------------------

    def fail(self, origin: Origin, label: str, message: str) -> NoReturn:
        raise SpecError(origin.file, f"line {origin.line}", f"{label}: {message}")

    def integer(self, option: Option, label: str, value: str | None = None) -> int:
        text = (option.value if value is None else value).strip()
        try:
            return int(text)
        except ValueError:
            self.fail(option.origin, label, f"must be an integer, got {text!r}")

    def number(self, option: Option, label: str, value: str | None = None) -> int | float:
        text = (option.value if value is None else value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            self.fail(option.origin, label, f"must be a number, got {text!r}")

    def octal(self, option: Option, label: str, value: str | None = None) -> int:
        text = (option.value if value is None else value).strip()
        try:
            return int(text, 8)
        except ValueError:
            self.fail(option.origin, label, f"must be an octal number like 022, got {text!r}")

    def boolean(self, option: Option, label: str, value: str | None = None) -> bool:
        text = (option.value if value is None else value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        self.fail(
            option.origin,
            label,
            f"must be true or false (or yes, no, on, off, 1, 0), got {option.value.strip()!r}",
        )

    # -- checking -------------------------------------------------------------------

    def finish(self) -> Reading:
        """The stack, checked by the stack file's loader; SpecError at the first problem,
        naming the line the offending value came from."""
        try:
            stack = load_stack_data(self.data, self.filename)
        except SpecError as err:
            raise self._located(err) from None
        return Reading(self.kind, self.filename, stack, tuple(sorted(self.notes, key=self._order)))

    def _order(self, note: Note) -> tuple[int, int]:
        """Notes in the order the files were read, then by line."""
        if note.origin is None:
            return (-1, 0)
        files = self.files
        rank = files.index(note.origin.file) if note.origin.file in files else len(files)
        return (rank, note.origin.line)

    def _located(self, err: SpecError) -> SpecError:
        best = ""
        for path in self.origins:
            if (err.path == path or err.path.startswith((path + ".", path + "["))) and len(
                path
            ) > len(best):
                best = path
        if not best:
            return SpecError(self.filename, err.path, err.message)
        origin, label = self.origins[best]
        rest = err.path[len(best) :].lstrip(".")
        what = f"{label} {rest}" if rest else label
        return SpecError(origin.file, f"line {origin.line}", f"{what}: {err.message}")


def _dotted(path: tuple[str, ...]) -> str:
    """A table path as the loader names it in errors: `watchers.web.env`."""
    return ".".join(path)


def section_label(section: Section) -> str:
    return f"[{section.name}]"


def option_label(section: Section, option: Option) -> str:
    return f"[{section.name}] {option.key}"
