"""`stackctl`, the operator's CLI: the front door, which loads only what a command needs.

Exit status 0 on success; 1 on failure, with one line `stackctl: <why>` on stderr and
no traceback; 2 on usage errors.

A command line is taken apart first without typer (stack.cli.cmdline): the global
options may stand before or after the command. Then, cheapest first:

- `--version`, `--help` (pages from the command table, stack.cli.help_pages) and
  shell completion (stack.cli.completion) load neither typer, grpc nor rich;
- a plain command line runs its command directly (stack.cli.direct), without typer:
  grpc loads when the command talks to the controller, cryptography only when TLS files
  are used, rich only when something is rendered with it;
- anything else (a typo, a bad value, an unknown command) goes to the typer app
  (stack.cli.app), with the global options in front, which says what is wrong or runs
  the same command.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from stack import version_line
from stack.cli.cmdline import split
from stack.cli.commands import GROUPS, PROG


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _fail(message: str) -> None:
    from stack.cli.terminal import safe

    sys.stderr.write(f"{PROG}: {safe(message)}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _run(argv: list[str]) -> None:
    if argv[:1] == ["__complete"]:
        from stack.cli.completion import respond

        _print("".join(line + "\n" for line in respond(argv[1:])))
        return
    line = split(argv)
    if line.version:
        _print(version_line(PROG) + "\n")
        return
    nothing = not (line.words or line.before or line.args)
    if (line.help or nothing) and not line.unknown:
        from stack.cli import help_pages

        if line.command is not None:
            _print(help_pages.command_page(line.command))
        elif line.words and line.words[0] in GROUPS:
            _print(help_pages.group_page(line.words[0]))
        else:
            _print(help_pages.top_page())
        return
    if line.command is not None and not line.help:
        from stack.cli import direct
        from stack.cli.errors import CommandError

        try:
            if direct.run(line):
                return
        except CommandError as error:
            _fail(str(error))
        except KeyboardInterrupt:  # as typer says it
            sys.stderr.write("\nAborted!\n")
            raise SystemExit(1) from None
    from stack.cli.app import run

    run(line.for_typer() + (["--help"] if line.help else []))


def main(argv: list[str] | None = None) -> None:
    """The `stackctl` console script (`argv`: run in-process, for tests, and return or
    raise SystemExit as usual).

    As a program it ends with os._exit once its output is flushed: tearing down an
    interpreter that loaded grpc takes longer than many a command.
    """
    try:
        _run(sys.argv[1:] if argv is None else argv)
        code = 0
    except SystemExit as done:
        if argv is not None:
            raise
        code = _exit_code(done)
    except BrokenPipeError:  # `stackctl status | head -1`: the reader had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    if argv is not None:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


def _exit_code(done: SystemExit) -> int:
    """What `sys.exit(x)` means as an exit status (a text is printed, and is 1)."""
    if done.code is None or isinstance(done.code, int):
        return done.code or 0
    sys.stderr.write(f"{done.code}\n")
    return 1


def __getattr__(name: str) -> Any:
    """`stack.cli.main.app`, the typer app, loaded when asked for (tests drive it)."""
    if name == "app":
        from stack.cli.app import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
