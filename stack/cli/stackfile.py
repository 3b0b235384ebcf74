"""Commands about the stack file as a whole: apply, up, export and convert.

stackctl sends the controller the file's name and text, and the controller answers
with the changes or a one-line error naming the key. stackctl checks the file first with
the same loader (stack.cli.input_file), so that a typo is named, with its "did you
mean", before any controller is dialled: `apply` and `up` fail on it the same way with
a controller or without one. A Circus INI file or a supervisord.conf is
converted into a stack file first, here (see stack.cli.input_file), and that is
what is sent.

`apply` shows its plan before it changes anything: it asks the controller for a dry
run, prints it, and when the plan takes something away (removes a watcher or a socket,
replaces workers) asks for a confirmation (on a terminal; `--yes` gives it beforehand).
It then applies with the generation the plan was made at, which the controller refuses
if the stack changed in between: what was confirmed is exactly what is applied.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from stack.cli import render
from stack.cli.documents import to_json
from stack.cli.errors import CommandError
from stack.cli.input_file import StackFile, print_notes, read_stack_file
from stack.cli.local import LocalStack, LocalStackSettings, is_listening
from stack.cli.options import GlobalOptions
from stack.cli.status_view import print_status
from stack.cli.terminal import safe
from stack.security.local import is_unix
from stack.spec.observed import ON_DEMAND_REST
from stack.v1 import admin_pb2

if TYPE_CHECKING:
    from stack.cli.client import StackClient

CONTROLLER_READY_TIMEOUT = 15.0
RUNNING_TIMEOUT = 20.0
POLL_INTERVAL = 0.1


def apply_document(
    reply: admin_pb2.ApplyReply, dry_run: bool, notes: tuple[str, ...] = ()
) -> dict[str, Any]:
    document = to_json(reply)
    document["dry_run"] = dry_run
    if notes:
        document["notes"] = list(notes)
    return document


def _print_plan(reply: admin_pb2.ApplyReply) -> None:
    console = render.stdout_console()
    for line in [*render.change_lines(reply.changes), *render.warning_lines(reply.warnings)]:
        console.print(line, soft_wrap=True)


def _print_apply(reply: admin_pb2.ApplyReply, dry_run: bool) -> None:
    _print_plan(reply)
    _print_outcome(reply, dry_run)


def _print_outcome(reply: admin_pb2.ApplyReply, dry_run: bool) -> None:
    render.print_text(render.apply_outcome(reply, dry_run))


def confirm(risks: str) -> None:
    """Ask on the terminal whether to go on with a plan that would do `risks`;
    CommandError (nothing applied) on no, or without a terminal to ask on."""
    if not sys.stdin.isatty():
        raise CommandError(
            f"this apply would {risks}: nothing was applied; "
            "run it on a terminal to confirm, or pass --yes"
        )
    if not ask(f"This will {risks}. Apply?"):
        raise CommandError("nothing was applied")


def ask(question: str) -> bool:
    """`question [y/N]: ` on stderr until answered y(es) or n(o); no (the default) on an
    empty line, at the end of input or on Ctrl-C."""
    while True:
        sys.stderr.write(f"{question} [y/N]: ")
        sys.stderr.flush()
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            return False
        if not answer:  # end of input
            sys.stderr.write("\n")
            return False
        word = answer.strip().lower()
        if word in ("y", "yes"):
            return True
        if word in ("", "n", "no"):
            return False
        sys.stderr.write("Error: invalid input\n")


def apply(options: GlobalOptions, file: str, dry_run: bool = False, yes: bool = False) -> None:
    """Make the stack what FILE says; prints the changes like a diff first.

    A plan that removes a watcher or a socket, or replaces workers, is applied only
    once confirmed: on a terminal stackctl asks; without one it refuses unless --yes.
    A Circus or Supervisor file is applied as what `stackctl convert` prints for it.
    """
    stack_file = read_stack_file(file)
    with options.connect() as client:
        _apply(options, client, stack_file, dry_run, yes)


def _apply(
    options: GlobalOptions, client: StackClient, stack_file: StackFile, dry_run: bool, yes: bool
) -> None:
    file, content = stack_file.name, stack_file.content
    as_document = options.structured
    if not as_document:
        print_notes(stack_file.notes)

    def show(reply: admin_pb2.ApplyReply, dry_run: bool) -> None:
        if as_document:
            options.print(apply_document(reply, dry_run, stack_file.notes))
        else:
            _print_apply(reply, dry_run)

    if dry_run or yes:
        show(client.apply(file, content, dry_run), dry_run)
        return
    plan = client.apply(file, content, dry_run=True)
    if not plan.changes:
        show(plan, dry_run=False)  # what applying nothing answers
        return
    if not as_document:
        _print_plan(plan)
    if risks := render.plan_risks(plan.changes):
        confirm(risks)
    reply = client.apply(file, content, if_generation=plan.generation)
    if as_document:
        options.print(apply_document(reply, dry_run=False, notes=stack_file.notes))
    else:
        _print_outcome(reply, dry_run=False)


def export(options: GlobalOptions, show_secrets: bool = False) -> None:
    """Print the whole stack as a TOML stack file; secret env values are masked."""
    with options.connect() as client:
        reply = client.export(show_secrets)
    if options.structured:
        options.print({"toml": reply.toml})
    else:
        _print_file(reply.toml)


def _print_file(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


# -- up --------------------------------------------------------------------------


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while `up` was starting."""


