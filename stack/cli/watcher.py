"""Commands that act on watchers: scale, start, stop, restart, reload, signal, rm, reset, get.

A command that starts long work says what it started (`stopping webapp`, `rolling
restart of webapp started`): the controller answers once the desired state is written,
before the processes follow. With --wait it follows the work to its end (see
stack.cli.waiting) and says how long it took.
"""

from __future__ import annotations

from typing import Annotated

import typer

from stack.cli import commands as table
from stack.cli import render
from stack.cli.count import parse_count
from stack.cli.documents import to_json
from stack.cli.options import open_client, options_of
from stack.cli.params import argument, option
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

WatcherArg = Annotated[str, argument(table.WATCHER)]
WatchersArg = Annotated[list[str] | None, argument(table.WATCHERS)]
AllOpt = Annotated[bool, option(table.ALL)]
TimeoutOpt = Annotated[float, option(table.TIMEOUT, min=0)]


def _wait(command: str) -> object:
    return option(table.BY_NAME[command].param("wait"))


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
        raise typer.BadParameter("give WATCHER names or --all, not both")
    if not all_watchers and not names:
        raise typer.BadParameter("give at least one WATCHER, or --all")
    return names


def _act(
    ctx: typer.Context,
    verb: str,
    watchers: list[str] | None,
    all_watchers: bool,
    wait: bool = False,
    timeout: float = 30.0,
    rolling: bool = False,
) -> None:
    names = _targets(watchers, all_watchers)
    options = options_of(ctx)
    client = open_client(ctx)
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
    ctx: typer.Context,
    watcher: WatcherArg,
    count: Annotated[str, argument(table.BY_NAME["scale"].param("count"))],
    wait: Annotated[bool, _wait("scale")] = False,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Set a watcher's number of processes (N) or change it (+N, -N)."""
    try:
        parsed = parse_count(count)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="N|+N|-N") from None
    options = options_of(ctx)
    client = open_client(ctx)
    reply = client.scale(watcher, parsed.value, parsed.relative)
    if options.structured:
        options.print(to_json(reply))
    else:
        render.print_text(f"{reply.watcher}: {reply.previous} -> {reply.numprocesses}")
    if wait:
        target = reply.watcher or watcher
        wait_until(
            client, [target], scaled_to(reply.numprocesses), timeout, quiet=options.structured
        )


def start(
    ctx: typer.Context,
    watchers: WatchersArg = None,
    all_watchers: AllOpt = False,
    wait: Annotated[bool, _wait("start")] = False,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Start watchers (clears flapping and fatal)."""
    _act(ctx, "start", watchers, all_watchers, wait, timeout)


def stop(
    ctx: typer.Context,
    watchers: WatchersArg = None,
    all_watchers: AllOpt = False,
    wait: Annotated[bool, _wait("stop")] = False,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Stop watchers' processes gracefully; they stay defined."""
    _act(ctx, "stop", watchers, all_watchers, wait, timeout)


def restart(
    ctx: typer.Context,
    watchers: WatchersArg = None,
    all_watchers: AllOpt = False,
    wait: Annotated[bool, _wait("restart")] = False,
    timeout: TimeoutOpt = 30.0,
    rolling: Annotated[bool, option(table.BY_NAME["restart"].param("rolling"))] = False,
) -> None:
    """Stop and start every process of the watchers (all at once, or --rolling)."""
    _act(ctx, "restart", watchers, all_watchers, wait, timeout, rolling)


def reload(ctx: typer.Context, watchers: WatchersArg = None, all_watchers: AllOpt = False) -> None:
    """Replace processes gracefully: new workers up before old ones stop."""
    _act(ctx, "reload", watchers, all_watchers)


def reset(ctx: typer.Context, watchers: WatchersArg = None, all_watchers: AllOpt = False) -> None:
    """Clear flapping and fatal state so the watchers try again."""
    _act(ctx, "reset", watchers, all_watchers)


_SIGNAL = table.BY_NAME["signal"]


def send_signal(
    ctx: typer.Context,
    watcher: WatcherArg,
    sig: Annotated[str, argument(_SIGNAL.param("sig"))],
    wid: Annotated[int, option(_SIGNAL.param("wid"), min=0)] = 0,
    children: Annotated[bool, option(_SIGNAL.param("children"))] = False,
) -> None:
    """Send a signal to a watcher's processes."""
    options = options_of(ctx)
    reply = open_client(ctx).signal(watcher, sig, wid, children)
    if options.structured:
        options.print(to_json(reply))
        return
    target = f"{watcher}[{wid}]" if wid else watcher
    procs = f"{reply.processes} process" + ("" if reply.processes == 1 else "es")
    agents = f"{reply.agents} agent" + ("" if reply.agents == 1 else "s")
    render.print_text(f"sent {sig} to {target} ({procs} on {agents})")


def rebalance(ctx: typer.Context, watcher: WatcherArg) -> None:
    """Spread a watcher's processes evenly over its eligible agents again."""
    options = options_of(ctx)
    reply = open_client(ctx).rebalance(watcher)
    if options.structured:
        options.print(to_json(reply))
    else:
        render.print_text(f"{reply.watcher}: {reply.moved} processes moved")


def remove(ctx: typer.Context, watcher: WatcherArg) -> None:
    """Stop a watcher's processes and remove it from the stack."""
    options = options_of(ctx)
    reply = open_client(ctx).remove(watcher)
    if options.structured:
        options.print(to_json(reply))
    else:
        render.print_text(f"removed {reply.watcher or watcher}")


def get(ctx: typer.Context, watcher: WatcherArg) -> None:
    """Print a watcher's effective config (TOML, or its spec as JSON or YAML)."""
    options = options_of(ctx)
    reply = open_client(ctx).get(watcher)
    if options.structured:
        options.print({"active": reply.active, "spec": to_json(reply.spec)})
    else:
        typer.echo(reply.toml, nl=not reply.toml.endswith("\n"))


def register(app: typer.Typer) -> None:
    negative_counts = {"ignore_unknown_options": True}
    app.command("scale", context_settings=negative_counts)(scale)
    app.command("start")(start)
    app.command("stop")(stop)
    app.command("restart")(restart)
    app.command("reload")(reload)
    app.command("signal")(send_signal)
    app.command("rm")(remove)
    app.command("rebalance")(rebalance)
    app.command("reset")(reset)
    app.command("get")(get)
