"""Shell completion for bash, zsh and fish: `stackctl completion SHELL` prints a script.

The script hands the words typed so far to `stackctl __complete SHELL CURRENT ...`,
which answers from the command table: commands (and a group's subcommands), options
(global ones and the command's), fixed choices (`-o yaml`, `--stream err`), and the names
of watchers and hosts, asked of the controller the command line names (its global
options and environment included) with a short deadline. When no controller answers,
those are silently left out. A value that is a file or a directory is left to the shell
(`:file` or `:dir` as the answer's first line).

The answer is one candidate per line; for zsh and fish `value<TAB>what it is`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from stack.cli.cmdline import CommandLine, split
from stack.cli.commands import (
    BY_NAME,
    GLOBAL_OPTIONS,
    GROUPS,
    HELP,
    PROG,
    VERSION,
    Command,
    Param,
    global_option,
    subcommands,
    top_level_names,
)
from stack.cli.errors import UsageError

QUERY_TIMEOUT = 0.5
"""Seconds the controller has to name its watchers or hosts before completion goes without."""
SHELLS = ("bash", "zsh", "fish")


@dataclass
class Completion:
    """What may come next."""

    values: list[tuple[str, str]] = field(default_factory=list)
    """(candidate, what it is), candidates starting with what was typed."""
    files: str = ""
    """`file` or `dir`: let the shell complete paths instead."""

    def lines(self, shell: str, strip: str = "") -> list[str]:
        """The answer to print; `strip`: the part of the word bash does not see as the
        current one (before a `=` or `:`), taken off each candidate."""
        if self.files:
            return [f":{self.files}"]
        out = []
        for value, about in self.values:
            if strip and value.startswith(strip):
                value = value[len(strip) :]
            out.append(f"{value}\t{about}" if shell != "bash" and about else value)
        return out


Query = Callable[[str, CommandLine], list[tuple[str, str]]]
"""(`watcher` or `host`, the command line) -> the names the controller knows."""


def _brief(text: str) -> str:
    """The first sentence of a help text, short enough for a completion menu."""
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 60 else sentence[:59] + "…"


def _option_rows(params: tuple[Param, ...]) -> list[tuple[str, str]]:
    return [(flag, _brief(p.help)) for p in params for flag in p.flags if flag.startswith("--")]


def _value_param(previous: str, line: CommandLine) -> Param | None:
    """The option whose value is being typed (`previous` is its flag), if any."""
    param = global_option(previous)
    if param is None and line.command is not None:
        param = line.command.option(previous)
    return param if param is not None and param.flags and param.takes_value else None


def _argument_index(command: Command, args: list[str]) -> int:
    """How many of the command's arguments were given already."""
    count, i = 0, 0
    while i < len(args):
        token = args[i]
        i += 1
        if token.startswith("-") and len(token) > 1:
            option = command.option(token.split("=", 1)[0])
            if option is not None and option.takes_value and "=" not in token:
                i += 1
            continue
        count += 1
    return count


def _values_of(param: Param, line: CommandLine, query: Query) -> Completion:
    if param.complete in ("file", "dir"):
        return Completion(files=param.complete)
    if param.choices:
        return Completion([(choice, "") for choice in param.choices])
    if param.complete in ("watcher", "host"):
        return Completion(query(param.complete, line))
    return Completion()


def complete(before: list[str], current: str, query: Query) -> Completion:
    """What may replace `current`, the word under the cursor, after the words `before`
    (the program's name first)."""
    line = split(before[1:])
    found = _complete(before, current, line, query)
    found.values = [(v, about) for v, about in found.values if v.startswith(current)]
    return found


def _complete(before: list[str], current: str, line: CommandLine, query: Query) -> Completion:
    previous = before[-1] if len(before) > 1 else ""
    param = _value_param(previous, line) if previous.startswith("-") else None
    if param is not None:
        return _values_of(param, line, query)
    if current.startswith("--") and "=" in current:
        flag = current.split("=", 1)[0]
        param = _value_param(flag, line)
        if param is None:
            return Completion()
        found = _values_of(param, line, query)
        found.values = [(f"{flag}={value}", about) for value, about in found.values]
        return found
    if current.startswith("-"):
        rows = _option_rows(GLOBAL_OPTIONS) + _option_rows((HELP,))
        if line.command is not None:
            rows = _option_rows(line.command.options) + rows
        elif not line.words:
            rows += _option_rows((VERSION,))
        return Completion(rows)
    if not line.words:
        return Completion([(name, _summary(name)) for name in top_level_names()])
    if line.command is None:
        group = line.words[0]
        if group in GROUPS and len(line.words) == 1:
            return Completion([(c.name.split()[1], c.summary) for c in subcommands(group)])
        return Completion()
    arguments = line.command.arguments
    if not arguments:
        return Completion()
    index = _argument_index(line.command, line.args)
    if index >= len(arguments) and not arguments[-1].many:
        return Completion()
    return _values_of(arguments[min(index, len(arguments) - 1)], line, query)


