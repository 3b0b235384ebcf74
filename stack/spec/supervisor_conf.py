"""Reading a supervisord.conf into a stack, the way supervisord reads it.

A `[program:x]` becomes the watcher x. supervisord names each of its `numprocs`
processes with `process_name` and numbers them from `numprocs_start`; Stack numbers a
watcher's workers 1, 2, ... (`$(circus.wid)`, stable across restarts) and `stackctl`
names a worker by watcher and number. So the processes of a program are the workers of
one watcher, and their names only say which worker is which, unless their command,
environment or directory differ by `%(process_num)`: then the number is written
`$(circus.wid)` when it is the worker id as it stands (numbering from 1, no padding),
and otherwise each process becomes a watcher of its own, named by its process_name,
so that each runs exactly what supervisord ran.

Supervisor's defaults that differ from Stack's are written out (`autorestart =
"unexpected"`, `startsecs = 1`, `graceful_timeout = 10`, `max_retry = 4`, `copy_env =
true`); `priority` is turned around (supervisord starts the lowest first, Stack the
highest); `[fcgi-program:x]` gets the socket x as its stdin. What has no equivalent
(event listeners, the XML-RPC interface, the daemon's own settings) is reported in a
Note, once per item, with what to use instead. See stack.spec.foreign.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stack.spec.foreign import SUPERVISOR, Draft, Reading
from stack.spec.ini import SUPERVISOR as DIALECT
from stack.spec.ini import Option, Section
from stack.spec.model import NAME_RULE, valid_name
from stack.spec.suggest import did_you_mean

PRIORITY_DEFAULT = 999
"""supervisord's default priority, which becomes Stack's default 0."""
STACKCTL_ENV = "stackctl's environment (supervisord used its own)"

_DAEMON = {
    "logfile": "stack-agent and stack-controller keep their own logs",
    "logfile_maxbytes": "", "logfile_backups": "", "loglevel": "",
    "pidfile": "stack-agent and stack-controller are run by systemd or stackctl up",
    "nodaemon": "", "silent": "", "identifier": "", "nocleanup": "", "strip_ansi": "",
    "childlogdir": "output is kept under the agent's data dir unless a watcher names a file",
    "minfds": "give the watchers that need them rlimit_nofile",
    "minprocs": "give the watchers that need them rlimit_nproc",
}  # fmt: skip
"""[supervisord] options of the daemon itself: ignored, with what does their job."""
_SUPERVISORD_CARRIED = ("environment", "user", "umask", "directory")
_IGNORED_SECTIONS = {
    "unix_http_server": "stackctl talks to the controller over gRPC (--controller)",
    "inet_http_server": "stackctl talks to the controller over gRPC (--controller)",
    "supervisorctl": "stackctl talks to the controller over gRPC (--controller)",
    "rpcinterface": "not carried: Stack's interface is the controller's gRPC API, which "
    "stackctl uses",
    "ctlplugin": "not carried: stackctl has no plugins",
    "eventlistener": "not carried: Stack sends no events on a program's stdin; stackctl "
    "events -f -o json streams them to any program (which a watcher can run)",
}

_SECTIONS = (
    "supervisord", "supervisorctl", "unix_http_server", "inet_http_server", "include",
)  # fmt: skip
_SECTION_KINDS = (
    "program", "fcgi-program", "group", "eventlistener", "rpcinterface", "ctlplugin",
)  # fmt: skip
_PROGRAM_OPTIONS = (
    "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart",
    "autorestart", "startsecs", "startretries", "exitcodes", "stopsignal", "stopwaitsecs",
    "stopasgroup", "killasgroup", "user", "redirect_stderr", "directory", "umask",
    "environment", "serverurl", *(
        f"{stream}_{key}" for stream in ("stdout", "stderr") for key in (
            "logfile", "logfile_maxbytes", "logfile_backups", "capture_maxbytes",
            "events_enabled", "syslog",
        )
    ),
)  # fmt: skip
_FCGI_OPTIONS = ("socket", "socket_backlog", "socket_owner", "socket_mode")
_PER_PROCESS = ("command", "environment", "directory")
"""What supervisord expands for each process: when these differ, so do the processes."""
_LOGFILES = ("stdout_logfile", "stderr_logfile")
_WRITTEN_APART = (
    "command", "environment", "directory", "process_name", "numprocs", "numprocs_start",
    "exitcodes", *_LOGFILES, *_FCGI_OPTIONS,
)  # fmt: skip
"""Options written by their own step rather than by _SupervisorReader.option."""
_STREAMS = {"stdout": "stdout_stream", "stderr": "stderr_stream"}
_SUFFIXES = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}
_NO_SYSLOG = "not carried: Stack does not write to syslog; stackctl logs -f follows the output"
_MARK = 987_654_321
"""A process number no file uses, to see where %(process_num) lands in a command."""
_ENV_NAME = re.compile(r"%\(ENV_(\w+)\)")


def read_supervisor(text: str, filename: str, environ: Mapping[str, str], node: str) -> Reading:
    """A supervisord.conf (and what it includes) as a Reading; SpecError on the first
    problem. `node` stands for supervisord's host name (%(host_node_name)s)."""
    return _SupervisorReader(filename, environ, node).read(text)


