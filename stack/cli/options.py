"""The global options every stackctl command sees.

`stackctl [--controller HOST:PORT] [-o text|json] COMMAND`: the main callback
parses them into `GlobalOptions` and stores it on the typer context; a command
reads it back with `options_of(ctx)` and opens its one client with
`open_client(ctx)`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import typer

from stack.cli.client import ClientSettings, StackClient


class OutputFormat(enum.StrEnum):
    """How commands print their result."""

    text = "text"
    json = "json"


@dataclass(frozen=True)
class GlobalOptions:
    """What the global options of one invocation asked for."""

    controller: str
    """The controller's AdminService address, HOST:PORT."""
    output: OutputFormat = OutputFormat.text
    """Text for people (rich tables) or JSON for programs."""
    timeout: float = 10.0
    """Deadline in seconds for each unary call."""

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.json

    def client_settings(self) -> ClientSettings:
        return ClientSettings(address=self.controller, timeout=self.timeout)


def options_of(ctx: typer.Context) -> GlobalOptions:
    """The global options stored by the main callback (defaults when run alone)."""
    root = ctx.find_root()
    options = root.obj
    if isinstance(options, GlobalOptions):
        return options
    return GlobalOptions(controller=ClientSettings().address)


def open_client(ctx: typer.Context) -> StackClient:
    """The invocation's one client; closed when the command's context closes."""
    client = StackClient(options_of(ctx).client_settings())
    ctx.call_on_close(client.close)
    return client


def parse_address(value: str) -> str:
    """Check a HOST:PORT option; a bad one is a usage error."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, got {value!r}")
    return value
