"""Where things stand on a stackctl command line, found without typer.

`split(argv)` finds the command (with the command table, stack.cli.commands), takes the
global options out from wherever they are, before the command or after it, and notes
`--help` and `--version`. What is left is the command's own part, in its original
order. stack.cli.main then prints help, completes, runs the fast path of a command, or
hands typer `global options + command + the rest`, the one order typer accepts. Anything
this does not understand (an unknown option or command, a missing value) is left where
it was, for typer to report as usual. `--` ends the options: what follows is the
command's, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stack.cli.commands import BY_NAME, GROUPS, Command, global_option


@dataclass
class CommandLine:
    """One stackctl command line, taken apart."""

    globals: dict[str, str] = field(default_factory=dict)
    """Global options given, by parameter name (`output` -> `json`); the last one wins."""
    global_args: list[str] = field(default_factory=list)
    """The same as tokens, in their order (`-o`, `json`), to put in front for typer."""
    words: list[str] = field(default_factory=list)
    """The command as given: `["status"]`, `["certs", "issue"]`; `["certs"]` alone."""
    command: Command | None = None
    """Its table entry; None without a command, for a group alone or an unknown one."""
    args: list[str] = field(default_factory=list)
    """The command's own part: its options, their values and its arguments, in order."""
    before: list[str] = field(default_factory=list)
    """Unknown options before the command (typer reports them)."""
    help: bool = False
    version: bool = False

    @property
    def unknown(self) -> bool:
        """A command word that is neither a command nor a group."""
        return bool(self.words) and self.command is None and self.words[0] not in GROUPS

    def for_typer(self) -> list[str]:
        """The argv typer understands: global options first, then the command."""
        return [*self.global_args, *self.before, *self.words, *self.args]


def split(argv: list[str]) -> CommandLine:
    """Take `argv` (without the program name) apart; never fails."""
    line = CommandLine()
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            line.args.extend(tokens[i - 1 :])
            break
        if token in ("-h", "--help"):
            line.help = True
            continue
        if token == "--version":
            line.version = True
            continue
        taken = _global(token, tokens, i, line)
        if taken is not None:
            i = taken
            continue
        if token.startswith("-") and token != "-":
            i = _command_option(token, tokens, i, line)
            continue
        if _wants_word(line):
            line.words.append(token)
            line.command = BY_NAME.get(" ".join(line.words))
            continue
        line.args.append(token)
    return line


def _wants_word(line: CommandLine) -> bool:
    """Whether the next plain word names the command (or the group's subcommand)."""
    if not line.words:
        return True
    return len(line.words) == 1 and line.words[0] in GROUPS and line.command is None


def _global(token: str, tokens: list[str], i: int, line: CommandLine) -> int | None:
    """Take a global option starting at `token`; the index after it, or None if it is not
    one (or lacks its value: typer says so)."""
    flag, value = token, None
    if token.startswith("--") and "=" in token:
        flag, value = token.split("=", 1)
    elif len(token) > 2 and token[0] == "-" and token[1] != "-":
        flag, value = token[:2], token[2:]  # -ojson
    param = global_option(flag)
    if param is None:
        return None
    if value is None:
        if i >= len(tokens):
            return None
        value, i = tokens[i], i + 1
    line.globals[param.name] = value
    line.global_args += [param.flags[-1], value]
    return i


def _command_option(token: str, tokens: list[str], i: int, line: CommandLine) -> int:
    """Keep an option of the command (with its value) in the command's part."""
    target = line.args if line.words else line.before
    target.append(token)
    option = line.command.option(token.split("=", 1)[0]) if line.command else None
    if option is not None and option.takes_value and "=" not in token and i < len(tokens):
        target.append(tokens[i])
        return i + 1
    return i