@dataclass
class _Process:
    """What supervisord expands for one process of a program."""

    number: int
    name: str
    command: str
    environment: dict[str, str]
    directory: str | None
    logfiles: dict[str, str | None]


class _SupervisorReader:
    def __init__(self, filename: str, environ: Mapping[str, str], node: str) -> None:
        self.filename = filename
        self.environ = dict(environ)
        self.node = node
        self.draft = Draft(filename, SUPERVISOR, DIALECT)
        self.env_expansions = {f"ENV_{key}": value for key, value in self.environ.items()}
        self.file_env: dict[str, str] = {}
        """Variables the file sets ([supervisord] environment), which ENV_X also sees."""
        self.file_env_option: Option | None = None
        self.defaults: dict[str, tuple[Option, str, Any]] = {}
        """Program options that [supervisord] gives every program (user, umask, directory)."""

    # -- files ----------------------------------------------------------------------

    def read(self, text: str) -> Reading:
        self.draft.read_ini(text, self.filename)
        self.include()
        supervisord = self.draft.sections.get("supervisord")
        if supervisord is not None:
            self.supervisord(supervisord)
        in_groups = self.groups()
        made: dict[str, list[str]] = {}
        for name, section in self.draft.sections.items():
            kind, _, rest = name.partition(":")
            if kind in ("program", "fcgi-program") and rest:
                group, _ = in_groups.get(rest, (rest, None))
                made[rest] = self.program(section, rest, group)
            elif kind in _IGNORED_SECTIONS:
                self.draft.note(_IGNORED_SECTIONS[kind], origin=section.origin, label=f"[{name}]")
            elif name not in ("supervisord", "include") and kind != "group":
                self.draft.unknown_section(section, "Supervisor", _SECTIONS, _SECTION_KINDS)
        self.note_groups(in_groups, made)
        if self.draft.data["watchers"]:
            self.draft.note(
                "supervisord's programs inherit its environment: every watcher has "
                "copy_env = true (the agent's environment)"
            )
        return self.draft.finish()

    def include(self) -> None:
        """supervisord reads the files that the main file's [include] names."""
        section = self.draft.sections.get("include")
        if section is None:
            return
        option = section.get("files")
        label = "[include] files"
        if option is None:
            self.draft.fail(section.origin, "[include]", "files: required")
        value = self.expand(option, label, {"host_node_name": self.node})
        self.draft.include(option, label, value.split())

    # -- [supervisord], [group:x] -----------------------------------------------------

    def supervisord(self, section: Section) -> None:
        for key, option in section.options.items():
            label = f"[supervisord] {key}"
            if key == "environment":
                value = self.expand(option, label, {"host_node_name": self.node})
                self.file_env = self.pairs(option, label, value)
                self.file_env_option = option
                self.env_expansions.update({f"ENV_{k}": v for k, v in self.file_env.items()})
                self.draft.note("every watcher's env", origin=option.origin, label=label)
            elif key in ("user", "umask", "directory"):
                value = self.expand(option, label, {})
                parsed: Any = self.draft.octal(option, label, value) if key == "umask" else value
                self.defaults[key] = (option, label, parsed)
                what = {"user": "uid", "umask": "umask", "directory": "working_dir"}[key]
                self.draft.note(
                    f"the {what} of every watcher whose program does not set its {key} "
                    "(its programs inherited supervisord's)",
                    origin=option.origin,
                    label=label,
                )
            elif key in _DAEMON:
                advice = _DAEMON[key]
                text = "a setting of supervisord itself, ignored" + (
                    f": {advice}" if advice else ""
                )
                self.draft.note(text, origin=option.origin, label=label)
            else:
                known = [*_DAEMON, *_SUPERVISORD_CARRIED]
                self.draft.fail(option.origin, label, f"unknown option{did_you_mean(key, known)}")

    def groups(self) -> dict[str, tuple[str, Section]]:
        """program -> (its group, the group's section), and a note per group."""
        found: dict[str, tuple[str, Section]] = {}
        for name, section in self.draft.sections.items():
            if not name.startswith("group:"):
                continue
            group = self.process_name(name.split(":", 1)[1], section, f"[{name}]")
            label = f"[{name}]"
            option = section.get("programs")
            if option is None:
                self.draft.fail(section.origin, label, "programs: required")
            programs = [word.strip() for word in self.expand(option, label, {}).split(",")]
            for program in programs:
                where = f"{label} programs"
                in_program = f"program:{program}" in self.draft.sections
                in_fcgi = f"fcgi-program:{program}" in self.draft.sections
                if not (in_program or in_fcgi):
                    self.draft.fail(option.origin, where, f"names unknown program {program!r}")
                if in_program and in_fcgi:
                    self.draft.fail(
                        option.origin,
                        where,
                        f"{program!r} is ambiguous (both a program and an fcgi-program)",
                    )
                if program in found:
                    self.draft.fail(
                        option.origin, where, f"{program!r} is also in [group:{found[program][0]}]"
                    )
                found[program] = (group, section)
            for key, item in section.options.items():
                if key == "priority" and item.value.strip() != str(PRIORITY_DEFAULT):
                    self.draft.note(
                        "not carried: each watcher keeps its program's priority",
                        origin=item.origin,
                        label=f"{label} priority",
                    )
                elif key not in ("programs", "priority"):
                    self.draft.fail(
                        item.origin,
                        f"{label} {key}",
                        f"unknown option{did_you_mean(key, ('programs', 'priority'))}",
                    )
        return found

    def note_groups(
        self, in_groups: dict[str, tuple[str, Section]], made: dict[str, list[str]]
    ) -> None:
        """One note per group, naming the watchers its programs became."""
        members: dict[str, tuple[Section, list[str]]] = {}
        for program, (group, section) in in_groups.items():
            members.setdefault(group, (section, []))[1].extend(made.get(program, []))
        for section, watchers in members.values():
            self.draft.note(
                f"Stack has no groups: its programs are the watchers {', '.join(watchers)}; "
                f"stackctl start, stop and restart take them together ({' '.join(watchers)})",
                origin=section.origin,
                label=f"[{section.name}]",
            )

    # -- [program:x], [fcgi-program:x] --------------------------------------------------

    def program(self, section: Section, program: str, group: str) -> list[str]:
        """Write the watchers of a program; returns their names."""
        label = f"[{section.name}]"
        program = self.process_name(program, section, label)
        fcgi = section.name.startswith("fcgi-program:")
        known = (*_PROGRAM_OPTIONS, *_FCGI_OPTIONS) if fcgi else _PROGRAM_OPTIONS
        for key, option in section.options.items():
            if key not in known:
                self.draft.fail(
                    option.origin, f"{label} {key}", f"unknown option{did_you_mean(key, known)}"
                )
        common = {"program_name": program, "group_name": group, "host_node_name": self.node}

        def get(key: str) -> tuple[Option, str] | None:
            option = section.get(key)
            return (
                None if option is None else (option, self.expand(option, f"{label} {key}", common))
            )

        if section.get("command") is None:
            self.draft.fail(section.origin, label, "command: required")
        count = self.count(get("numprocs"), label, "numprocs", 1)
        start = self.count(get("numprocs_start"), label, "numprocs_start", 0)
        name_option = section.get("process_name")
        if count > 1 and (name_option is None or "%(process_num)" not in name_option.value):
            where = name_option.origin if name_option else section.origin
            self.draft.fail(
                where, f"{label} process_name", "must have %(process_num) when numprocs > 1"
            )
        processes = [
            self.process(section, label, common, number, count)
            for number in range(start, start + count)
        ] or [self.process(section, label, common, start, count)]
        first = processes[0]
        same = all(
            (p.command, p.environment, p.directory)
            == (first.command, first.environment, first.directory)
            for p in processes
        )
        wid_cmd = None if same else self.wid_command(section, label, common, processes, start)
        if same or wid_cmd is not None:
            watcher = self.watcher(section, program, first, count, label, common, fcgi)
            if wid_cmd is not None:
                self.draft.put(
                    ("watchers", program, "cmd"),
                    wid_cmd,
                    section.options["command"].origin,
                    f"{label} command",
                )
                self.draft.note(
                    "%(process_num) is the worker id here: $(circus.wid)",
                    origin=section.options["command"].origin,
                    label=f"{label} command",
                    anchor=("watchers", program, "cmd"),
                )
            self.note_names(section, label, program, processes, start, watcher)
            self.shared_logfiles(section, label, program, processes)
            return [watcher]
        differing = self.differing(processes)
        if start != 1:
            why = f"they count from {start} where a worker id ($(circus.wid)) counts from 1"
        elif differing != "command":
            why = "a worker id can only be written in a command, as $(circus.wid)"
        else:
            why = "it is written in a way a worker id ($(circus.wid)) is not"
        self.draft.note(
            f"one watcher per process ({', '.join(p.name for p in processes)}), since "
            f"%(process_num) makes their {differing} differ and {why}",
            origin=section.origin,
            label=label,
        )
        return [
            self.watcher(section, process.name, process, 1, label, common, fcgi)
            for process in processes
        ]

    def process(
        self, section: Section, label: str, common: dict[str, Any], number: int, count: int
    ) -> _Process:
        """The fields supervisord expands for process `number`, in its order: environment
        first (its variables are ENV_ names for the rest), then directory, log files,
        command and the process name."""
        expansions = {**common, "process_num": number, "numprocs": count}
        env_option = section.get("environment")
        environment: dict[str, str] = {}
        if env_option is not None:
            where = f"{label} environment"
            environment = self.pairs(env_option, where, self.expand(env_option, where, expansions))
        expansions.update({f"ENV_{key}": value for key, value in environment.items()})

        def field(key: str) -> str | None:
            option = section.get(key)
            return None if option is None else self.expand(option, f"{label} {key}", expansions)

        logfiles = {key: field(key) for key in _LOGFILES}
        name_option = section.get("process_name")
        name = common["program_name"] if name_option is None else field("process_name")
        assert name is not None
        command = field("command")
        assert command is not None
        return _Process(number, name, command, environment, field("directory"), logfiles)

    def wid_command(
        self,
        section: Section,
        label: str,
        common: dict[str, Any],
        processes: list[_Process],
        start: int,
    ) -> str | None:
        """The command with `$(circus.wid)` where %(process_num) is, when only the command
        differs and the numbers are the worker ids as they stand; else None."""
        first = processes[0]
        if start != 1 or any(
            (p.environment, p.directory) != (first.environment, first.directory) for p in processes
        ):
            return None
        marked = self.process(section, label, common, _MARK, len(processes)).command
        if str(_MARK) not in marked:
            return None
        for process in processes:
            if marked.replace(str(_MARK), str(process.number)) != process.command:
                return None
        return marked.replace(str(_MARK), "$(circus.wid)")

    @staticmethod
    def differing(processes: list[_Process]) -> str:
        first = processes[0]
        return " and ".join(
            key
            for key in _PER_PROCESS
            if any(getattr(p, key) != getattr(first, key) for p in processes)
        )

    def watcher(
        self,
        section: Section,
        name: str,
        process: _Process,
        count: int,
        label: str,
        common: dict[str, Any],
        fcgi: bool,
    ) -> str:
        """Write the watcher `name` for `count` processes like `process`."""
        if not valid_name(name):
            self.draft.fail(section.origin, label, f"the watcher's name {name!r} {NAME_RULE}")
        if name in self.draft.data["watchers"]:
            self.draft.fail(section.origin, label, f"a second watcher named {name!r}")
        at = ("watchers", name)
        self.draft.table(at, section.origin, label)
        command = section.options["command"]
        put = self.draft.put
        put((*at, "cmd"), process.command, command.origin, f"{label} command")
        put((*at, "numprocesses"), count, section.origin, label)
        put((*at, "copy_env"), True, section.origin, label)
        # supervisord's defaults, which differ from Stack's
        put((*at, "autorestart"), "unexpected", section.origin, label)
        put((*at, "startsecs"), 1, section.origin, label)
        put((*at, "max_retry"), 4, section.origin, label)
        put((*at, "graceful_timeout"), 10, section.origin, label)
        for key, (option, where, value) in self.defaults.items():
            if section.get(key) is None:
                stack_key = {"user": "uid", "umask": "umask", "directory": "working_dir"}[key]
                put((*at, stack_key), value, option.origin, where)
        env = {**self.file_env, **process.environment}
        if env:
            env_option = section.get("environment")
            self.draft.table(
                (*at, "env"), env_option.origin if env_option else section.origin, label
            )
            for key, value in env.items():
                given = env_option if key in process.environment else self.file_env_option
                assert given is not None
                where = (
                    f"{label} environment" if given is env_option else "[supervisord] environment"
                )
                put((*at, "env", key), value, given.origin, f"{where} {key}")
        if process.directory is not None:
            put(
                (*at, "working_dir"),
                process.directory,
                section.options["directory"].origin,
                f"{label} directory",
            )
        expansions = {**common, "process_num": process.number, "numprocs": count}
        for key, option in section.options.items():
            if key not in _WRITTEN_APART:
                where = f"{label} {key}"
                self.option(at, key, option, where, self.expand(option, where, expansions))
        self.exitcodes(section, label, at, expansions)
        self.logfiles(section, label, at, process)
        if fcgi:
            self.fcgi_socket(section, label, at)
        return name

    def option(self, at: tuple[str, ...], key: str, option: Option, label: str, value: str) -> None:
        """One program option that is the same for every process."""
        draft = self.draft
        put = draft.put
        anchor = (*at,)
        if key == "priority":
            priority = draft.integer(option, label, value)
            put((*at, "priority"), PRIORITY_DEFAULT - priority, option.origin, label)
            if priority != PRIORITY_DEFAULT:
                draft.note(
                    "supervisord starts the lowest priority first and Stack the highest: "
                    f"{priority} is {PRIORITY_DEFAULT - priority} "
                    f"({PRIORITY_DEFAULT} - {priority})",
                    origin=option.origin,
                    label=label,
                    anchor=(*at, "priority"),
                )
        elif key == "autostart":
            put((*at, "autostart"), draft.boolean(option, label, value), option.origin, label)
        elif key == "autorestart":
            word = value.strip().lower()
            if word == "unexpected":
                restart: bool | str = "unexpected"
            else:
                restart = draft.boolean(option, label, value)
            put((*at, "autorestart"), restart, option.origin, label)
        elif key == "startsecs":
            put((*at, "startsecs"), draft.number(option, label, value), option.origin, label)
        elif key == "startretries":
            retries = draft.integer(option, label, value)
            if retries < 0:
                draft.fail(option.origin, label, f"must be >= 0, got {retries}")
            put((*at, "max_retry"), retries + 1, option.origin, label)
            draft.note(
                f"{retries} retries after a failed start are max_retry = {retries + 1} "
                "failed starts in a row",
                origin=option.origin,
                label=label,
                anchor=(*at, "max_retry"),
            )
        elif key == "stopsignal":
            put((*at, "stop_signal"), value.strip(), option.origin, label)
        elif key == "stopwaitsecs":
            put((*at, "graceful_timeout"), draft.number(option, label, value), option.origin, label)
        elif key == "stopasgroup":
            put((*at, "stop_children"), draft.boolean(option, label, value), option.origin, label)
        elif key == "killasgroup":
            if not draft.boolean(option, label, value):
                draft.note(
                    "Stack always SIGKILLs the worker's whole process group after graceful_timeout",
                    origin=option.origin,
                    label=label,
                    anchor=anchor,
                )
        elif key == "user":
            put((*at, "uid"), value.strip(), option.origin, label)
        elif key == "umask":
            put((*at, "umask"), self.draft.octal(option, label, value), option.origin, label)
        elif key == "redirect_stderr":
            if draft.boolean(option, label, value):
                draft.note(
                    "not carried: Stack keeps stderr apart from stdout; stackctl logs shows both "
                    "(--stream picks one)",
                    origin=option.origin,
                    label=label,
                    anchor=anchor,
                )
        elif key == "serverurl":
            draft.note(
                "not carried: there is no XML-RPC server; programs that drive Stack run stackctl",
                origin=option.origin,
                label=label,
                anchor=anchor,
            )
        elif key.endswith(("_capture_maxbytes", "_events_enabled")):
            draft.note(
                "not carried: Stack sends no events to listeners; stackctl logs -f and "
                "stackctl events -f follow the output and the events",
                origin=option.origin,
                label=label,
                anchor=anchor,
            )
        elif key.endswith("_syslog"):
            if draft.boolean(option, label, value):
                draft.note(
                    _NO_SYSLOG,
                    origin=option.origin,
                    label=label,
                    anchor=anchor,
                )
        elif key.endswith(("_logfile_maxbytes", "_logfile_backups")):
            stream = _STREAMS[key.split("_", 1)[0]]
            if key.endswith("maxbytes"):
                put(
                    (*at, stream, "max_bytes"),
                    self.byte_size(option, label, value),
                    option.origin,
                    label,
                )
            else:
                put(
                    (*at, stream, "backup_count"),
                    draft.integer(option, label, value),
                    option.origin,
                    label,
                )

    def exitcodes(
        self, section: Section, label: str, at: tuple[str, ...], expansions: dict[str, Any]
    ) -> None:
        option = section.get("exitcodes")
        if option is None:
            return
        where = f"{label} exitcodes"
        value = self.expand(option, where, expansions)
        codes = [
            self.draft.integer(option, where, part) for part in value.split(",") if part.strip()
        ]
        if codes:
            self.draft.put((*at, "exitcodes"), codes, option.origin, where)
        elif self.draft.data["watchers"][at[1]]["autorestart"] == "unexpected":
            self.draft.put((*at, "autorestart"), True, option.origin, where)
            self.draft.note(
                "no exit code is expected, so every exit restarts: autorestart = true",
                origin=option.origin,
                label=where,
                anchor=(*at, "autorestart"),
            )

    def logfiles(
        self, section: Section, label: str, at: tuple[str, ...], process: _Process
    ) -> None:
        redirected = section.get("redirect_stderr")
        for key in _LOGFILES:
            option = section.get(key)
            value = process.logfiles[key]
            if option is None or value is None:
                continue
            stream = _STREAMS[key.split("_", 1)[0]]
            where = f"{label} {key}"
            word = value.strip().lower()
            if (
                key == "stderr_logfile"
                and redirected is not None
                and self.draft.boolean(redirected, f"{label} redirect_stderr")
            ):
                continue
            if word in ("auto",):
                continue
            if word in ("none", "off"):
                self.draft.put(
                    (*at, f"close_child_{key.split('_')[0]}"), True, option.origin, where
                )
                self.draft.note(
                    "supervisord kept no output: the workers' "
                    + key.split("_")[0]
                    + " is /dev/null",
                    origin=option.origin,
                    label=where,
                    anchor=(*at, f"close_child_{key.split('_')[0]}"),
                )
                continue
            if word == "syslog":
                self.draft.note(
                    _NO_SYSLOG,
                    origin=option.origin,
                    label=where,
                    anchor=at,
                )
                continue
            self.draft.put((*at, stream, "filename"), value, option.origin, where)

    def shared_logfiles(
        self, section: Section, label: str, program: str, processes: list[_Process]
    ) -> None:
        """Log files named per process become one file for the watcher's workers."""
        for key in _LOGFILES:
            names = {p.logfiles[key] for p in processes}
            option = section.get(key)
            if len(names) < 2 or option is None:
                continue
            stream = _STREAMS[key.split("_", 1)[0]]
            first = processes[0].logfiles[key] or ""
            path = os.path.join(os.path.dirname(first), f"{program}.{key.split('_')[0]}.log")
            self.draft.put(
                ("watchers", program, stream, "filename"), path, option.origin, f"{label} {key}"
            )
            self.draft.note(
                f"one file for all the workers ({path}), each line tagged with its worker: "
                "supervisord wrote one per process",
                origin=option.origin,
                label=f"{label} {key}",
                anchor=("watchers", program, stream, "filename"),
            )

    def note_names(
        self,
        section: Section,
        label: str,
        program: str,
        processes: list[_Process],
        start: int,
        watcher: str,
    ) -> None:
        if len(processes) == 1 and processes[0].name != program:
            text = f"its process {processes[0].name} is worker 1 of watcher {watcher}"
        elif len(processes) > 1:
            text = (
                f"its processes {processes[0].name} ... {processes[-1].name} are the workers "
                f"1 ... {len(processes)} of watcher {watcher}"
            )
        else:
            return
        option = section.get("process_name")
        self.draft.note(
            text,
            origin=option.origin if option else section.origin,
            label=f"{label} process_name" if option else label,
            anchor=("watchers", watcher, "numprocesses"),
        )

    def fcgi_socket(self, section: Section, label: str, at: tuple[str, ...]) -> None:
        """[fcgi-program:x]'s socket is the socket x, the stdin (fd 0) of each of its
        workers, in one watcher or in a watcher per process."""
        option = section.get("socket")
        where = f"{label} socket"
        if option is None:
            self.draft.fail(section.origin, label, "socket: required")
        program = section.name.split(":", 1)[1].strip()
        self.draft.put((*at, "stdin_socket"), program, option.origin, where)
        self.draft.note(
            "each worker's stdin (fd 0), as supervisord gave it",
            origin=option.origin,
            label=where,
            anchor=(*at, "stdin_socket"),
        )
        socket_at = ("sockets", program)
        if program in self.draft.data["sockets"]:
            return  # written for the program's first process
        value = self.expand(option, where, {"program_name": program}).strip()
        self.draft.table(socket_at, option.origin, where)
        put = self.draft.put
        if value.startswith("unix://"):
            path = value[len("unix://") :]
            if not os.path.isabs(path):
                self.draft.fail(option.origin, where, f"unix socket path {path!r} is not absolute")
            put((*socket_at, "path"), path, option.origin, where)
            mode_option = section.get("socket_mode")
            mode = 0o700
            if mode_option is not None:
                mode = self.draft.octal(mode_option, f"{label} socket_mode")
            origin = mode_option.origin if mode_option else option.origin
            put((*socket_at, "umask"), 0o777 & ~mode, origin, f"{label} socket_mode")
            owner = section.get("socket_owner")
            user = section.get("user")
            item = owner or user
            if item is not None:
                self.draft.note(
                    "the socket file belongs to the agent's user, not to "
                    f"{item.value.strip()!r}: give it a mode (socket_mode, here umask) "
                    "that lets your web server connect",
                    origin=item.origin,
                    label=f"{label} {item.key}",
                    anchor=(*socket_at, "umask"),
                )
        else:
            match = re.fullmatch(r"tcp://([^\s:]+):(\d+)", value)
            if match is None:
                self.draft.fail(
                    option.origin, where, f"must be tcp://HOST:PORT or unix:///PATH, got {value!r}"
                )
            put((*socket_at, "host"), match.group(1), option.origin, where)
            put((*socket_at, "port"), int(match.group(2)), option.origin, where)
            for key in ("socket_owner", "socket_mode"):
                if section.get(key) is not None:
                    self.draft.fail(
                        section.options[key].origin,
                        f"{label} {key}",
                        "only for a unix socket (unix:///PATH)",
                    )
        backlog = section.get("socket_backlog")
        if backlog is not None:
            put(
                (*socket_at, "backlog"),
                self.draft.integer(backlog, f"{label} socket_backlog"),
                backlog.origin,
                f"{label} socket_backlog",
            )

    # -- values ---------------------------------------------------------------------

    def expand(self, option: Option, label: str, expansions: Mapping[str, Any]) -> str:
        """The value with supervisord's %(name)s expansions; SpecError naming what
        cannot be expanded."""
        here = os.path.dirname(os.path.abspath(option.origin.file))
        names = {**self.env_expansions, "here": here, **expansions}
        try:
            value = option.value % names
        except KeyError as err:
            known = ", ".join(sorted(k for k in names if not k.startswith("ENV_")))
            self.draft.fail(
                option.origin,
                label,
                f"%({err.args[0]})s cannot be expanded (known: {known} and ENV_ of each "
                "environment variable)",
            )
        except (ValueError, TypeError) as err:
            self.draft.fail(option.origin, label, f"badly formatted ({err}); write %% for a %")
        for variable in dict.fromkeys(_ENV_NAME.findall(option.value)):
            if (
                variable in self.environ
                and variable not in self.file_env
                and f"ENV_{variable}" not in expansions
            ):
                self.draft.note(
                    f"%(ENV_{variable})s was taken from {STACKCTL_ENV}",
                    origin=option.origin,
                    label=label,
                )
        return value

    def pairs(self, option: Option, label: str, value: str) -> dict[str, str]:
        """KEY=value,KEY2="value, with a comma" as supervisord splits them."""
        lexer = shlex.shlex(value, posix=True)
        lexer.wordchars += "/.+-():"
        try:
            tokens = list(lexer)
        except ValueError as err:
            self.draft.fail(option.origin, label, f"cannot be split into KEY=value pairs: {err}")
        pairs: dict[str, str] = {}
        index = 0
        while index < len(tokens):
            triple = tokens[index : index + 3]
            if len(triple) != 3 or triple[1] != "=":
                self.draft.fail(
                    option.origin,
                    label,
                    f"expected KEY=value pairs separated by commas, got {value!r}",
                )
            pairs[triple[0]] = triple[2]
            index += 4
        return pairs

    def count(self, given: tuple[Option, str] | None, label: str, key: str, default: int) -> int:
        if given is None:
            return default
        option, value = given
        number = self.draft.integer(option, f"{label} {key}", value)
        if number < 0:
            self.draft.fail(option.origin, f"{label} {key}", f"must be >= 0, got {number}")
        return number

    def byte_size(self, option: Option, label: str, value: str) -> int:
        """`50MB`, `1KB`, `1gb` or a number of bytes."""
        text = value.strip().lower()
        factor = _SUFFIXES.get(text[-2:], 1)
        digits = text[:-2] if text[-2:] in _SUFFIXES else text
        try:
            return int(digits) * factor
        except ValueError:
            self.draft.fail(
                option.origin, label, f"must be a size like 50MB, got {value.strip()!r}"
            )

    def process_name(self, name: str, section: Section, label: str) -> str:
        for char in " :/":
            if char in name.strip():
                self.draft.fail(section.origin, label, f"a name must not contain {char!r}")
        return name.strip()
