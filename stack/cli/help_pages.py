"""stackctl's `--help` pages, written from the command table without loading typer.

`stackctl --help` lists the commands by section and the global options;
`stackctl COMMAND --help` gives the command's usage, what it does, each argument and
option, and examples; `stackctl certs --help` lists the group's subcommands. The look
is every Stack program's (stack.usage).
"""

from __future__ import annotations

from stack.cli.commands import (
    COMMANDS,
    GLOBAL_OPTIONS,
    GROUPS,
    HELP,
    PROG,
    SECTIONS,
    VERSION,
    Command,
    Param,
    subcommands,
    top_level_names,
)
from stack.usage import HelpSection, page

DESCRIPTION = """Operate a Stack: processes and sockets across hosts, the Circus way.

A controller keeps the desired state and an agent on each host runs it; stackctl talks
to the controller (its local socket on this host by default, see --controller). Exit
status: 0 done, 1 failed (one line on stderr says why), 2 a usage error."""

_OPTIONAL_ARGUMENTS = frozenset(("status", "stats"))
"""Commands whose argument may be left out."""
_WATCHERS_OR_ALL = frozenset(("start", "stop", "restart", "reload", "reset"))


def _rows(params: tuple[Param, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((param.term, param.help) for param in params)


def _global_section(title: str = "Global options (before or after the command)") -> HelpSection:
    return HelpSection(title, _rows((*GLOBAL_OPTIONS, VERSION, HELP)))


def top_page() -> str:
    """`stackctl --help`."""
    sections: list[HelpSection] = []
    left = max(len(name) for name in top_level_names())
    for title in SECTIONS:
        rows: list[tuple[str, str]] = []
        for command in COMMANDS:
            if command.section != title:
                continue
            group = command.name.split()[0]
            if group in GROUPS:
                if all(row[0] != group for row in rows):
                    rows.append((group, GROUPS[group]))
                continue
            rows.append((command.name, command.summary))
        sections.append(HelpSection(title, tuple(rows), left=left))
    sections.append(_global_section())
    footer = HelpSection(
        "More", lines=(f"{PROG} COMMAND --help   a command's arguments, options and examples",)
    )
    return page(f"{PROG} [OPTIONS] COMMAND [ARGS]...", DESCRIPTION, [*sections, footer])


def usage(command: Command) -> str:
    """`stackctl scale [OPTIONS] WATCHER N|+N|-N`."""
    words = [PROG, command.name]
    if command.options:
        words.append("[OPTIONS]")
    if command.name in _WATCHERS_OR_ALL:
        words.append("(WATCHER... | --all)")
    else:
        for argument in command.arguments:
            term = argument.term
            words.append(f"[{term}]" if command.name in _OPTIONAL_ARGUMENTS else term)
    return " ".join(words)


def command_page(command: Command) -> str:
    """`stackctl COMMAND --help`."""
    description = command.summary
    if command.description:
        description += "\n\n" + command.description
    examples: list[str] = []
    for what, line in command.examples:
        examples += [f"# {what}", line, ""]
    sections = [
        HelpSection("Arguments", _rows(command.arguments)),
        HelpSection("Options", _rows((*command.options, HELP))),
        HelpSection("Examples", lines=tuple(examples[:-1])),
        HelpSection(
            "Global options",
            lines=(
                "--controller, -o/--output, --tls-dir, --cert-name, --ca, --cert, --key:",
                f"see {PROG} --help. They go before or after the command.",
            ),
        ),
    ]
    return page(usage(command), description, sections)


def group_page(group: str) -> str:
    """`stackctl certs --help`."""
    rows = tuple((c.name.split()[1], c.summary) for c in subcommands(group))
    sections = [
        HelpSection("Commands", rows),
        HelpSection("Options", _rows((HELP,))),
        HelpSection("More", lines=(f"{PROG} {group} COMMAND --help   a command's options",)),
    ]
    return page(f"{PROG} {group} COMMAND [OPTIONS]", GROUPS[group], sections)
