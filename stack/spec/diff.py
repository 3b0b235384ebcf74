"""What applying a new stack would change, option by option.

`stackctl apply --dry-run` prints this list, and the controller uses the same
functions to decide which watchers only scale and which need new processes.
A pure function of two StackSpecs: no I/O, deterministic order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from stack.spec.model import SocketSpec, StackSpec, WatcherSpec, socket_binding, version_sockets
from stack.spec.secrets import is_secret, mask_credentials


@dataclass(frozen=True)
class Change:
    """One line of a diff between two stacks."""

    op: str
    """"add", "remove", "change" or "scale" (only numprocesses differs)."""
    kind: str
    """"watcher" or "socket"."""
    name: str
    """The watcher's or the socket's name."""
    details: tuple[str, ...] = ()
    """Human lines such as "cmd: 'a' -> 'b'" or "numprocesses: 4 -> 6"."""
    replaces: bool = False
    """A changed watcher whose workers must be replaced by new ones (see
    needs_new_processes): a rolling change under its [update] rules."""


def diff_stacks(old: StackSpec, new: StackSpec) -> list[Change]:
    """Every difference, sockets first then watchers, each sorted by name.

    A watcher whose own spec is unchanged but whose sockets change (one it
    inherits moves to another address, or with use_sockets one is added or
    removed) is listed as a "change" too, with one line per socket saying why its
    workers are replaced. A socket change that keeps its address is applied to
    the bound socket and replaces nobody; its lines say so.
    """
    changes: list[Change] = []
    for name in sorted(set(old.sockets) | set(new.sockets)):
        if name not in new.sockets:
            changes.append(Change("remove", "socket", name))
        elif name not in old.sockets:
            changes.append(Change("add", "socket", name, (_address(new.sockets[name]),)))
        else:
            details = _option_changes(old.sockets[name], new.sockets[name])
            if details:
                details += _kept_binding(old.sockets[name], new.sockets[name])
                changes.append(Change("change", "socket", name, tuple(details)))
    for name in sorted(set(old.watchers) | set(new.watchers)):
        if name not in new.watchers:
            changes.append(Change("remove", "watcher", name))
            continue
        spec = new.watchers[name]
        if name not in old.watchers:
            summary = (f"cmd: {_show(spec.cmd)}", f"numprocesses: {spec.numprocesses}")
            changes.append(Change("add", "watcher", name, summary))
            continue
        before = old.watchers[name]
        for_sockets = _inherited_socket_changes(old, new, before, spec)
        details = _option_changes(before, spec) + for_sockets
        if details == [f"numprocesses: {before.numprocesses} -> {spec.numprocesses}"]:
            changes.append(Change("scale", "watcher", name, tuple(details)))
        elif details:
            own = before.process_fingerprint() != spec.process_fingerprint()
            replaces = own or bool(for_sockets)
            changes.append(Change("change", "watcher", name, tuple(details), replaces))
    return changes


def needs_new_processes(
    old: WatcherSpec,
    new: WatcherSpec,
    *,
    old_stack: StackSpec | None = None,
    new_stack: StackSpec | None = None,
) -> bool:
    """Whether running workers of `old` must be replaced to run as `new`.

    True when an option of the process changed (see
    WatcherSpec.process_fingerprint), or, when both stacks are given, when the
    sockets it inherits (or has as stdin) changed their address or (with
    use_sockets) their set: exactly when the version's fingerprint
    (model.version_fingerprint) changes.
    """
    if old.process_fingerprint() != new.process_fingerprint():
        return True
    if old_stack is None or new_stack is None:
        return False
    return bool(_inherited_socket_changes(old_stack, new_stack, old, new))


def _inherited_socket_changes(
    old_stack: StackSpec, new_stack: StackSpec, old: WatcherSpec, new: WatcherSpec
) -> list[str]:
    """Why the watcher's workers are replaced for their sockets, one line per socket:
    one they inherit (or have as stdin) moved to another address, or (the watcher's
    own `sockets` unchanged, so with use_sockets) one was added to or removed from
    the stack."""
    before = {spec.name: spec for spec in version_sockets(old, old_stack.sockets)}
    after = {spec.name: spec for spec in version_sockets(new, new_stack.sockets)}
    lines = []
    for name in sorted(set(before) | set(after)):
        if name in before and name in after:
            if socket_binding(before[name]) != socket_binding(after[name]):
                what = "; ".join(_option_changes(before[name], after[name]))
                lines.append(f"uses socket {name}, which changed ({what})")
        elif (old.sockets, old.stdin_socket) != (new.sockets, new.stdin_socket):
            continue  # the watcher's own options changed: their line says so
        elif name in after:
            lines.append(f"inherits the new socket {name} ({_address(after[name])})")
        else:
            lines.append(f"no longer inherits socket {name}, which is removed")
    return lines


def _kept_binding(old: SocketSpec, new: SocketSpec) -> list[str]:
    """For a socket change that keeps its address: what happens to the bound socket."""
    if socket_binding(old) != socket_binding(new):
        return []
    later = [
        key
        for key in ("umask", "replace", "so_reuseport")
        if getattr(old, key) != getattr(new, key)
    ]
    note = "same address: the bound socket is kept and no worker is replaced"
    if later:
        verb = "takes" if len(later) == 1 else "take"
        note += f" ({', '.join(later)} {verb} effect when it is next bound)"
    return [note]


def _option_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """One line per differing field, recursing into nested specs and maps."""
    out: list[str] = []
    for item in fields(old):
        if item.name == "name":
            continue
        before, after = getattr(old, item.name), getattr(new, item.name)
        if before == after:
            continue
        key = f"{prefix}{item.name.removesuffix('_')}"  # a stream's class_ is `class`
        if isinstance(before, Mapping):
            out += _map_changes(key, before, after)
        elif hasattr(before, "__dataclass_fields__"):
            out += _option_changes(before, after, f"{key}.")
        else:
            out.append(_line(key, _show(before), _show(after)))
    return out


def _map_changes(key: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        if key == "env" and is_secret(name):
            out.append(f"{key}.{name}: (secret) changed")
            continue
        old = _show(before[name]) if name in before else "(unset)"
        new = _show(after[name]) if name in after else "(unset)"
        out.append(_line(f"{key}.{name}", old, new))
    return out


def _line(key: str, old: str, new: str) -> str:
    """`key: old -> new`; when only a masked password differs, just that it changed."""
    if old == new:
        return f"{key}: (secret) changed"
    return f"{key}: {old} -> {new}"


def _show(value: Any) -> str:
    """A value as a diff shows it: passwords in URLs masked (see stack.spec.secrets)."""
    if is_dataclass(value) and not isinstance(value, type):  # a hook
        shown = {item.name: getattr(value, item.name) for item in fields(value)}
        return mask_credentials(repr(shown))
    if isinstance(value, tuple):
        return mask_credentials(repr(list(value)))
    return mask_credentials(repr(value)) if isinstance(value, str) else repr(value)


def _address(spec: SocketSpec) -> str:
    if spec.family == "AF_UNIX":
        return f"path: {spec.path!r}"
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"address: {host}:{spec.port}"
