"""Typer parameters made from the command table's entries (stack.cli.commands).

stack.cli.app makes each typer command from its table entry: the Python type and default
from the entry's kind and default, and through these two functions its flags, metavar,
help text and environment variable, so that `--help` (printed from the table),
completion, the direct parser and typer never disagree on them.
"""

from __future__ import annotations

from typing import Any

import typer

from stack.cli.commands import Param


def option(param: Param, **extra: Any) -> Any:
    """A typer.Option for `param` (`extra`: what only the parser needs, e.g. `min=0`)."""
    return typer.Option(
        *param.flags,
        metavar=param.metavar or None,
        help=param.help,
        envvar=param.envvar or None,
        show_default=False,
        **extra,
    )


def argument(param: Param, **extra: Any) -> Any:
    """A typer.Argument for `param`."""
    return typer.Argument(metavar=param.metavar, help=param.help, show_default=False, **extra)
