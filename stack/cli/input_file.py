"""The file given to `apply`, `up` and `convert`: a stack file, a Circus INI file or a
supervisord.conf, told apart by what it says.

A stack file is sent to the controller as written. It is checked here first, by the
controller's own loader, so that a typo gets the same one line (with its "did you mean")
before anything is dialled, also when no controller answers; the controller checks it
again, with what only it knows (its --max-processes). A Circus or Supervisor file is
converted here, into the stack file that `stackctl convert` prints, and that is what is
sent: applying such a file is applying its conversion, and the controller stores, diffs
and exports only stack files. It is converted here rather than by the controller because
what the file means depends on the machine it was written for, and that is the user's,
not the controller's (which may run elsewhere): the files it includes (relative to it),
the environment that `$(circus.env.X)`, `$VAR` and `%(ENV_X)s` read, and `%(here)s`.
circusd and supervisord read those where they ran; stackctl reads them where it runs,
and says so in a note.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from stack.cli.errors import CommandError
from stack.cli.terminal import safe


@dataclass(frozen=True)
class StackFile:
    """What to send for a file, and what its conversion said."""

    name: str
    """The file as the user named it."""
    format: str
    """"toml", "circus" or "supervisor"."""
    content: str
    """A stack file's text: the file itself, or its conversion."""
    notes: tuple[str, ...] = ()
    """One line per thing the conversion changed or could not carry."""


def read_stack_file(path: str) -> StackFile:
    """Read FILE for apply, up and convert; CommandError with the one line that names
    the file, the line and the problem (nothing is sent then): the line the controller
    would answer for a stack file, whose text is sent as written."""
    from stack.spec.errors import SpecError
    from stack.spec.foreign import TOML, read_stack_text

    text = _read(path)
    try:
        reading = read_stack_text(text, path)
        if reading.format == TOML:
            return StackFile(path, TOML, text)
    except SpecError as err:
        raise CommandError(str(SpecError(err.filename or path, err.path, err.message))) from None
    notes = tuple(str(note) for note in reading.notes)
    return StackFile(path, reading.format, reading.toml(), notes)


def print_notes(notes: tuple[str, ...]) -> None:
    """Each note on stderr as `note: ...`, before what the command prints."""
    for note in notes:
        sys.stderr.write(f"note: {safe(note)}\n")
    sys.stderr.flush()


def _read(path: str) -> str:
    """The file's text; CommandError `cannot read webapp.toml: No such file or directory`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
