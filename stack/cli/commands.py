"""stackctl's command table: every command, argument and option, what each means.

One place says what stackctl accepts, for everything that must not wait for typer (and
the pydantic it loads) to load: `--help` pages, shell completion, finding the global
options wherever they stand on the command line (stack.cli.cmdline), and parsing a
well-formed command line to run its command at once (stack.cli.direct). The typer
commands (stack.cli.app), which parse what that leaves to them and report usage errors,
build their parameters from the same entries (stack.cli.params): the flags, metavars,
help texts, kinds and defaults are written once, and unit tests check that typer and
this table read every command line alike.

Pure data: importing it costs nothing beyond the dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PROG = "stackctl"


@dataclass(frozen=True)
class Param:
    """One argument (no flags) or option of a command."""

    name: str
    """The Python parameter of the typer command that receives it."""
    flags: tuple[str, ...] = ()
    """`("-o", "--output")`; empty for a positional argument."""
    metavar: str = ""
    """What the value is called (`WATCHER`, `N`); empty for an option without a value."""
    help: str = ""
    complete: str = ""
    """How a shell completes the value: `watcher`, `host`, `file`, `dir`, or empty."""
    choices: tuple[str, ...] = ()
    """The values allowed, when they are a fixed few (completed too)."""
    many: bool = False
    """An argument that takes several values, or an option that may be repeated."""
    envvar: str = ""
    """An environment variable that gives the value when the option is absent."""
    kind: str = "str"
    """What the value is read as: `str`, `int`, `float`, `path`, or `choice` (one of
    `choices`, checked when parsed). An option without a metavar is a flag."""
    minimum: float | None = None
    """The least value a number may have."""
    default: object = None
    """What the command gets when the parameter is not given."""
    required: bool = False

    @property
    def takes_value(self) -> bool:
        return not self.flags or bool(self.metavar)

    @property
    def term(self) -> str:
        """How the help page names it: `-o, --output FORMAT`, `WATCHER...`."""
        if not self.flags:
            return self.metavar + ("..." if self.many else "")
        flags = ", ".join(self.flags)
        return f"{flags} {self.metavar}" if self.metavar else flags


@dataclass(frozen=True)
class Command:
    """One command (`scale`) or subcommand of a group (`certs issue`)."""

    name: str
    summary: str
    """One line, for the list of commands."""
    params: tuple[Param, ...] = ()
    description: str = ""
    """More paragraphs for its own help page (the summary comes first)."""
    examples: tuple[tuple[str, str], ...] = ()
    """(what it does, the command line)."""
    section: str = ""
    """Where the list of commands shows it."""
    run: str = ""
    """`module:function` that runs it: function(options, **parameters)."""
    negative_numbers: bool = False
    """`-2` is an argument, not an option (`scale webapp -2`)."""

    @property
    def arguments(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.flags)

    @property
    def options(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.flags)

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(f"{self.name} has no parameter {name}")

    def option(self, flag: str) -> Param | None:
        """The option `flag` (`--wait`, `-n`) names, if the command has it."""
        return next((p for p in self.options if flag in p.flags), None)


# -- global options ---------------------------------------------------------------------

OUTPUT_FORMATS = ("text", "wide", "json", "yaml")

CONTROLLER = Param(
    "controller",
    ("--controller",),
    "ADDRESS",
    "The controller: unix:PATH (the local socket of a controller on this host) or "
    "HOST:PORT (with TLS), several comma-separated for a group of controllers. "
    "Default: $STACK_CONTROLLER, else the local controller's socket.",
    envvar="STACK_CONTROLLER",
)
OUTPUT = Param(
    "output",
    ("-o", "--output"),
    "FORMAT",
    "text (the default), wide (text with every column), json or yaml.",
    choices=OUTPUT_FORMATS,
    kind="choice",
    default="text",
)
TLS_DIR = Param(
    "tls_dir",
    ("--tls-dir",),
    "DIR",
    "Talk mutual TLS with the files of this `stackctl certs` directory ($STACK_TLS_DIR).",
    complete="dir",
    envvar="STACK_TLS_DIR",
    kind="path",
)
CERT_NAME = Param(
    "cert_name",
    ("--cert-name",),
    "NAME",
    "Present users/NAME.crt of --tls-dir; default: the admin certificate ($STACK_CERT_NAME).",
    envvar="STACK_CERT_NAME",
)
CA = Param(
    "ca",
    ("--ca",),
    "PATH",
    "The CA certificate (PEM), instead of --tls-dir's ($STACK_CA).",
    complete="file",
    envvar="STACK_CA",
    kind="path",
)
CERT = Param(
    "cert",
    ("--cert",),
    "PATH",
    "Our certificate (PEM), instead of --tls-dir's ($STACK_CERT).",
    complete="file",
    envvar="STACK_CERT",
    kind="path",
)
KEY = Param(
    "key",
    ("--key",),
    "PATH",
    "Our private key (PEM), instead of --tls-dir's ($STACK_KEY).",
    complete="file",
    envvar="STACK_KEY",
    kind="path",
)
GLOBAL_OPTIONS = (CONTROLLER, OUTPUT, TLS_DIR, CERT_NAME, CA, CERT, KEY)
"""Accepted before or after the command: `stackctl status -o json` = `stackctl -o json status`."""

HELP = Param("help", ("-h", "--help"), help="Show this help and exit.")
VERSION = Param(
    "version", ("--version",), help="Print stackctl's version and wire protocol, and exit."
)

# -- parameters several commands share ------------------------------------------------

WATCHER = Param(
    "watcher",
    metavar="WATCHER",
    help="A watcher of the stack (as `stackctl status` lists them).",
    complete="watcher",
    required=True,
)
ONLY_WATCHER = replace(
    WATCHER, help="Only this watcher (default: every one).", default="", required=False
)
WATCHERS = Param(
    "watchers",
    metavar="WATCHER",
    help="The watchers to act on (or --all).",
    complete="watcher",
    many=True,
)
ALL = Param("all_watchers", ("--all",), help="Every watcher of the stack.", default=False)
WAIT = Param(
    "wait",
    ("--wait",),
    help="Wait until it is done, printing each step (a progress bar on a terminal), "
    "then how long it took.",
    default=False,
)
TIMEOUT = Param(
    "timeout",
    ("--timeout",),
    "SECONDS",
    "How long --wait waits before it fails (default 30).",
    kind="float",
    minimum=0,
    default=30.0,
)
HOST_FILTER = Param(
    "host", ("--host",), "HOST", "Only the processes on this host.", complete="host", default=""
)
HOST = Param(
    "host",
    metavar="HOST",
    help="A host id, as `stackctl agents` lists them.",
    complete="host",
    required=True,
)
FILE = Param(
    "file",
    metavar="FILE",
    help="A stack file (TOML), or a Circus INI file or supervisord.conf to convert first.",
    complete="file",
    required=True,
)
FOREIGN_FILE = replace(FILE, help="A Circus INI file or a supervisord.conf (or a stack file).")
FOLLOW = Param(
    "follow", ("-f", "--follow"), help="Keep printing new lines as they come.", default=False
)


def flag(name: str, flags: tuple[str, ...], help: str) -> Param:
    """An option without a value, False unless given."""
    return Param(name, flags, help=help, default=False)


DAYS = Param(
    "days",
    ("--days",),
    "DAYS",
    "How long the certificate is valid (default 365).",
    kind="int",
    minimum=1,
)

# -- the commands -------------------------------------------------------------------------

_FILES = "Stack files"
_WATCHERS = "Watchers"
_READING = "Processes, output and events"
_HOSTS = "Hosts and controllers"
_SETUP = "Set-up"

COMMANDS: tuple[Command, ...] = (
    Command(
        "up",
        "Run a controller, a local agent and FILE in the foreground.",
        (
            FILE,
            Param(
                "data_dir",
                ("--data-dir",),
                "DIR",
                "Where the controller and the agent keep their state and logs (default .stack).",
                complete="dir",
                kind="path",
                default=".stack",
            ),
            Param(
                "log_level",
                ("--log-level",),
                "LEVEL",
                "What the controller and the agent log to their files in DIR (default info).",
                choices=("debug", "info", "warning", "error"),
                kind="choice",
                default="info",
            ),
            flag("verbose", ("-v", "--verbose"), "The same as --log-level debug."),
        ),
        "The one-machine way to run a stack: Ctrl-C stops the agent (its workers "
        "gracefully), then the controller. The daemons' log files are named when it "
        "starts; lines of watchers whose stream class is StdoutStream or "
        "FancyStdoutStream are printed here, as `watcher.wid | line`.",
        (
            ("Serve the demo stack until Ctrl-C", "stackctl up examples/webapp.toml"),
            ("See what the daemons do", "stackctl up circus.ini --log-level debug"),
        ),
        _FILES,
        run="stack.cli.stackfile:up",
    ),
    Command(
        "apply",
        "Make the stack what FILE says, after showing the changes.",
        (
            FILE,
            flag("dry_run", ("--dry-run",), "Show the changes, apply nothing."),
            flag(
                "yes",
                ("-y", "--yes"),
                "Apply without asking, also a plan that removes or replaces.",
            ),
        ),
        "Only watchers whose processes must change are replaced, in batches (see "
        "[update]); a change of numprocesses alone only scales. A plan that removes a "
        "watcher or a socket, or replaces workers, is applied only once confirmed: on a "
        "terminal stackctl asks, without one it refuses unless --yes. What is applied is "
        "exactly the plan shown.",
        (
            ("See what a file would change", "stackctl apply webapp.toml --dry-run"),
            ("Apply it, asking before anything is removed", "stackctl apply webapp.toml"),
            ("Apply it from a script", "stackctl apply webapp.toml --yes"),
        ),
        _FILES,
        run="stack.cli.stackfile:apply",
    ),
    Command(
        "convert",
        "Print the stack file equivalent to a Circus or Supervisor file.",
        (FOREIGN_FILE,),
        "Each thing that was changed or could not be carried gets a comment above it. "
        "Talks to no controller. `apply` and `up` take these files too, as what this "
        "prints for them.",
        (
            ("See what a circus.ini becomes", "stackctl convert circus.ini"),
            ("Keep it as a stack file", "stackctl convert supervisord.conf > stack.toml"),
        ),
        _FILES,
        run="stack.cli.stackfile:convert",
    ),
    Command(
        "export",
        "Print the whole stack as a stack file (secrets masked).",
        (
            flag(
                "show_secrets",
                ("--show-secrets",),
                "Print env values whose names look secret in full (admins only), "
                "e.g. to apply the output elsewhere.",
            ),
        ),
        section=_FILES,
        run="stack.cli.stackfile:export",
    ),
    Command(
        "status",
        "Show each watcher and its processes: state, restarts, why.",
        (
            ONLY_WATCHER,
            HOST_FILTER,
            flag("summary", ("--summary",), "One line per watcher, without its processes."),
        ),
        "Each watcher's line says how many of its processes run, its state (active, "
        "stopped, flapping, fatal) and a rollout in progress; its processes follow. A "
        "watcher of many processes lists those that have something to say and counts the "
        "others. Long messages are cut to the width of the terminal (80 columns when not "
        "a terminal): `-o wide` shows every column and whole messages, `-o json` and "
        "`-o yaml` everything.",
        (
            ("Every watcher and its processes", "stackctl status"),
            ("One line per watcher", "stackctl status --summary"),
            ("Every column of one watcher", "stackctl status webapp -o wide"),
        ),
        _READING,
        run="stack.cli.status:status",
    ),
    Command(
        "top",
        "Watch watchers, processes and events live (every second).",
        (
            Param(
                "interval",
                ("--interval",),
                "SECONDS",
                "Seconds between two refreshes from the controller (default 1).",
                kind="float",
                minimum=0.1,
                default=1.0,
            ),
        ),
        "A full-screen view: each watcher with running/desired, state, CPU and memory; the "
        "processes of the selected watcher on each host; the latest events. Keys: up/down "
        "(or j/k) select a watcher, / filters the watchers by name (enter applies it, esc "
        "clears it), q or Ctrl-C quits; the terminal is given back as it was. When stdin "
        "or stdout is not a terminal it prints one frame as plain text and exits.",
        (
            ("Watch the stack", "stackctl top"),
            ("One frame, e.g. into a file", "stackctl top > snapshot.txt"),
        ),
        _READING,
        run="stack.cli.top:top",
    ),
    Command(
        "stats",
        "Show cpu, memory, open files and children of each process.",
        (ONLY_WATCHER, HOST_FILTER),
        section=_READING,
        run="stack.cli.status:stats",
    ),
    Command(
        "logs",
        "Print a watcher's output; -f keeps following it.",
        (
            WATCHER,
            FOLLOW,
            Param(
                "lines",
                ("-n", "--lines"),
                "N",
                "Lines of the tail printed first (default 20).",
                kind="int",
                minimum=0,
                default=20,
            ),
            Param(
                "stream",
                ("--stream",),
                "STREAM",
                "Only stdout (out) or stderr (err).",
                choices=("out", "err"),
                kind="choice",
            ),
            Param(
                "host",
                ("--host",),
                "HOST",
                "Only the lines of this host.",
                complete="host",
                default="",
            ),
            flag(
                "raw",
                ("--raw",),
                "Write the output as the workers wrote it, escape sequences included "
                "(by default control characters are shown escaped, e.g. \\x1b).",
            ),
        ),
        "A follow goes on across a controller restart or a failover, without printing a "
        "line twice; when no controller takes it back within 10 s it fails. Ctrl-C ends it.",
        (
            ("The last 20 lines of every worker", "stackctl logs webapp"),
            (
                "Follow the errors, after the last 100 lines",
                "stackctl logs webapp -f -n 100 --stream err",
            ),
            ("Output of one host, as JSON lines", "stackctl logs webapp -f --host web-1 -o json"),
        ),
        _READING,
        run="stack.cli.logs:logs",
    ),
    Command(
        "events",
        "Print events: spawns, exits, flapping...; -f keeps following.",
        (
            FOLLOW,
            Param(
                "watcher",
                ("--watcher",),
                "WATCHER",
                "Only the events of this watcher.",
                complete="watcher",
                default="",
            ),
            Param(
                "lines",
                ("-n", "--lines"),
                "N",
                "The last N events first (default 20; 0: every one kept).",
                kind="int",
                minimum=0,
                default=20,
            ),
        ),
        "A follow goes on across a controller restart or a failover; when no controller "
        "takes it back within 10 s it fails. Ctrl-C ends it.",
        (("Follow what happens to webapp", "stackctl events -f --watcher webapp"),),
        _READING,
        run="stack.cli.events:events",
    ),
    Command(
        "scale",
        "Set a watcher's number of processes (N) or change it (+N, -N).",
        (
            WATCHER,
            Param(
                "count",
                metavar="N|+N|-N",
                help="The new number of processes, or how many more (+N) or fewer (-N).",
                required=True,
            ),
            replace(
                WAIT,
                help="Wait until exactly that many processes run, printing each "
                "step (a progress bar on a terminal), then how long it took.",
            ),
            TIMEOUT,
        ),
        "Only the count changes: no running process is replaced.",
        (
            ("Run 8 workers and wait until they all run", "stackctl scale webapp 8 --wait"),
            ("Two more", "stackctl scale webapp +2"),
            ("One fewer", "stackctl scale webapp -1"),
        ),
        _WATCHERS,
        run="stack.cli.watcher:scale",
        negative_numbers=True,
    ),
    Command(
        "start",
        "Start watchers that were stopped; clears flapping and fatal.",
        (
            WATCHERS,
            ALL,
            replace(
                WAIT,
                help="Wait until every process runs, printing each step, then how long it took.",
            ),
            TIMEOUT,
        ),
        section=_WATCHERS,
        run="stack.cli.watcher:start",
    ),
    Command(
        "stop",
        "Stop watchers' processes gracefully; the watchers stay defined.",
        (
            WATCHERS,
            ALL,
            replace(
                WAIT, help="Wait until no process runs, printing each step, then how long it took."
            ),
            TIMEOUT,
        ),
        section=_WATCHERS,
        run="stack.cli.watcher:stop",
    ),
    Command(
        "restart",
        "Replace the watchers' processes: all at once, or --rolling.",
        (
            WATCHERS,
            ALL,
            replace(
                WAIT,
                help="Wait until every process is replaced (with --rolling, "
                "until the rollout is done), printing each step, then how long it took.",
            ),
            TIMEOUT,
            flag(
                "rolling",
                ("--rolling",),
                "In batches of [update] max_parallel, each healthy before the next.",
            ),
        ),
        "Without --rolling every process is stopped and started again at once. With it, "
        "the controller replaces them in batches and stackctl returns as soon as the "
        "rollout started; `status` shows its progress, --wait follows it to the end.",
        (
            (
                "Replace webapp's workers in batches and follow the rollout",
                "stackctl restart webapp --rolling --wait --timeout 300",
            ),
        ),
        _WATCHERS,
        run="stack.cli.watcher:restart",
    ),
    Command(
        "reload",
        "Replace processes, each new one up before its old one stops.",
        (WATCHERS, ALL),
        section=_WATCHERS,
        run="stack.cli.watcher:reload",
    ),
    Command(
        "reset",
        "Clear flapping and fatal state so that the watchers try again.",
        (WATCHERS, ALL),
        section=_WATCHERS,
        run="stack.cli.watcher:reset",
    ),
    Command(
        "signal",
        "Send a signal to a watcher's processes.",
        (
            WATCHER,
            Param("sig", metavar="SIGNAL", help="A name (HUP, SIGHUP) or a number.", required=True),
            Param(
                "wid",
                ("--wid",),
                "N",
                "Only the worker with this id.",
                kind="int",
                minimum=0,
                default=0,
            ),
            flag("children", ("--children",), "Their children too."),
        ),
        examples=(("Ask webapp's workers to reopen their logs", "stackctl signal webapp USR1"),),
        section=_WATCHERS,
        run="stack.cli.watcher:send_signal",
    ),
    Command(
        "rm",
        "Stop a watcher's processes and remove it from the stack.",
        (WATCHER,),
        section=_WATCHERS,
        run="stack.cli.watcher:remove",
    ),
    Command(
        "rebalance",
        "Spread a watcher's processes evenly over its agents again.",
        (WATCHER,),
        "A host that joins takes nothing away on its own; this moves processes to it, each "
        "replacement running before its original stops.",
        section=_WATCHERS,
        run="stack.cli.watcher:rebalance",
    ),
    Command(
        "get",
        "Print a watcher's config (TOML), then its processes' messages.",
        (WATCHER,),
        "After the config, as comments: each process's host, worker id, state and whole "
        "message (status cuts long ones). With -o json or -o yaml: the watcher's spec, every "
        "option with its value, and its processes.",
        section=_WATCHERS,
        run="stack.cli.watcher:get",
    ),
    Command(
        "agents",
        "List the agents: address, labels, state, processes, version.",
        section=_HOSTS,
        run="stack.cli.agents:agents",
    ),
    Command(
        "drain",
        "Move every process away from HOST, replacements first.",
        (
            HOST,
            replace(
                WAIT,
                help="Wait until the host runs nothing, printing each step, then how long it took.",
            ),
            replace(
                TIMEOUT, help="How long --wait waits before it fails (default 60).", default=60.0
            ),
        ),
        "Each replacement runs before its original stops. The host takes no new processes "
        "until `stackctl undrain HOST`.",
        (
            ("Empty web-1 before its maintenance, and wait for it", "stackctl drain web-1 --wait"),
            ("Let it take processes again afterwards", "stackctl undrain web-1"),
        ),
        _HOSTS,
        run="stack.cli.agents:drain",
    ),
    Command(
        "undrain",
        "Let HOST take processes again.",
        (HOST,),
        "Nothing moves back on its own: `stackctl rebalance WATCHER` spreads a watcher "
        "over its agents again.",
        section=_HOSTS,
        run="stack.cli.agents:undrain",
    ),
    Command(
        "controllers",
        "List the controllers, which one leads, and the store's health.",
        section=_HOSTS,
        run="stack.cli.controllers:controllers",
    ),
    Command(
        "certs init",
        "Create a CA and the controller's certificate in DIR.",
        (
            Param(
                "directory",
                ("--dir",),
                "DIR",
                "The TLS directory to create (what --tls-dir reads).",
                complete="dir",
                kind="path",
                required=True,
            ),
            Param(
                "controller_names",
                ("--controller-name",),
                "NAME",
                "A DNS name or IP address by which agents and stackctl reach the "
                "controller (repeat it for more; localhost and 127.0.0.1 are always in).",
                many=True,
                required=True,
            ),
            DAYS,
        ),
        examples=(
            (
                "A CA for a controller known as ctl.lan",
                "stackctl certs init --dir tls --controller-name ctl.lan",
            ),
        ),
        section=_SETUP,
        run="stack.cli.certs:init",
    ),
    Command(
        "certs issue",
        "Issue an agent, admin, viewer or controller certificate.",
        (
            Param(
                "directory",
                ("--dir",),
                "DIR",
                "The TLS directory `certs init` created.",
                complete="dir",
                kind="path",
                required=True,
            ),
            Param(
                "role",
                ("--role",),
                "ROLE",
                "What the holder may do: agent (one host), admin, viewer (read only) or "
                "controller (a renewal).",
                choices=("agent", "admin", "viewer", "controller"),
                required=True,
            ),
            Param(
                "name",
                ("--name",),
                "NAME",
                "The host id (agent), the person or script (admin, viewer), or controller.",
                required=True,
            ),
            DAYS,
            flag("force", ("--force",), "Replace an existing certificate (rotation)."),
            Param(
                "controller_names",
                ("--controller-name",),
                "NAME",
                "With --role controller: a DNS name or IP address of the controller "
                "(repeat it for more).",
                many=True,
            ),
        ),
        examples=(
            (
                "A certificate for the agent of host web-1",
                "stackctl certs issue --dir tls --role agent --name web-1",
            ),
            (
                "A read-only one for a dashboard",
                "stackctl certs issue --dir tls --role viewer --name dashboard",
            ),
        ),
        section=_SETUP,
        run="stack.cli.certs:issue",
    ),
    Command(
        "completion",
        "Print the shell completion script for bash, zsh or fish.",
        (
            Param(
                "shell",
                metavar="SHELL",
                help="bash, zsh or fish.",
                choices=("bash", "zsh", "fish"),
                required=True,
            ),
        ),
        "Completes commands, options, and the names of watchers and hosts, which it asks "
        "the controller for (silently nothing when none answers within half a second).",
        (
            ("Complete in this bash", "source <(stackctl completion bash)"),
            (
                "For every bash session (as root)",
                "stackctl completion bash > /etc/bash_completion.d/stackctl",
            ),
            (
                "zsh: a file in a directory of $fpath",
                "stackctl completion zsh > ~/.zfunc/_stackctl",
            ),
            ("fish", "stackctl completion fish > ~/.config/fish/completions/stackctl.fish"),
        ),
        _SETUP,
        run="stack.cli.completion:completion",
    ),
)

GROUPS = {"certs": "Create a CA and certificates for mutual TLS (local files)."}
"""Commands that only hold subcommands, and what they are for."""

SECTIONS = (_FILES, _WATCHERS, _READING, _HOSTS, _SETUP)

BY_NAME = {command.name: command for command in COMMANDS}


def top_level_names() -> list[str]:
    """What may follow `stackctl`: commands and groups, in table order."""
    names: list[str] = []
    for command in COMMANDS:
        first = command.name.split()[0]
        if first not in names:
            names.append(first)
    return names


def subcommands(group: str) -> list[Command]:
    return [c for c in COMMANDS if c.name.startswith(group + " ")]


def global_option(flag: str) -> Param | None:
    """The global option `flag` names (`-o`, `--controller`), if it is one."""
    return next((p for p in GLOBAL_OPTIONS if flag in p.flags), None)
