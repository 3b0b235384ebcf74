"""The one exception a bad stack file raises.

Validation is all-or-nothing and stops at the first problem, so a single
exception type with a one-line message is all the CLI and the services need:
`webapp.toml: watchers.webapp.numprocesses: must be >= 0, got -3`.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A stack file (or one watcher or socket in it) is not valid.

    `str(err)` is one line: `<filename>: <key path>: <what is wrong>`.
    """

    filename: str
    """The file as the user named it, or `<stack>` for text without a file."""
    path: str
    """Dotted key path of the offending value (`watchers.webapp.cmd`), or `line N`."""
    message: str
    """What is wrong, without the filename or the path."""

    def __init__(self, filename: str, path: str, message: str) -> None:
        self.filename = filename
        self.path = path
        self.message = message
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [part for part in (self.filename, self.path, self.message) if part]
        return ": ".join(parts).replace("\n", " ")

    def __str__(self) -> str:
        return self._line()

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, str, str]]:
        return (SpecError, (self.filename, self.path, self.message))
