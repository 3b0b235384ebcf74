"""Commands that act on watchers: scale, start, stop, restart, reload, signal, rm, reset, get.

A command that starts long work says what it started (`stopping webapp`, `rolling
restart of webapp started`): the controller answers once the desired state is written,
before the processes follow. With --wait it follows the work to its end (see
stack.cli.waiting) and says how long it took.

Each command is a function of the global options and its parameters, without typer:
stack.cli.direct calls it for a well-formed command line, stack.cli.app's typer command
for the others.
"""

from __future__ import annotations

import sys
import time

from stack.cli import render
from stack.cli.count import parse_count
from stack.cli.documents import to_json
from stack.cli.errors import UsageError
from stack.cli.options import GlobalOptions
from stack.cli.waiting import (
    Check,
    restarted,
    rolled_out,
    scaled_to,
    start_times,
    started,
    stopped,
    wait_until,
)

_UNDER_WAY = {
    "start": "starting",
    "stop": "stopping",
    "restart": "restarting",
    "reload": "reloading",
    "reset": "reset",
}


def _targets(watchers: list[str] | None, all_watchers: bool) -> list[str]:
    names = list(watchers or [])
    if all_watchers and names:
        raise UsageError("give WATCHER names or --all, not both")
    if not all_watchers and not names:
        raise UsageError("give at least one WATCHER, or --all")
    return names


def _act(
    options: GlobalOptions,
    verb: str,
    watchers: list[str] | None,
    all_watchers: bool,
    wait: bool = False,
    timeout: float = 30.0,
    rolling: bool = False,
) -> None:
    names = _targets(watchers, all_watchers)
    with options.connect() as client:
        before = start_times(client.status()) if wait and verb == "restart" else {}
        reply = client.watchers_call(verb, names, all_watchers, rolling)
        acted = list(reply.watchers)
        if options.structured:
            options.print(to_json(reply))
        else:
            for name in acted:
                if rolling:
                    render.print_text(
                        f"rolling restart of {name} started"
                        + ("" if wait else f" (stackctl status {name} shows how far it is)")
                    )
                else:
                    render.print_text(f"{_UNDER_WAY[verb]} {name}")
        if wait and acted:
            checks: dict[str, Check] = {
                "start": started(),
                "stop": stopped(),
                "restart": rolled_out(before) if rolling else restarted(before),
            }
            wait_until(client, acted, checks[verb], timeout, quiet=options.structured)


def scale(
    options: GlobalOptions, watcher: str, count: str, wait: bool = False, timeout: float = 30.0
) -> None:
    """Set a watcher's number of processes (N) or change it (+N, -N)."""
    try:
        parsed = parse_count(count)
    except ValueError as error:
        raise UsageError(str(error), param="N|+N|-N") from None
    with options.connect() as client:
        reply = client.scale(watcher, parsed.value, parsed.relative)
        render.answer(options, reply, f"{reply.watcher}: {reply.previous} -> {reply.numprocesses}")
        if wait:
            check = scaled_to(reply.numprocesses)
            wait_until(client, [reply.watcher or watcher], check, timeout, quiet=options.structured)


def start(
    options: GlobalOptions,
    watchers: list[str] | None = None,
    all_watchers: bool = False,
    wait: bool = False,
    timeout: float = 30.0,
) -> None:
    """Start watchers (clears flapping and fatal)."""
    _act(options, "start", watchers, all_watchers, wait, timeout)


def stop(
    options: GlobalOptions,
    watchers: list[str] | None = None,
    all_watchers: bool = False,
    wait: bool = False,
    timeout: float = 30.0,
) -> None:
    """Stop watchers' processes gracefully; they stay defined."""
    _act(options, "stop", watchers, all_watchers, wait, timeout)


def restart(
    options: GlobalOptions,
    watchers: list[str] | None = None,
    all_watchers: bool = False,
    wait: bool = False,
    timeout: float = 30.0,
    rolling: bool = False,
) -> None:
    """Stop and start every process of the watchers (all at once, or --rolling)."""
    _act(options, "restart", watchers, all_watchers, wait, timeout, rolling)


def reload(
    options: GlobalOptions, watchers: list[str] | None = None, all_watchers: bool = False
) -> None:
    """Replace processes gracefully: new workers up before old ones stop."""
    _act(options, "reload", watchers, all_watchers)


def reset(
    options: GlobalOptions, watchers: list[str] | None = None, all_watchers: bool = False
) -> None:
    """Clear flapping and fatal state so the watchers try again."""
    _act(options, "reset", watchers, all_watchers)


def send_signal(
    options: GlobalOptions, watcher: str, sig: str, wid: int = 0, children: bool = False
) -> None:
    """Send a signal to a watcher's processes."""
    with options.connect() as client:
        reply = client.signal(watcher, sig, wid, children)
    if options.structured:
        options.print(to_json(reply))
        return
    target = f"{watcher}[{wid}]" if wid else watcher
    procs = f"{reply.processes} process" + ("" if reply.processes == 1 else "es")
    agents = f"{reply.agents} agent" + ("" if reply.agents == 1 else "s")
    render.print_text(f"sent {sig} to {target} ({procs} on {agents})")


def rebalance(options: GlobalOptions, watcher: str) -> None:
    """Spread a watcher's processes evenly over its eligible agents again."""
    with options.connect() as client:
        reply = client.rebalance(watcher)
    render.answer(options, reply, f"{reply.watcher}: {reply.moved} processes moved")


def remove(options: GlobalOptions, watcher: str) -> None:
    """Stop a watcher's processes and remove it from the stack."""
    with options.connect() as client:
        reply = client.remove(watcher)
    render.answer(options, reply, f"removed {reply.watcher or watcher}")


def get(options: GlobalOptions, watcher: str) -> None:
    """Print a watcher's effective config (TOML, or its spec as JSON or YAML), then its
    processes: host, worker id, state and whole message (status cuts long ones)."""
    from stack.cli.status_view import messages_comment, process_messages

    with options.connect() as client:
        reply = client.get(watcher)
        found = [w for w in client.status(watcher).watchers if w.name == watcher]
    now = time.time()
    status = found[0] if found else None
    if options.structured:
        processes = process_messages(status, now) if status is not None else []
        options.print({"active": reply.active, "spec": to_json(reply.spec), "processes": processes})
    else:
        toml = reply.toml if reply.toml.endswith("\n") else reply.toml + "\n"
        comment = "".join(f"{line}\n" for line in messages_comment(status, now))
        sys.stdout.write(f"{toml}\n{comment}")
        sys.stdout.flush()
