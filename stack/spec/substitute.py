"""Circus-style `$(circus.X)` / `$(stack.X)` substitutions in a command line.

The agent expands them per worker just before spawning (the socket fds and the
worker id are only known then); the loader calls `references` to reject a stack
file whose references could never be satisfied, before anything is applied.

Keys: `sockets.NAME` (the fd of an inherited socket), `wid` (the worker id),
`env.NAME` (a value of the worker's environment) and `name` (the watcher).
The `circus.` / `stack.` prefix and the simple keys are case-insensitive; socket
and variable names are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PREFIX = re.compile(r"\$\((?:circus|stack)\.", re.IGNORECASE)
_REFERENCE = re.compile(r"\$\((circus|stack)\.([A-Za-z0-9_.\-]+)\)", re.IGNORECASE)


class SubstitutionError(ValueError):
    """A reference that is malformed, unknown, or not available to this worker."""


def _scan(text: str) -> list[re.Match[str]]:
    """Every well-formed reference in order; raises on a malformed one."""
    matches: list[re.Match[str]] = []
    for start in _PREFIX.finditer(text):
        match = _REFERENCE.match(text, start.start())
        if match is None:
            snippet = text[start.start() : start.start() + 40]
            raise SubstitutionError(f"malformed substitution {snippet!r}")
        matches.append(match)
    return matches


def _split_key(key: str) -> tuple[str, str]:
    """`sockets.web` -> ("sockets", "web"); `wid` -> ("wid", "")."""
    head, _, rest = key.partition(".")
    return head.lower(), rest


def check_key(key: str, written: str = "") -> None:
    """Raise SubstitutionError if `key` is not one Stack knows how to expand."""
    head, rest = _split_key(key)
    if head in ("sockets", "env") and rest:
        return
    if head in ("wid", "name") and not rest:
        return
    shown = written or f"$(circus.{key})"
    raise SubstitutionError(
        f"unknown substitution {shown} (known: sockets.NAME, wid, env.NAME, name)"
    )


def split_key(key: str) -> tuple[str, str]:
    """A referenced key as (kind, argument): `sockets.web` -> ("sockets", "web")."""
    return _split_key(key)


def find_references(text: str) -> list[tuple[str, str]]:
    """Every reference in `text` as (as written, key): `("$(circus.wid)", "wid")`."""
    return [(match.group(0), match.group(2)) for match in _scan(text)]


def references(text: str) -> list[str]:
    """The keys referenced in `text`, in order, as written (`["sockets.web", "wid"]`).

    Raises SubstitutionError for a malformed `$(circus.` / `$(stack.` reference.
    """
    return [match.group(2) for match in _scan(text)]


def expand(
    text: str,
    *,
    watcher: str,
    wid: int,
    socket_fds: Mapping[str, int],
    env: Mapping[str, str],
) -> str:
    """`text` with every reference replaced; raises SubstitutionError (one line)."""
    matches = _scan(text)
    if not matches:
        return text
    out: list[str] = []
    pos = 0
    for match in matches:
        out.append(text[pos : match.start()])
        out.append(_value(match.group(0), match.group(2), watcher, wid, socket_fds, env))
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _value(
    written: str,
    key: str,
    watcher: str,
    wid: int,
    socket_fds: Mapping[str, int],
    env: Mapping[str, str],
) -> str:
    check_key(key, written)
    head, rest = _split_key(key)
    if head == "wid":
        return str(wid)
    if head == "name":
        return watcher
    if head == "sockets":
        if rest not in socket_fds:
            raise SubstitutionError(
                f"{written}: socket {rest!r} is not inherited by watcher {watcher!r}"
            )
        return str(socket_fds[rest])
    if rest not in env:
        raise SubstitutionError(
            f"{written}: {rest!r} is not in the environment of watcher {watcher!r}"
        )
    return env[rest]
