"""Suggestions ("did you mean ...?") for a word that is not one of those expected there.

A typo in a stack file (or a Circus or Supervisor file being read) must never go
unnoticed, and the error is kinder when it names the word that was probably meant:
`watchers.webapp.numprocess: unknown option (did you mean numprocesses?)`. Words
that Supervisor, systemd or Circus use for a Stack option (`command`, `directory`,
`user`) suggest that option, however unlike it they are spelled.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6
"""How alike two words must be (difflib's ratio) to suggest one for the other."""

ALIASES = {
    "command": "cmd", "exec": "cmd", "execstart": "cmd", "program": "cmd",
    "directory": "working_dir", "workingdirectory": "working_dir", "cwd": "working_dir",
    "user": "uid", "group": "gid", "environment": "env", "numprocs": "numprocesses",
    "instances": "numprocesses", "replicas": "numprocesses", "stopsignal": "stop_signal",
    "killsignal": "stop_signal", "stopwaitsecs": "graceful_timeout",
    "timeoutstopsec": "graceful_timeout", "startretries": "max_retry",
    "stopasgroup": "stop_children", "killasgroup": "stop_children", "restart": "respawn",
    "before_reap": "after_reap",
}  # fmt: skip
"""Other tools' words for Stack's, lower case."""


def closest(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str | None:
    """The choice meant by `word` (an alias, else the most alike, case aside), or None."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    alias = ALIASES.get(word.lower())
    if alias is not None and alias in by_lower:
        return by_lower[alias]
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str:
    """` (did you mean numprocesses?)`, or "" when nothing is close."""
    found = closest(word, choices, cutoff)
    return f" (did you mean {found}?)" if found else ""