@contextmanager
def _stop_requests() -> Iterator[tuple[threading.Event, threading.Event]]:
    """(interrupted, forced): set by the first and by a second SIGINT/SIGTERM."""
    interrupted = threading.Event()
    forced = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            forced.set()
        interrupted.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted, forced
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _poll(
    interrupted: threading.Event,
    stack: LocalStack,
    timeout: float,
    done: Callable[[], bool],
) -> bool:
    """Call `done` until it is true (True) or `timeout` passes (False); stops early on
    Ctrl-C (_Interrupted) or when a child dies (CommandError)."""
    deadline = time.monotonic() + timeout
    while True:
        if interrupted.is_set():
            raise _Interrupted
        stack.check_alive()
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        interrupted.wait(POLL_INTERVAL)


def _controller_answers(client: StackClient) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            client.status(timeout=1.0)
        except CommandError:
            return False
        return True

    return answers


def _not_running(reply: admin_pb2.StatusReply) -> list[str]:
    """`webapp has 3 of 4 running` for every active watcher short of its count (an
    on_demand watcher waiting for its first connection is where it should be)."""
    return [
        f"{w.name} has {w.running} of {w.numprocesses} running"
        for w in reply.watchers
        if w.active
        and (w.running != w.numprocesses or w.pending)
        and not w.message.startswith(ON_DEMAND_REST)
    ]


def socket_urls(toml_text: str) -> list[tuple[str, str]]:
    """(name, `http://127.0.0.1:8080`) for every TCP socket of a stack file's text."""
    try:
        document = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError:
        return []
    sockets = document.get("sockets", {})
    urls: list[tuple[str, str]] = []
    if not isinstance(sockets, dict):
        return urls
    for name, spec in sockets.items():
        if not isinstance(spec, dict) or spec.get("path"):
            continue
        if spec.get("family", "AF_INET") == "AF_UNIX":
            continue
        if spec.get("type", "SOCK_STREAM") != "SOCK_STREAM":
            continue
        port = spec.get("port", 0)
        if not isinstance(port, int) or port <= 0:
            continue
        host = str(spec.get("host", "127.0.0.1"))
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        urls.append((name, f"http://{host}:{port}"))
    return urls


def _flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()


def up(
    options: GlobalOptions,
    file: str,
    data_dir: Path = Path(".stack"),
    log_level: str = "info",
    verbose: bool = False,
) -> None:
    """Run a controller and a local agent in the foreground and apply FILE; Ctrl-C stops all."""
    stack_file = read_stack_file(file)
    content = stack_file.content
    print_notes(stack_file.notes)
    address = options.controller
    if not is_unix(address):
        raise CommandError(
            f"up serves its controller on a unix socket only, not on {address}: "
            "give --controller unix:PATH, or no --controller"
        )
    if is_listening(address):
        raise CommandError(
            f"something already listens at {address} (a controller? stop it or use --controller)"
        )
    level = "debug" if verbose else log_level
    stack = LocalStack(LocalStackSettings(controller=address, data_dir=data_dir, log_level=level))
    logs = " and ".join(f"{stack.log_path(name)}" for name in ("controller", "agent"))
    render.print_text(f"logs ({level}): {logs}")
    _flush()
    with options.connect() as client, _stop_requests() as (interrupted, forced):
        try:
            stack.start_controller()
            if not _poll(interrupted, stack, CONTROLLER_READY_TIMEOUT, _controller_answers(client)):
                raise CommandError(
                    f"the controller at {address} did not answer within "
                    f"{CONTROLLER_READY_TIMEOUT:g}s (see {data_dir / 'controller.log'})"
                )
            stack.start_agent()
            _print_apply(client.apply(file, content), dry_run=False)
            _flush()
            missing: list[str] = []

            def all_running() -> bool:
                missing[:] = _not_running(client.status())
                return not missing

            if not _poll(interrupted, stack, RUNNING_TIMEOUT, all_running):
                sys.stderr.write(
                    safe(f"not everything is running after {RUNNING_TIMEOUT:g}s: ")
                    + safe("; ".join(missing))
                    + "\n"
                )
            print()
            for name, url in socket_urls(client.export().toml) or socket_urls(content):
                render.print_text(f"{name}: {url}")
            print()
            print_status(client.status(), time.time())
            print()
            render.print_text(f"controller at {address}; Ctrl-C stops everything")
            _flush()
            _poll(interrupted, stack, float("inf"), lambda: False)
        except _Interrupted:
            pass
        finally:
            stack.stop(forced)
        _flush()


def convert(options: GlobalOptions, file: str) -> None:
    """Print the stack file equivalent to FILE, with a comment above each thing that was
    changed or could not be carried; talks to no controller."""
    from stack.spec.foreign import TOML, read_stack_text

    stack_file = read_stack_file(file)  # (checked: a stack file is read again without fail)
    text = stack_file.content
    if stack_file.format == TOML:
        text = read_stack_text(text, file).toml()
    if options.structured:
        options.print({"format": stack_file.format, "toml": text, "notes": list(stack_file.notes)})
    else:
        _print_file(text)
