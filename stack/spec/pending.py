"""Options a stack file may already set but that this version's agents do not act on yet.

The stack file (and what `stackctl convert` writes from a Circus or Supervisor file)
accepts them so that files can be written, converted, stored and diffed today; the
agents will act on them in a later version. Until then `apply` says so, one line per
watcher and option, instead of letting a setting look as if it did something.
"""

from __future__ import annotations

from dataclasses import fields

from stack.spec.model import StackSpec, StreamSpec, WatcherSpec

PENDING_OPTIONS: tuple[str, ...] = ()
"""Watcher options that the agents do not act on yet."""
PENDING_STREAM_OPTIONS: tuple[str, ...] = ()
"""Stream options that the agents do not act on yet."""

_DEFAULT = WatcherSpec(name="", cmd="")


def pending_options(stack: StackSpec) -> list[str]:
    """`watchers.web.on_demand: not acted on by this version's agents yet` for each use."""
    found: list[str] = []
    for name, spec in sorted(stack.watchers.items()):
        for option in _pending_in(spec):
            found.append(f"watchers.{name}.{option}: not acted on by this version's agents yet")
    return found


def _pending_in(spec: WatcherSpec) -> list[str]:
    used = [key for key in PENDING_OPTIONS if getattr(spec, key) != getattr(_DEFAULT, key)]
    for stream in ("stdout_stream", "stderr_stream"):
        value: StreamSpec = getattr(spec, stream)
        used += [
            f"{stream}.{item.name.removesuffix('_')}"
            for item in fields(StreamSpec)
            if item.name in PENDING_STREAM_OPTIONS
            and getattr(value, item.name) != getattr(StreamSpec(), item.name)
        ]
    return used