def _summary(name: str) -> str:
    if name in GROUPS:
        return GROUPS[name]
    return BY_NAME[name].summary if name in BY_NAME else ""


def ask_controller(kind: str, line: CommandLine) -> list[tuple[str, str]]:
    """The watchers (`watcher`) or hosts (`host`) of the controller `line` names, with a
    word about each; nothing when it does not answer within QUERY_TIMEOUT."""
    from stack.cli.direct import global_options

    options = global_options(line.globals)
    if options is None:
        return []
    try:
        from dataclasses import replace

        client = replace(options, timeout=QUERY_TIMEOUT).connect()
        try:
            if kind == "watcher":
                watchers = client.status(timeout=QUERY_TIMEOUT).watchers
                return [(w.name, f"{w.running}/{w.numprocesses} running") for w in watchers]
            return [(a.host_id, a.state) for a in client.agents().agents]
        finally:
            client.close()
    except Exception:  # completion must never print an error into the command line
        return []


def respond(args: list[str]) -> list[str]:
    """`stackctl __complete SHELL CURRENT WORDS...` (bash: `CURRENT LINE`, the line up to
    the cursor): the lines to print."""
    if len(args) < 2 or args[0] not in SHELLS:
        return []
    shell, current = args[0], args[1]
    if shell != "bash":
        return complete(list(args[2:]) or [PROG], current, ask_controller).lines(shell)
    # bash splits words at `=` and `:` too: take the line apart as a shell would, and
    # give bash back only the part of each candidate after what it calls the word.
    line = args[2] if len(args) > 2 else ""
    words = _split_line(line)
    typed = words.pop() if words and not line.endswith((" ", "\t")) else ""
    strip = typed[: len(typed) - len(current)] if typed.endswith(current) else ""
    return complete(words or [PROG], typed, ask_controller).lines(shell, strip)


def _split_line(text: str) -> list[str]:
    """The words of a command line typed so far, an unfinished quote included."""
    for attempt in (text, text + '"', text + "'"):
        try:
            return shlex.split(attempt)
        except ValueError:
            continue
    return text.split()


# -- the scripts ---------------------------------------------------------------------

BASH = """\
# bash completion for stackctl: source <(stackctl completion bash)
_stackctl_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" reply IFS=$'\\n'
    reply=$("${COMP_WORDS[0]}" __complete bash "$cur" "${COMP_LINE:0:COMP_POINT}" \\
        2>/dev/null) || return 0
    case "$reply" in
        :file) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
        :dir) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null ;;
        *) COMPREPLY=($reply) ;;
    esac
}
complete -F _stackctl_complete stackctl
"""

ZSH = """\
#compdef stackctl
# zsh completion for stackctl: a file _stackctl in a directory of $fpath, or
# source <(stackctl completion zsh) after compinit
_stackctl() {
    local reply
    local -a lines described
    reply=$("${words[1]}" __complete zsh "${words[CURRENT]}" "${(@)words[1,CURRENT-1]}" \\
        2>/dev/null) || return 1
    lines=("${(@f)reply}")
    case "${lines[1]}" in
        :file) _files; return ;;
        :dir) _files -/; return ;;
    esac
    local line value
    for line in "${lines[@]}"; do
        [[ -n "$line" ]] || continue
        value="${${line%%$'\\t'*}//:/\\\\:}"
        if [[ "$line" == *$'\\t'* ]]; then
            described+=("$value:${line#*$'\\t'}")
        else
            described+=("$value")
        fi
    done
    _describe -t values stackctl described
}
if [[ "${funcstack[1]}" = "_stackctl" ]]; then
    _stackctl "$@"
else
    compdef _stackctl stackctl
fi
"""

FISH = """\
# fish completion for stackctl: stackctl completion fish > ~/.config/fish/completions/stackctl.fish
function __stackctl_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    set -l reply ($tokens[1] __complete fish "$current" $tokens 2>/dev/null)
    or return
    switch "$reply[1]"
        case :file
            __fish_complete_path "$current"
        case :dir
            __fish_complete_directories "$current"
        case '*'
            printf '%s\\n' $reply
    end
end
complete -c stackctl -f -a '(__stackctl_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def completion(options: object, shell: str) -> None:
    """`stackctl completion SHELL`: print the script."""
    if shell not in SCRIPTS:
        raise UsageError(f"{shell!r} is not one of bash, zsh, fish", param="SHELL")
    sys.stdout.write(SCRIPTS[shell])
    sys.stdout.flush()
