"""Which values of a stack are secrets, how they are masked when shown, and which
choices of a stack file put one where every local user can read it.

A value is secret when its variable's name says so (`DB_PASSWORD`, `api_token`)
or, whatever the name, when it carries a password in a URL
(`postgres://app:hunter2@db/app`). `stackctl get`, `export` and the diffs of
`apply` show such values masked; `masked` does it to a whole watcher so that
every view masks the same fields. A secret substituted into `cmd` or `args`
(`$(circus.env.DB_PASSWORD)`) ends up on the worker's command line, which any
local user reads in `ps`: `exposures` names each such place so that `apply` can
warn (it is the operator's choice, not an error).
"""

from __future__ import annotations

import re
from dataclasses import replace
from types import MappingProxyType

from stack.spec.model import StackSpec, WatcherSpec
from stack.spec.substitute import SubstitutionError, find_references, split_key

MASK = "********"
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY")
"""An env variable whose name contains one of these (any case) is masked on request."""

_CREDENTIAL_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*):([^\s@]+)@")
"""`scheme://user:password@`: the password is the second group. It runs to the last
`@` of the word, so a password with a `/` or `:` in it is masked whole."""


def is_secret(env_name: str) -> bool:
    """Whether an env variable's name says its value is a secret."""
    upper = env_name.upper()
    return any(word in upper for word in SECRET_WORDS)


def carries_credentials(text: str) -> bool:
    """Whether `text` holds a URL with a password (`scheme://user:password@host`)."""
    return _CREDENTIAL_URL.search(text) is not None


def mask_credentials(text: str) -> str:
    """`text` with the password of every URL in it masked: `postgres://app:********@db`."""
    return _CREDENTIAL_URL.sub(lambda match: f"{match.group(1)}:{MASK}@", text)


def mask_env(name: str, value: str) -> str:
    """How the value of env variable `name` is shown."""
    return MASK if is_secret(name) else mask_credentials(value)


def masked(spec: WatcherSpec) -> WatcherSpec:
    """`spec` as shown to anyone: secret env values and URL passwords masked in env,
    `cmd`, `args`, the hooks and the health check's target."""
    hooks = {
        moment: replace(hook, cmd=mask_credentials(hook.cmd)) for moment, hook in spec.hooks.items()
    }
    return replace(
        spec,
        cmd=mask_credentials(spec.cmd),
        args=tuple(mask_credentials(arg) for arg in spec.args),
        env=MappingProxyType({key: mask_env(key, value) for key, value in spec.env.items()}),
        health=replace(spec.health, target=mask_credentials(spec.health.target)),
        hooks=MappingProxyType(hooks),
    )


def masked_stack(stack: StackSpec) -> StackSpec:
    """Every watcher of `stack` masked (see `masked`)."""
    watchers = {name: masked(spec) for name, spec in stack.watchers.items()}
    return replace(stack, watchers=MappingProxyType(watchers))


def exposures(stack: StackSpec) -> list[str]:
    """One line for each place where a secret reaches a worker's command line."""
    found: list[str] = []
    for name, spec in sorted(stack.watchers.items()):
        texts = [("cmd", spec.cmd), *(("args", arg) for arg in spec.args)]
        for key, text in texts:
            where = f"watchers.{name}.{key}"
            for problem in _exposed(text, spec):
                line = f"{where}: {problem}: every user of the host can read it in ps"
                if line not in found:
                    found.append(line)
    return found


def _exposed(text: str, spec: WatcherSpec) -> list[str]:
    problems: list[str] = []
    try:
        references = find_references(text)
    except SubstitutionError:
        references = []  # the loader refuses it; nothing will run
    for written, key in references:
        kind, variable = split_key(key)
        if kind != "env":
            continue
        if is_secret(variable):
            problems.append(f"{written} puts the secret {variable} on the command line")
        elif carries_credentials(spec.env.get(variable, "")):
            problems.append(f"{written} puts a URL with a password on the command line")
    if carries_credentials(text):
        problems.append("a URL with a password is on the command line")
    return problems
